#!/usr/bin/env bash
# The quick start, for real: installs and starts a local ClickHouse 2x2
# cluster (and a single node), migrates the quick-start migrations across the
# cluster and the examples onto the single node, then prints status.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/chmigrate

bash scripts/dev-cluster.sh install
bash scripts/dev-cluster.sh start-single
bash scripts/dev-cluster.sh start-cluster

cluster=(--url http://127.0.0.11:8123 --cluster chm_cluster --database quickstart)

echo
echo "== chmigrate validate"
"$bin" validate

echo
echo "== chmigrate migrate (migrations/ on cluster chm_cluster, through node 1)"
"$bin" "${cluster[@]}" migrate

for dir in examples/flyway examples/updown examples/dbmate; do
  db="examples_$(basename "$dir")"
  echo
  echo "== chmigrate migrate --dir $dir (single node, database $db)"
  "$bin" --url http://127.0.0.1:8123 --database "$db" --dir "$dir" migrate
done

echo
echo "== chmigrate apply -f examples/k8s/quickstart.yaml (the operator's reconcile, without Kubernetes)"
"$bin" apply -f examples/k8s/quickstart.yaml

echo
echo "== chmigrate apply -f examples/k8s/cluster.yaml (a MigrationSet on the 2x2 cluster)"
"$bin" apply -f examples/k8s/cluster.yaml

echo
echo "== chmigrate status (read through node 3)"
"$bin" --url http://127.0.0.13:8123 --cluster chm_cluster --database quickstart status
