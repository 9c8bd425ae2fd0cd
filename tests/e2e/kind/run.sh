#!/usr/bin/env bash
# End-to-end check on a real Kubernetes cluster: kind (created here when
# `kind` and a container engine exist) or whatever cluster the current
# kubeconfig points at (KIND=0). It cannot run on the project's CI machines,
# which have neither an API server nor a container engine; the suite uses the
# in-repo fake API server instead (tests/operator.rs).
#
#   tests/e2e/kind/run.sh              # kind cluster "chmigrate-e2e"
#   KIND=0 tests/e2e/kind/run.sh       # the current kubeconfig context
#
# Steps: build and load the image, start a single-node ClickHouse in the
# cluster, install the chart with the development values, apply the quick
# start example, and wait for the MigrationSet to be Ready.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cluster="${CLUSTER_NAME:-chmigrate-e2e}"
image="${IMAGE:-chmigrate:e2e}"
ns="${NAMESPACE:-chmigrate-e2e}"
helm="${HELM:-helm}"

need() { command -v "$1" >/dev/null || { echo "e2e: $1 is required" >&2; exit 2; }; }
need kubectl
need "$helm"

if [[ "${KIND:-1}" == 1 ]]; then
  need kind
  need docker
  kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
  kubectl config use-context "kind-$cluster"
  docker build -t "$image" "$repo"
  kind load docker-image "$image" --name "$cluster"
fi

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" apply -f "$here/clickhouse.yaml"
kubectl -n "$ns" rollout status deploy/clickhouse --timeout=300s

"$helm" upgrade --install chmigrate "$repo/charts/chmigrate" \
  --namespace "$ns" \
  -f "$repo/charts/chmigrate/values-development.yaml" \
  --set image.repository="${image%%:*}" --set image.tag="${image##*:}" \
  --set image.pullPolicy=IfNotPresent \
  --wait --timeout 300s

kubectl -n "$ns" apply -f "$here/quickstart.yaml"
kubectl -n "$ns" wait --for=condition=Ready migrationset/quickstart --timeout=300s
kubectl -n "$ns" get migrationsets,chmigrations
kubectl -n "$ns" exec deploy/clickhouse -- clickhouse-client -q "SHOW TABLES FROM quickstart"
echo "e2e: MigrationSet quickstart is Ready"
