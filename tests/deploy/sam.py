"""template.yaml translated by SAM's own translator (aws-sam-translator, pinned in
infra/local/requirements.txt), the way `sam package` + CloudFormation's transform do.

The one place the template is translated: the policy-vs-code check (test_policy.py) and the
deploy rehearsal (rehearsal.py) both read this."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# What `sam package` puts in CodeUri: the translator requires an S3 location.
CODE_BUCKET = "tollgate-check"
CODE_KEY = "code.zip"


def translate(path: Path = TEMPLATE) -> dict:
    """The template after the AWS::Serverless-2016-10-31 transform (plain CloudFormation)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self):
            return {}

    tpl = yaml_parse(path.read_text())
    for res in tpl["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"
    return transform(tpl, {}, NoManagedPolicies())
