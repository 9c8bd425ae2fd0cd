#!/usr/bin/env bash
# The quick start: build chmigrate, check every migration folder, and print
# the plan for the quick-start migrations on the replicated cluster layout.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/chmigrate

echo "== chmigrate validate (migrations/ and examples/)"
for dir in migrations examples/flyway examples/updown examples/dbmate; do
  "$bin" validate --dir "$dir"
done

echo
echo "== chmigrate plan --offline --cluster chm_cluster --database quickstart"
"$bin" plan --offline --cluster chm_cluster --database quickstart
