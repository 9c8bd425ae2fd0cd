#!/usr/bin/env bash
# Runs every benchmark: starts the dev ClickHouse single node first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/dev-cluster.sh install
bash scripts/dev-cluster.sh start-single
cargo bench --bench planner
cargo bench --bench apply
