#!/usr/bin/env python3
"""Create tollgate's AWS resources in the local emulator, as template.yaml defines them.

Reads template.yaml (the single source of truth) and creates, against the endpoint in
AWS_ENDPOINT_URL (moto's server):

- every AWS::DynamoDB::Table: key schema, attribute definitions, global secondary indexes,
  billing mode, TTL, point-in-time recovery, SSE with the local KMS key;
- the AWS::KMS::Key (symmetric, rotation on) and its AWS::KMS::Alias;
- every AWS::SecretsManager::Secret with a GenerateSecretString (the pepper), generated the
  way Secrets Manager would: SecretStringTemplate plus GenerateStringKey = random string.

`${AWS::StackName}` in names resolves to "tollgate" (override: TOLLGATE_STACK_NAME), so the
tables are tollgate-tenants, tollgate-keys, tollgate-pool, tollgate-limits and tollgate-issuers.

Idempotent: an existing table, key alias or secret is kept as it is (an existing pepper is
never replaced: keys issued against it must keep verifying); missing settings are applied.

stdout: KEY=VALUE lines only, the environment the proxy and CLI read (the names come from the
proxy function's environment in template.yaml):
  TOLLGATE_TENANTS_TABLE, TOLLGATE_KEYS_TABLE, TOLLGATE_POOL_TABLE, TOLLGATE_LIMITS_TABLE,
  TOLLGATE_ISSUERS_TABLE, TOLLGATE_PEPPER_SECRET_ID, TOLLGATE_KMS_KEY_ID
Progress goes to stderr. Refuses to run without AWS_ENDPOINT_URL (it is for the emulator).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import string
import sys
import time
import zipfile
from pathlib import Path

import boto3
import yaml
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(os.environ.get("TOLLGATE_TEMPLATE", ROOT / "template.yaml"))
STACK_NAME = os.environ.get("TOLLGATE_STACK_NAME", "tollgate")
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account


def log(msg: str) -> None:
    print(f"[resources] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# template.yaml with CloudFormation short-form tags
# --------------------------------------------------------------------------------------


class Tag:
    """An intrinsic function kept as data: `!Ref X` -> Tag("Ref", "X")."""

    def __init__(self, name: str, value):
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"!{self.name} {self.value!r}"


class CfnLoader(yaml.SafeLoader):
    pass


def _tag_constructor(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(suffix, value)


CfnLoader.add_multi_constructor("!", _tag_constructor)


def load_template(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)


PSEUDO = {
    "AWS::StackName": STACK_NAME,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


def resolve(value, refs: dict[str, str]):
    """Resolve the intrinsics a plain name can use: !Sub over pseudo parameters and known
    logical ids, !Ref of the same. Anything else is an error (keep the template simple)."""
    if isinstance(value, Tag):
        if value.name == "Ref":
            key = value.value
            if key in PSEUDO:
                return PSEUDO[key]
            if key in refs:
                return refs[key]
            raise ValueError(f"cannot resolve !Ref {key} locally")
        if value.name == "Sub" and isinstance(value.value, str):

            def sub(m: re.Match) -> str:
                key = m.group(1)
                if key in PSEUDO:
                    return PSEUDO[key]
                if key in refs:
                    return refs[key]
                raise ValueError(f"cannot resolve ${{{key}}} locally")

            return re.sub(r"\$\{([^}!]+)\}", sub, value.value)
        raise ValueError(f"unsupported intrinsic here: {value!r}")
    if isinstance(value, dict):
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    return value


def resources_of(template: dict, rtype: str) -> dict[str, dict]:
    return {
        lid: r for lid, r in template.get("Resources", {}).items() if r.get("Type") == rtype
    }


def proxy_env_refs(template: dict) -> dict[str, str]:
    """env var name -> logical id, from the proxy function's environment (`X: !Ref Id` or
    `X: !GetAtt Id.Arn`)."""
    out: dict[str, str] = {}
    for r in resources_of(template, "AWS::Serverless::Function").values():
        variables = r.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for name, v in variables.items():
            if not (isinstance(v, Tag) and name.startswith("TOLLGATE_")):
                continue
            if v.name == "Ref" and isinstance(v.value, str):
                out[name] = v.value
            elif v.name == "GetAtt":
                target = v.value if isinstance(v.value, str) else ".".join(v.value)
                out[name] = target.split(".", 1)[0]
    return out


# --------------------------------------------------------------------------------------
# KMS
# --------------------------------------------------------------------------------------


def ensure_kms_key(kms, template: dict) -> str:
    keys = resources_of(template, "AWS::KMS::Key")
    aliases = resources_of(template, "AWS::KMS::Alias")
    if len(keys) != 1:
        raise SystemExit(f"expected one AWS::KMS::Key in {TEMPLATE}, found {len(keys)}")
    key_lid, key = next(iter(keys.items()))
    alias_names = [
        a["Properties"]["AliasName"]
        for a in aliases.values()
        if isinstance(a["Properties"].get("TargetKeyId"), Tag)
        and a["Properties"]["TargetKeyId"].value == key_lid
    ]
    alias = alias_names[0] if alias_names else None

    if alias:
        try:
            meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
            log(f"KMS key {alias} exists ({meta['KeyId']})")
            return meta["Arn"]
        except ClientError as e:
            if e.response["Error"]["Code"] != "NotFoundException":
                raise
    props = key.get("Properties", {})
    meta = kms.create_key(
        Description=str(props.get("Description", "tollgate")),
        KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
        KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
    )["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=meta["KeyId"])
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    log(f"KMS key {alias or ''} created ({meta['KeyId']})")
    return meta["Arn"]


# --------------------------------------------------------------------------------------
# DynamoDB
# --------------------------------------------------------------------------------------


def wait_active(ddb, name: str) -> None:
    for _ in range(100):
        if ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise SystemExit(f"table {name} did not become ACTIVE")


def ensure_table(ddb, lid: str, props: dict, key_arn: str) -> str:
    props = resolve(
        {k: v for k, v in props.items() if k != "SSESpecification"}, {}
    )
    name = props["TableName"]
    create = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        "SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
    }
    gsis = props.get("GlobalSecondaryIndexes") or []
    if gsis:
        create["GlobalSecondaryIndexes"] = [
            {k: g[k] for k in ("IndexName", "KeySchema", "Projection")} for g in gsis
        ]
    try:
        ddb.create_table(**create)
        log(f"table {name} created ({lid})")
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":
            raise
        log(f"table {name} exists ({lid})")
    wait_active(ddb, name)

    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    pitr = props.get("PointInTimeRecoverySpecification") or {}
    if pitr.get("PointInTimeRecoveryEnabled"):
        try:
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        except ClientError as e:  # not essential locally
            log(f"table {name}: point-in-time recovery not set ({e.response['Error']['Code']})")
    return name


# --------------------------------------------------------------------------------------
# Secrets Manager
# --------------------------------------------------------------------------------------

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def generate_string(spec: dict) -> str:
    """What GenerateSecretString would produce for the options the template uses."""
    alphabet = ""
    if not spec.get("ExcludeLowercase"):
        alphabet += string.ascii_lowercase
    if not spec.get("ExcludeUppercase"):
        alphabet += string.ascii_uppercase
    if not spec.get("ExcludeNumbers"):
        alphabet += string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += PUNCTUATION
    if spec.get("IncludeSpace"):
        alphabet += " "
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    length = int(spec.get("PasswordLength", 32))
    return "".join(secrets.choice(alphabet) for _ in range(length))


def secret_value(spec: dict) -> str:
    template = spec.get("SecretStringTemplate")
    key = spec.get("GenerateStringKey")
    value = generate_string(spec)
    if template is None:
        return value
    doc = json.loads(template)
    doc[key] = value
    return json.dumps(doc, separators=(",", ":"))


def ensure_secret(sm, lid: str, props: dict, key_arn: str) -> str:
    props = resolve(
        {k: v for k, v in props.items() if k not in ("KmsKeyId",)}, {}
    )
    name = props["Name"]
    try:
        sm.describe_secret(SecretId=name)
        log(f"secret {name} exists, kept ({lid})")
        return name
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    spec = props.get("GenerateSecretString")
    if not spec:
        raise SystemExit(f"{lid}: only secrets with GenerateSecretString can be created locally")
    sm.create_secret(
        Name=name,
        Description=str(props.get("Description", "")),
        KmsKeyId=key_arn,
        SecretString=secret_value(spec),
    )
    log(f"secret {name} created ({lid})")
    return name


# --------------------------------------------------------------------------------------
# The rotation function's stand-in
# --------------------------------------------------------------------------------------

ROTATION_FUNCTION = "tollgate-rotation"


def ensure_rotation_stand_in(session, endpoint: str) -> str:
    """A placeholder Lambda function named like the rotation function, so RotateSecret can be
    called with its ARN. The emulator never runs it (that needs Docker): the local driver
    (`tollgate token rotate`) invokes the real function under `cargo lambda watch` instead."""
    iam = session.client("iam", endpoint_url=endpoint)
    lam = session.client("lambda", endpoint_url=endpoint)
    try:
        return lam.get_function(FunctionName=ROTATION_FUNCTION)["Configuration"]["FunctionArn"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        role = iam.create_role(
            RoleName="tollgate-rotation-local", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        role = iam.get_role(RoleName="tollgate-rotation-local")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# stand-in: the local stack runs the real function\n")
    arn = lam.create_function(
        FunctionName=ROTATION_FUNCTION,
        Runtime="provided.al2023",
        Role=role,
        Handler="bootstrap",
        Architectures=["arm64"],
        Code={"ZipFile": buf.getvalue()},
    )["FunctionArn"]
    log(f"rotation function stand-in {arn} created")
    return arn


# --------------------------------------------------------------------------------------


def main() -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        print(
            "AWS_ENDPOINT_URL is not set: this script creates resources in the local emulator "
            "only (deploy to AWS with sam deploy, see docs/deploy.md)",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    session = boto3.session.Session(region_name=REGION)
    ddb = session.client("dynamodb", endpoint_url=endpoint)
    kms = session.client("kms", endpoint_url=endpoint)
    sm = session.client("secretsmanager", endpoint_url=endpoint)

    template = load_template(TEMPLATE)
    env_refs = proxy_env_refs(template)
    key_arn = ensure_kms_key(kms, template)

    created: dict[str, str] = {}  # logical id -> local identifier
    for lid, r in resources_of(template, "AWS::DynamoDB::Table").items():
        created[lid] = ensure_table(ddb, lid, r["Properties"], key_arn)
    for lid, r in resources_of(template, "AWS::SecretsManager::Secret").items():
        created[lid] = ensure_secret(sm, lid, r["Properties"], key_arn)
    for lid in resources_of(template, "AWS::KMS::Key"):
        created[lid] = key_arn

    wanted = [
        "TOLLGATE_TENANTS_TABLE",
        "TOLLGATE_KEYS_TABLE",
        "TOLLGATE_POOL_TABLE",
        "TOLLGATE_LIMITS_TABLE",
        "TOLLGATE_ISSUERS_TABLE",
        "TOLLGATE_PEPPER_SECRET_ID",
        "TOLLGATE_KMS_KEY_ID",
    ]
    missing = [v for v in wanted if env_refs.get(v) not in created]
    if missing:
        raise SystemExit(
            f"template.yaml's proxy environment does not map {', '.join(missing)} to a resource "
            "this script creates"
        )
    for var in wanted:
        print(f"{var}={created[env_refs[var]]}")
    print(f"TOLLGATE_ROTATION_FUNCTION_ARN={ensure_rotation_stand_in(session, endpoint)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
