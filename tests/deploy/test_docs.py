"""docs/deploy.md's Parameters table agrees with template.yaml's Parameters: every parameter
listed once, in template order (the order `sam deploy --guided` asks), with the template's
default in the default column (an empty default written as "empty ...")."""

from __future__ import annotations

import re

from rustscan import ROOT


def template_parameters() -> list[tuple[str, str]]:
    from samtranslator.yaml_helper import yaml_parse

    params = yaml_parse((ROOT / "template.yaml").read_text())["Parameters"]
    return [(name, str(p.get("Default", ""))) for name, p in params.items()]


def doc_rows() -> list[tuple[str, str]]:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc[doc.index("### Parameters"):]
    section = section[: section.index("\n### ", 1)]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", section, re.M)
    assert rows, "no parameter rows found under ### Parameters"
    return [(n, d.strip()) for n, d in rows]


def test_every_parameter_is_documented_in_order():
    tpl = [n for n, _ in template_parameters()]
    doc = [n for n, _ in doc_rows()]
    missing = [n for n in tpl if n not in doc]
    unknown = [n for n in doc if n not in tpl]
    assert not missing, f"parameters missing from docs/deploy.md: {missing}"
    assert not unknown, f"docs/deploy.md documents parameters the template does not have: {unknown}"
    assert len(doc) == len(set(doc)), "a parameter is listed twice"
    assert doc == tpl, "docs/deploy.md lists the parameters in another order than template.yaml"


def test_documented_defaults_match_the_template():
    doc = dict(doc_rows())
    for name, default in template_parameters():
        cell = doc[name]
        if default == "":
            assert cell.startswith("empty"), f"{name}: empty default, documented as {cell!r}"
        else:
            assert cell.split(" ")[0] == f"`{default}`", f"{name}: default {default!r}, documented as {cell!r}"
