#!/usr/bin/env bash
# bench/run.sh — every benchmark in one command, on a fresh machine too:
#
#   1. installs and starts the dev ClickHouse 18.16 servers if they are not
#      up (scripts/dev-cluster.sh; running servers are left alone),
#   2. installs the peers into a scratch folder ($BENCH_DIR, default
#      /tmp/chmigrate-bench): clickhouse-migrations from PyPI (a python3.11
#      venv) and clickhouse-migrations from the npm registry (npm --prefix),
#   3. builds chmigrate and the bench targets (cargo build --release),
#   4. runs benches/planner.rs (what `cargo bench --bench planner` runs) and
#      benches/operator_scale.rs (the operator binary against the in-repo
#      FAKE API server: 2,000 ClickHouseMigrations in 20 sets) and
#      benches/parallel.rs (parallel waves against serial mode: independent
#      data migrations on the single node, ON CLUSTER DDL on the cluster),
#   5. bench/compare.py: apply throughput on the single node and on the 2x2
#      cluster next to the floor and the peers, ledger row cost, the no-op
#      run, and where chmigrate's time goes; prints Markdown tables.
#
# Knobs (environment):
#   ROUNDS=5          rounds of the single-node apply and ledger sections
#                     (ROUNDS=3 for a quicker run); the cluster runs
#                     min(ROUNDS,3) (CLUSTER_ROUNDS), the no-op 2×ROUNDS
#                     (NOOP_ROUNDS)
#   N=200 N_CLUSTER=50 NOOP_N=1000   migrations per run
#   SECTIONS=single,single3,cluster,ledger,noop,breakdown
#   PEERS=python,node  (empty: chmigrate and the floor only)
#   PLANNER_BENCH=1   0 skips the planner bench
#   OPERATOR_BENCH=1  0 skips the operator bench (its knobs: SETS, PER_SET,
#                     IDLE_SECONDS, RECHECK, OPERATOR_ROUNDS)
#   PARALLEL_BENCH=1  0 skips the parallel-waves bench (PARALLEL_ROUNDS=3)
#   APPLY_BENCH=0     1 also runs cargo bench --bench apply (the same
#                     single-statement comparison as compare.py, with a
#                     floor written in Rust: a cross-check of the Python floor)
#   BENCH_DIR=/tmp/chmigrate-bench   scratch folder (peers, folders, results)
#
# Output: the report on stdout, also in $BENCH_DIR/report.md (with the
# planner's numbers) and $BENCH_DIR/results.json. Every database it creates
# is named chmb_<run>_… and dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR="${BENCH_DIR:-/tmp/chmigrate-bench}"
PY_PEER_SPEC="${PY_PEER_SPEC:-clickhouse-migrations~=0.16.0}"
NODE_PEER_SPEC="${NODE_PEER_SPEC:-clickhouse-migrations@~1.4.0}"
export BENCH_DIR
started=$SECONDS

log() { printf '[bench/run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------- servers --
bash scripts/dev-cluster.sh install
curl -fsS --max-time 2 'http://127.0.0.1:8123/?query=SELECT%201' >/dev/null 2>&1 ||
    bash scripts/dev-cluster.sh start-single
sections=",${SECTIONS:-cluster},"
if [[ $sections == *",cluster,"* || $sections == *",breakdown,"* ]]; then
    up=1
    for n in 11 12 13 14; do
        curl -fsS --max-time 2 "http://127.0.0.$n:8123/?query=SELECT%201" >/dev/null 2>&1 || up=0
    done
    ((up)) || bash scripts/dev-cluster.sh start-cluster
fi

# --------------------------------------------------------------- peers --
mkdir -p "$BENCH_DIR"
peers=",${PEERS-python,node},"
if [[ $peers == *",python,"* ]]; then
    py=$(command -v python3.11 || command -v python3)
    if [[ ! -x $BENCH_DIR/py/bin/python ]]; then
        log "creating $BENCH_DIR/py with $py -m venv"
        "$py" -m venv "$BENCH_DIR/py"
    fi
    if ! "$BENCH_DIR/py/bin/pip" show clickhouse-migrations >/dev/null 2>&1; then
        log "installing $PY_PEER_SPEC (PyPI)"
        "$BENCH_DIR/py/bin/pip" install --quiet --disable-pip-version-check "$PY_PEER_SPEC" ||
            log "warning: pip install failed; the PyPI peer is skipped"
    fi
fi
if [[ $peers == *",node,"* ]]; then
    if ! command -v npm >/dev/null; then
        log "npm missing; installing Debian's nodejs and npm"
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    fi
    if [[ ! -f $BENCH_DIR/node/node_modules/clickhouse-migrations/package.json ]]; then
        log "installing $NODE_PEER_SPEC (npm registry) into $BENCH_DIR/node"
        npm install --silent --no-audit --no-fund --prefix "$BENCH_DIR/node" "$NODE_PEER_SPEC" ||
            log "warning: npm install failed; the npm peer is skipped"
    fi
fi

# --------------------------------------------------------------- build --
# One release build of the library for the binary and the bench targets
# (`cargo bench` would compile everything a second time under the bench
# profile, which inherits release: same code, twice the build time on 2 cores).
benches=()
[[ ${PLANNER_BENCH:-1} == 1 ]] && benches+=(--bench planner)
[[ ${APPLY_BENCH:-0} == 1 ]] && benches+=(--bench apply)
[[ ${OPERATOR_BENCH:-1} == 1 ]] && benches+=(--bench operator_scale)
[[ ${PARALLEL_BENCH:-1} == 1 ]] && benches+=(--bench parallel)
log "cargo build --release --bin chmigrate ${benches[*]}"
cargo build --release --bin chmigrate "${benches[@]}" --message-format=json-render-diagnostics \
    >"$BENCH_DIR/cargo-build.json"
declare -A bench_exe=()
while IFS=$'\t' read -r name exe; do
    bench_exe[$name]=$exe
done < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["target"]["name"] + "\t" + m["executable"])
' "$BENCH_DIR/cargo-build.json")

planner_out="$BENCH_DIR/planner.txt"
: >"$planner_out"
if [[ -n ${bench_exe[planner]:-} ]]; then
    log "planner bench (benches/planner.rs, = cargo bench --bench planner)"
    "${bench_exe[planner]}" --bench 2>&1 | tee "$planner_out"
fi
operator_out="$BENCH_DIR/operator.md"
: >"$operator_out"
if [[ -n ${bench_exe[operator_scale]:-} ]]; then
    log "operator bench (benches/operator_scale.rs, = cargo bench --bench operator_scale)"
    ROUNDS="${OPERATOR_ROUNDS:-5}" "${bench_exe[operator_scale]}" --bench | tee "$operator_out"
fi
parallel_out="$BENCH_DIR/parallel.txt"
: >"$parallel_out"
if [[ -n ${bench_exe[parallel]:-} ]]; then
    log "parallel waves bench (benches/parallel.rs, = cargo bench --bench parallel)"
    ROUNDS="${PARALLEL_ROUNDS:-3}" "${bench_exe[parallel]}" --bench 2>&1 | tee "$parallel_out"
fi
apply_out="$BENCH_DIR/apply-bench.txt"
: >"$apply_out"
if [[ -n ${bench_exe[apply]:-} ]]; then
    log "apply bench (benches/apply.rs, = cargo bench --bench apply)"
    "${bench_exe[apply]}" --bench 2>&1 | tee "$apply_out"
fi

# ------------------------------------------------------------- compare --
log "bench/compare.py (load: $(cut -d' ' -f1-3 /proc/loadavg))"
python3 bench/compare.py --chmigrate target/release/chmigrate --scratch "$BENCH_DIR" \
    --out "$BENCH_DIR/compare.md" >/dev/null

{
    cat "$BENCH_DIR/compare.md"
    if [[ -s $planner_out ]]; then
        printf '\n### Planner scale (benches/planner.rs, release build)\n\n```\n'
        cat "$planner_out"
        printf '```\n'
        # Goal (issue 15): planning 100,000 migrations under 250 ms.
        awk '/fold \+ plan/ { for (i = 1; i <= NF; i++) if ($i == "median") m = $(i + 1) }
             END { if (m != "") printf "\nGoal planning 100,000 migrations under 250 ms (fold + plan, median): %s ms — **%s**.\n", m, (m + 0 < 250 ? "met" : "not met") }' "$planner_out"
    fi
    if [[ -s $operator_out ]]; then
        printf '\n### Operator at scale (benches/operator_scale.rs, release build)\n\n'
        cat "$operator_out"
    fi
    if [[ -s $parallel_out ]]; then
        printf '\n### Parallel waves (benches/parallel.rs, release build)\n\n```\n'
        cat "$parallel_out"
        printf '```\n'
    fi
    if [[ -s $apply_out ]]; then
        printf '\n### benches/apply.rs (the floor written in Rust, a cross-check)\n\n```\n'
        cat "$apply_out"
        printf '```\n'
    fi
    printf '\nbench/run.sh took %d min %02d s (ROUNDS=%s).\n' \
        $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "${ROUNDS:-5}"
} >"$BENCH_DIR/report.md"

printf '\n==================== report (%s) ====================\n\n' "$BENCH_DIR/report.md"
cat "$BENCH_DIR/report.md"
