#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints,
# unit and property tests, integration tests against real ClickHouse 18.16
# servers (a single node and a 2x2 cluster with ZooKeeper, installed and
# started here), and chmigrate's own statements on ClickHouse 26 (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "ClickHouse 18.16 + ZooKeeper: install and start (scripts/dev-cluster.sh)"
bash scripts/dev-cluster.sh install
bash scripts/dev-cluster.sh start-single
bash scripts/dev-cluster.sh start-cluster

step "tools of the delivery tests: Lua 5.1 (Argo CD health checks), the Helm library (chart lint)"
if ! command -v lua5.1 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq lua5.1 >/dev/null
fi
command -v kubectl >/dev/null || { echo "kubectl is needed (kubectl kustomize)" >&2; exit 1; }
bash scripts/helm.sh version

step "cargo test (unit, property and integration tests)"
cargo test --no-fail-fast --lib --bins --tests

step "chmigrate's own statements on current ClickHouse (chdb)"
mkdir -p target
cargo run --quiet -- compat-sql --server-major 26 > target/compat-sql.json
bash scripts/chdb-check.sh target/compat-sql.json

step "benchmarks compile (run them with: bash bench/run.sh)"
cargo build --benches --release
