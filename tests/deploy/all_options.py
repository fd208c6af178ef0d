"""template.yaml with every optional part switched on, for the scanners (make template-checks).

checkov and cfn-lint evaluate a template's conditions with the parameters' defaults, so a
resource behind an off-by-default condition (the WAF web ACL, the rotation schedule, the alert
subscription, reserved concurrency, X-Ray, the federation grant, the resource policy) is never
scanned. This writes a copy whose defaults turn every option on, changed only on the Default
lines so the inline `# checkov:skip` comments stay. Usage: all_options.py OUT.yaml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Obviously fake values of the right shape (documentation ranges, the example account).
ON = {
    "EnableTracing": '"true"',
    "AlertEmail": '"ops@example.com"',
    "ProxyReservedConcurrency": "50",
    "AuditReservedConcurrency": "1",
    "OpenAIAdminKeySecretArn": '"arn:aws:secretsmanager:us-east-1:111122223333:secret:openai-admin-AbCdEf"',
    "AnthropicAdminKeySecretArn": '"arn:aws:secretsmanager:us-east-1:111122223333:secret:anthropic-admin-AbCdEf"',
    "ManagedTokenSecretArn": '"arn:aws:secretsmanager:us-east-1:111122223333:secret:tollgate/pool/openai/t1-AbCdEf"',
    "FederatedTokenAudiences": '"https://api.openai.com/v1"',
    "AllowedSourceCidrs": '"203.0.113.0/24,198.51.100.7/32"',
    "PrivateApiVpcEndpointId": '"vpce-0123456789abcdef0"',
    "EnableWaf": '"true"',
}


def all_options(text: str) -> str:
    for name, value in ON.items():
        block = re.search(rf"(?m)^  {name}:\n((?:    .*\n|\s*\n)*?)    Default: .*$", text)
        assert block, f"parameter {name} or its Default line not found"
        start = block.end() - len(block.group(0).splitlines()[-1])
        text = text[:start] + f"    Default: {value}" + text[block.end():]
    return text


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(all_options((ROOT / "template.yaml").read_text()))
