#!/usr/bin/env bash
# The long fault-injection settings (CI runs shorter ones through
# scripts/test.sh): 20 seeded SIGKILLs of a 50-statement migration.
#   bench/faults.sh                 # seed 20261122
#   CHMIGRATE_FAULT_SEED=7 bench/faults.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/dev-cluster.sh install
bash scripts/dev-cluster.sh start-single
CHMIGRATE_FAULT_ROUNDS="${CHMIGRATE_FAULT_ROUNDS:-20}" \
  cargo test --release --test faults -- --nocapture
