"""Local stand-in for AWS outbound identity federation (federated pool tokens).

Generates a fresh P-384 key for this run of the local stack, writes its private half as
PKCS#8 DER (mode 600) for the proxy's local identity signer (TOLLGATE_FEDERATION=local), and
tells the mock provider to trust the public half as the issuer's key (kid "local-1").
Nothing here is used in a deployment, where STS GetWebIdentityToken signs the tokens.

usage: identity_key.py OUT_DER MOCK_URL ISSUER
"""

import base64
import json
import os
import sys
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(48, "big")).rstrip(b"=").decode()


def main() -> None:
    out, mock, issuer = sys.argv[1:4]
    key = ec.generate_private_key(ec.SECP384R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(der)
    pub = key.public_key().public_numbers()
    body = {
        "keys": [{"kid": "local-1", "x": b64url(pub.x), "y": b64url(pub.y)}],
        "issuer": issuer,
    }
    req = urllib.request.Request(
        f"{mock}/_mock/federation",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204, r.status


if __name__ == "__main__":
    main()
