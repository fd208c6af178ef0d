#!/usr/bin/env bash
# `make dev`: the whole system on this machine.
#   AWS emulator (moto, from .venv) -> tables, KMS key and pepper as template.yaml defines them
#   -> demo tenant + key -> pool tokens (bundled mock provider, or the real providers when
#   OPENAI_API_KEY / ANTHROPIC_API_KEY are set) -> proxy under `cargo lambda watch`.
# Writes .tollgate/dev.env and prints how to call it. Ctrl-C stops everything it started.
#
# Also serves the rotation function under a second `cargo lambda watch` (its Invoke API on
# TOLLGATE_DEV_ROTATION_PORT); `tollgate token rotate` drives it (TOLLGATE_ROTATION_INVOKE_URL).
#
# Knobs (environment): TOLLGATE_DEV_PORT (9000), TOLLGATE_DEV_ROTATION_PORT (9001),
# TOLLGATE_ROTATION_GRACE_MS (60000: how long a replaced key stays valid), TOLLGATE_MOTO_PORT (4599), TOLLGATE_DEV_STATE (.tollgate),
# TOLLGATE_DEV_POLLERS (128 Lambda runtime loops per proxy process; infra/local/README.md says
# why this bounds the stack's supported concurrency),
# TOLLGATE_DEV_NO_RELOAD=1 (do not rebuild the proxy when sources change; the test harness sets it
# so an edit made while tests run cannot stall their requests behind a rebuild).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
state=${TOLLGATE_DEV_STATE:-$root/.tollgate}
mkdir -p "$state"
port=${TOLLGATE_DEV_PORT:-9000}
rotation_port=${TOLLGATE_DEV_ROTATION_PORT:-9001}
moto_port=${TOLLGATE_MOTO_PORT:-4599}
venv=$root/.venv
cli=$root/target/debug/tollgate

say() { printf '\033[1m[tollgate dev]\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ -x "$venv/bin/moto_server" ] || die "the project venv is missing: run 'make venv' (make dev does it for you)"
[ -x "$cli" ] || die "the CLI is not built: run 'cargo build --bins' (make dev does it for you)"

# A port is free when nothing listens on it. SO_REUSEADDR lets the test bind succeed over
# connections left in TIME_WAIT by the previous run (Ctrl-C), which are not listeners.
port_free() {
  "$venv/bin/python" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null
}
port_free "$port" || die "port $port is in use: set TOLLGATE_DEV_PORT to a free port"
port_free "$moto_port" || die "port $moto_port is in use: set TOLLGATE_MOTO_PORT to a free port"
port_free "$rotation_port" || die "port $rotation_port is in use: set TOLLGATE_DEV_ROTATION_PORT to a free port"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # cargo lambda watch starts the function as its own child.
  for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, seconds
  for _ in $(seq 1 $(( $2 * 5 ))); do
    if "$venv/bin/python" - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
PY
    sleep 0.2
  done
  return 1
}

# Dummy credentials: the emulator accepts any; nothing here can reach real AWS.
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port

say "starting the AWS emulator on 127.0.0.1:$moto_port"
# moto with DynamoDB calls one at a time: see infra/local/emulator.py for why.
"$venv/bin/python" "$root/infra/local/emulator.py" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
pids+=($!)
wait_http "$AWS_ENDPOINT_URL/moto-api/" 30 || die "the emulator did not start (see $state/moto.log)"

say "creating tables, KMS key and pepper secret (infra/local/resources.py)"
"$venv/bin/python" infra/local/resources.py >"$state/resources.env"
set -a; . "$state/resources.env"; set +a

mock_url=""
if [ -z "${OPENAI_API_KEY:-}" ] || [ -z "${ANTHROPIC_API_KEY:-}" ]; then
  say "starting the mock provider"
  "$root/target/debug/mock-provider" --addr 127.0.0.1:0 >"$state/mock.out" 2>"$state/mock.log" &
  pids+=($!)
  for _ in $(seq 1 50); do
    mock_url=$(grep -o 'http://[0-9.:]*' "$state/mock.out" 2>/dev/null || true)
    [ -n "$mock_url" ] && break
    sleep 0.1
  done
  [ -n "$mock_url" ] || die "the mock provider did not start (see $state/mock.log)"
  # Federated (keyless) pool tokens locally: a key made now signs the proxy's identity
  # tokens; the mock trusts its public half (docs/rotation.md, "Federated tokens").
  "$venv/bin/python" infra/local/identity_key.py "$state/identity-key.der" "$mock_url" \
    "https://identity.tollgate.local" || die "could not set up the local identity key"
fi

say "seeding the demo tenant, key and pool tokens"
"$cli" tenant create demo --name "Demo tenant" --owner "dev@localhost" >/dev/null
key=$("$cli" --json key issue --tenant demo --owner "dev@localhost" --name "make dev" --env test \
  | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
if [ -n "${OPENAI_API_KEY:-}" ]; then
  "$cli" token add --pool openai --new-pool --provider openai --id openai-real --owner "dev@localhost" \
    --value-env OPENAI_API_KEY >/dev/null
else
  echo "mock-ok-demo-openai" | "$cli" token add --pool openai --new-pool --provider openai \
    --base-url "$mock_url/v1" --id openai-mock --owner "dev@localhost" >/dev/null
fi
if [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  "$cli" token add --pool anthropic --new-pool --provider anthropic --id anthropic-real --owner "dev@localhost" \
    --value-env ANTHROPIC_API_KEY >/dev/null
else
  echo "mock-ok-demo-anthropic" | "$cli" token add --pool anthropic --new-pool --provider anthropic \
    --base-url "$mock_url/v1" --id anthropic-mock --owner "dev@localhost" >/dev/null
fi

# The proxy's environment: what template.yaml sets in Lambda, pointed at the emulator.
{
  echo "AWS_REGION=$AWS_REGION"
  echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
  echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
  echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
  cat "$state/resources.env"
  echo "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true"
  echo "TOLLGATE_KEY_CACHE_TTL_MS=${TOLLGATE_KEY_CACHE_TTL_MS:-2000}"
  echo "TOLLGATE_POOL_CACHE_TTL_MS=${TOLLGATE_POOL_CACHE_TTL_MS:-1000}"
  echo "TOLLGATE_SECRET_CACHE_TTL_MS=${TOLLGATE_SECRET_CACHE_TTL_MS:-5000}"
  echo "TOLLGATE_UPSTREAM_TIMEOUT_MS=${TOLLGATE_UPSTREAM_TIMEOUT_MS:-60000}"
  echo "RUST_LOG=${RUST_LOG:-info}"
  # cargo lambda watch 1.9.2 deadlocks once ~100 invocations queue for one function
  # (infra/local/README.md): keep its queue short with many runtime loops per process.
  echo "TOLLGATE_LAMBDA_POLLERS=${TOLLGATE_DEV_POLLERS:-128}"
  if [ -n "$mock_url" ]; then
    echo "TOLLGATE_FEDERATION=local"
    echo "TOLLGATE_LOCAL_IDENTITY_KEY_FILE=$state/identity-key.der"
    echo "TOLLGATE_LOCAL_IDENTITY_ISSUER=https://identity.tollgate.local"
  fi
} >"$state/proxy.env"

say "starting the proxy with cargo lambda watch on 127.0.0.1:$port (first build takes a while)"
reload=()
[ "${TOLLGATE_DEV_NO_RELOAD:-}" = "1" ] && reload=(--ignore-changes)
"$venv/bin/cargo-lambda" lambda watch -p tollgate-proxy --bin proxy -A 127.0.0.1 -P "$port" \
  --env-file "$state/proxy.env" --concurrency 2 "${reload[@]}" >"$state/proxy.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$port/lambda-url/proxy"
ready=""
for _ in $(seq 1 900); do
  code=$("$venv/bin/python" - "$url/v1/models" "$key" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)
  if [ "$code" = "200" ]; then ready=1; break; fi
  kill -0 "${pids[-1]}" 2>/dev/null || die "cargo lambda watch exited (see $state/proxy.log)"
  sleep 0.5
done
[ -n "$ready" ] || die "the proxy did not become ready (see $state/proxy.log)"

# The rotation function: same resources; the admin API key of the mock provider (a real admin
# key is never read from the environment here).
admin_secret=""
if [ -n "$mock_url" ]; then
  admin_secret=tollgate/admin/mock
  "$venv/bin/python" - "$admin_secret" <<'PY'
import sys, boto3, botocore
sm = boto3.client("secretsmanager")
try:
    sm.create_secret(Name=sys.argv[1], SecretString="mock-admin-local")
except botocore.exceptions.ClientError as e:
    if e.response["Error"]["Code"] != "ResourceExistsException":
        raise
PY
fi
{
  grep -v '^TOLLGATE_LAMBDA_POLLERS=' "$state/proxy.env"
  echo "TOLLGATE_ROTATION_GRACE_MS=${TOLLGATE_ROTATION_GRACE_MS:-60000}"
  echo "TOLLGATE_OPENAI_ADMIN_KEY_SECRET_ID=$admin_secret"
  echo "TOLLGATE_ANTHROPIC_ADMIN_KEY_SECRET_ID=$admin_secret"
  # The emulator cannot invoke the function: the sweep's due rotations run their steps in-process.
  echo "TOLLGATE_SWEEP_DRIVE_STEPS=true"
} >"$state/rotation.env"
say "starting the rotation function with cargo lambda watch on 127.0.0.1:$rotation_port"
"$venv/bin/cargo-lambda" lambda watch -p tollgate-rotation --bin rotation -A 127.0.0.1 -P "$rotation_port" \
  --env-file "$state/rotation.env" "${reload[@]}" >"$state/rotation.log" 2>&1 &
pids+=($!)
rotation_url="http://127.0.0.1:$rotation_port/2015-03-31/functions/rotation/invocations"
ready=""
for _ in $(seq 1 600); do
  if "$venv/bin/python" - "$rotation_url" <<'PY' 2>/dev/null; then ready=1; break; fi
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=json.dumps({"action": "retire_due"}).encode(),
                             headers={"content-type": "application/json"})
body = json.load(urllib.request.urlopen(req, timeout=30))
sys.exit(0 if "retired" in body else 1)
PY
  kill -0 "${pids[-1]}" 2>/dev/null || die "cargo lambda watch (rotation) exited (see $state/rotation.log)"
  sleep 0.5
done
[ -n "$ready" ] || die "the rotation function did not become ready (see $state/rotation.log)"

# The audit path: alert topic (+ a local SQS queue on it), the proxy's log group, the audit
# function under its own `cargo lambda watch`, and the forwarder that plays the CloudWatch Logs
# subscription (infra/local/audit_forwarder.py). TOLLGATE_DEV_AUDIT_PORT: its port (default free).
say "starting the audit function and the audit-line forwarder"
"$venv/bin/python" infra/local/audit_forwarder.py setup >"$state/audit.env" 2>>"$state/forwarder.log"
audit_port=${TOLLGATE_DEV_AUDIT_PORT:-$("$venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
port_free "$audit_port" || die "port $audit_port is in use: set TOLLGATE_DEV_AUDIT_PORT to a free port"
cat "$state/proxy.env" "$state/audit.env" >"$state/audit-fn.env"
"$venv/bin/cargo-lambda" lambda watch -p tollgate-audit --bin audit -A 127.0.0.1 -P "$audit_port" \
  --env-file "$state/audit-fn.env" "${reload[@]}" >"$state/audit.log" 2>&1 &
pids+=($!)
audit_invoke="http://127.0.0.1:$audit_port/2015-03-31/functions/audit/invocations"
"$venv/bin/python" infra/local/audit_forwarder.py probe --invoke-url "$audit_invoke" 2>>"$state/forwarder.log" \
  || die "the audit function did not become ready (see $state/audit.log)"
"$venv/bin/python" infra/local/audit_forwarder.py run --log "$state/proxy.log" \
  --invoke-url "$audit_invoke" --interval "${TOLLGATE_DEV_AUDIT_INTERVAL:-1}" >>"$state/forwarder.log" 2>&1 &
pids+=($!)

# Written to a temporary file and renamed: harnesses wait for dev.env to exist and read it at
# once, so it must never be seen empty or half written.
cat >"$state/dev.env.tmp" <<ENV
# Written by make dev. Source it: . .tollgate/dev.env
export TOLLGATE_URL=$url
export TOLLGATE_KEY=$key
export TOLLGATE_CLI=$cli
export TOLLGATE_MOCK_URL=$mock_url
export TOLLGATE_ROTATION_INVOKE_URL=$rotation_url
export AWS_REGION=$AWS_REGION
export AWS_DEFAULT_REGION=$AWS_REGION
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
$(sed 's/^/export /' "$state/resources.env")
$(sed 's/^/export /' "$state/audit.env")
ENV
chmod 600 "$state/dev.env.tmp"
mv "$state/dev.env.tmp" "$state/dev.env"

cat >&2 <<MSG

tollgate is running.
  TOLLGATE_URL=$url
  TOLLGATE_KEY=$key
  (also in $state/dev.env: . $state/dev.env)

  OpenAI SDK:     OpenAI(base_url="\$TOLLGATE_URL/v1", api_key="\$TOLLGATE_KEY")
  Anthropic SDK:  Anthropic(base_url="\$TOLLGATE_URL", api_key="\$TOLLGATE_KEY")
  curl:           curl \$TOLLGATE_URL/v1/chat/completions -H "Authorization: Bearer \$TOLLGATE_KEY" \\
                    -H 'content-type: application/json' \\
                    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
  operator CLI:   . $state/dev.env && "\$TOLLGATE_CLI" pool show
  rotate a token: . $state/dev.env && "\$TOLLGATE_CLI" token rotate POOL TOKEN_ID
  alerts:         . $state/dev.env && "\$TOLLGATE_CLI" alerts list   (and: audit tail --follow)
  logs:           $state/proxy.log (audit lines), $state/audit.log, $state/forwarder.log,
                  $state/rotation.log, $state/moto.log, $state/mock.log

Ctrl-C stops everything.
MSG
wait
