#!/usr/bin/env bash
# `make bench`: builds release binaries and runs infra/bench/run.py, which prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p tollgate-proxy -p tollgate-mock-provider -p tollgate-bench -p tollgate-cli
cargo build --release -p tollgate-dlp --example bench
.venv/bin/python infra/bench/run.py "$@"
echo
echo "sensitive-data filter (cargo run --release -p tollgate-dlp --example bench):"
cargo run --release -q -p tollgate-dlp --example bench
echo
echo "audit function (cargo run --release -p tollgate-audit --example bench):"
cargo run --release -q -p tollgate-audit --example bench
