#!/usr/bin/env bash
# `make bench`: builds release binaries and runs infra/bench/run.py, which prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p tollgate-proxy -p tollgate-mock-provider -p tollgate-bench -p tollgate-cli
exec .venv/bin/python infra/bench/run.py "$@"
