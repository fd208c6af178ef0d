"""Rotation under load, end to end: stock OpenAI SDK clients (streaming and not) send requests
continuously through the proxy while `tollgate token rotate` rotates their pool's only token
through all four steps (the local driver invoking the rotation function under
`cargo lambda watch`; the function minting at the mock provider's OpenAI Admin API). Then the
retire pass the schedule would run deletes the replaced key after the grace period."""

import json
import time
import urllib.request

from sdk_load import SdkLoad

CACHE_TTL_S = 1.0  # TOLLGATE_SECRET_CACHE_TTL_MS in conftest
GRACE_S = 4.0  # TOLLGATE_ROTATION_GRACE_MS in conftest


def post_json(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.load(r) if r.length != 0 else None


def mock_admin(stack):
    with urllib.request.urlopen(f"{stack.mock}/_mock/admin", timeout=5) as r:
        return json.load(r)


def test_rotation_under_load_fails_no_request_and_retires_the_old_key_after_grace(stack, unique):
    pool = f"rot-{unique}"
    old_value = f"mock-ok-rot0-{unique}"
    old_key_id = f"key_e2e_{unique}"
    status, _ = post_json(f"{stack.mock}/_mock/admin/keys", {"id": old_key_id, "value": old_value})
    assert status == 201
    stack.add_token(pool, "openai", old_value, "t1")
    stack.cli(
        "token", "set-rotation", pool, "t1", "--mode", "openai-admin", "--project-id", "proj_e2e",
        "--service-account-id", "svc_acct_e2e", "--key-id", old_key_id,
    )
    key = stack.issue_key("--model-pool", f"*={pool}")

    with SdkLoad(stack, key, prompt="rotate?") as load:
        time.sleep(1.5)
        before_rotation = len(load.ok)
        started = time.time()
        out = stack.cli_json("token", "rotate", pool, "t1")
        finished = time.time()
        assert [s["step"] for s in out["steps"]] == [
            "createSecret", "setSecret", "testSecret", "finishSecret"
        ]
        new_key_id = out["rotation"]["key_id"]
        assert out["rotation"]["secret_version"] == out["version"]
        assert out["rotation"]["state"]["state"] == "retiring"
        assert out["rotation"]["retiring"][0]["key_id"] == old_key_id
        admin = mock_admin(stack)
        new_value = next(k["value"] for k in admin["keys"] if k["id"] == new_key_id)
        assert new_value != old_value

        # Within the cache TTL after finishSecret every proxy request carries the new value.
        time.sleep(CACHE_TTL_S + 0.5)
        marker = max(c["seq"] for c in stack.mock_calls())
        time.sleep(1.0)
        later = [
            c for c in stack.mock_calls()
            if c["seq"] > marker and c["token"] in (old_value, new_value)
        ]
        assert later, "requests kept flowing after the rotation"
        assert {c["token"] for c in later} == {new_value}

        # Both keys stay valid through the grace period; then the retire pass deletes the old one.
        assert next(k for k in mock_admin(stack)["keys"] if k["id"] == old_key_id)["status"] == "active"
        time.sleep(max(0.0, finished + GRACE_S + 0.5 - time.time()))
        invoke = stack.env["TOLLGATE_ROTATION_INVOKE_URL"]
        status, report = post_json(invoke, {"action": "retire_due"})
        assert status == 200 and report["retired"] >= 1, report
        time.sleep(1.0)
    ok, failures = load.ok, load.failures

    admin = mock_admin(stack)
    assert next(k for k in admin["keys"] if k["id"] == old_key_id)["status"] == "deleted"
    assert next(k for k in admin["keys"] if k["id"] == new_key_id)["status"] == "active"
    tokens = stack.pool(pool)
    assert tokens["t1"]["rotation"]["state"]["state"] == "current"
    assert tokens["t1"]["status"] == "active"
    assert failures == [], f"{len(failures)} failed requests: {failures[:5]}"
    during = [t for t in ok if started <= t <= finished]
    print(
        f"\nrotation under load: {len(ok)} requests answered, 0 failed; "
        f"{len(during)} during the {finished - started:.1f} s rotation; "
        f"{before_rotation} before it"
    )
    assert len(during) > 0 and len(ok) >= 20
