"""The Lambda Managed Instances variant documented in docs/deploy.md ("Lambda Managed
Instances") is a valid template: the documented properties, merged into ProxyFunction, go
through the pinned SAM translator to the CloudFormation shape and pass cfn-lint.

template.yaml cannot carry the option behind a condition: SAM's `CapacityProviderConfig`
refuses an `Fn::If` (checked below, so a translator that starts accepting one fails this test
and the option can move into the template), and AWS allows the property only when the function
is created (it cannot be added to or removed from an existing function)."""

import copy
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
SNIPPET = re.compile(r"<!-- lmi-snippet -->\s*```yaml\n(.*?)```", re.S)


def documented_properties() -> dict:
    m = SNIPPET.search(DOC.read_text())
    assert m, "docs/deploy.md lost its <!-- lmi-snippet --> yaml block"
    props = yaml.safe_load(m.group(1))
    assert set(props) >= {"CapacityProviderConfig", "MemorySize"}, props
    return props


def load_template() -> dict:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / "template.yaml").read_text())


def translate(tpl: dict) -> dict:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    tpl = copy.deepcopy(tpl)
    for res in tpl["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://tollgate-check/code.zip"
    return transform(tpl, {}, NoManagedPolicies())


def variant() -> dict:
    tpl = load_template()
    tpl["Resources"]["ProxyFunction"]["Properties"].update(documented_properties())
    return tpl


def test_the_documented_variant_translates_to_a_managed_instances_function():
    out = translate(variant())
    fn = out["Resources"]["ProxyFunction"]
    assert fn["Type"] == "AWS::Lambda::Function"
    cfg = fn["Properties"]["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    props = documented_properties()
    assert cfg["CapacityProviderArn"] == props["CapacityProviderConfig"]["Arn"]
    assert cfg["PerExecutionEnvironmentMaxConcurrency"] == props["CapacityProviderConfig"][
        "PerExecutionEnvironmentMaxConcurrency"
    ]
    assert fn["Properties"]["MemorySize"] == props["MemorySize"]
    # Still arm64 and provided.al2023 (Rust on Managed Instances needs the OS-only runtime).
    assert fn["Properties"]["Architectures"] == ["arm64"]
    assert fn["Properties"]["Runtime"] == "provided.al2023"


def test_the_documented_variant_passes_cfn_lint(tmp_path):
    path = tmp_path / "template-lmi.yaml"
    # The intrinsic tags (!Ref, !GetAtt ...) are already in their long form after yaml_parse.
    path.write_text(yaml.safe_dump(variant(), sort_keys=False))
    r = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "cfn-lint"), str(path)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_sam_still_refuses_a_condition_gated_capacity_provider():
    from samtranslator.model.exceptions import InvalidDocumentException

    tpl = load_template()
    tpl["Resources"]["ProxyFunction"]["Properties"]["CapacityProviderConfig"] = {
        "Fn::If": ["TracingOn", documented_properties()["CapacityProviderConfig"], {"Ref": "AWS::NoValue"}]
    }
    with pytest.raises(InvalidDocumentException, match="CapacityProviderConfig"):
        translate(tpl)
