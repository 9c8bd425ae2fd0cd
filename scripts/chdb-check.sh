#!/usr/bin/env bash
# chdb-check.sh — check SQL statements on a CURRENT ClickHouse (26.x), which we
# cannot run as a server here, through chdb (ClickHouse in-process, from PyPI's
# `chdb-core`, Python module `chdb`).
#
# Usage: scripts/chdb-check.sh [--format FMT] [--setting NAME=VALUE ...] FILE.json
#   FILE.json: JSON array of {"name", "sql", "expect": "ok"|"error", "contains"?},
#   run in order in one persistent chdb session; see tests/compat/chdb_check.py.
#   Prints `ok   <name>` / `FAIL <name>: <reason>` per statement and ends with
#   `N passed, M failed`; exit 0 if all passed, 1 if any failed, 2 on bad input.
#   Example: scripts/chdb-check.sh tests/compat/sample.json
#
# The first run creates a venv (about 30 s, ~900 MB with pandas/pyarrow, which
# chdb-core requires) and reuses it afterwards. Messages about the venv go to
# stderr; stdout is only the checker's output.
#
# Environment knobs (all optional):
#   CHMIGRATE_CHDB_VENV     venv dir (default /tmp/chmigrate-chdb-venv)
#   CHMIGRATE_CHDB_VERSION  chdb-core version to install (default 26.9.0 =
#                           ClickHouse 26.9.2.1); changing it rebuilds the venv
#   CHMIGRATE_CHDB_PYTHON   Python (>= 3.9) for the venv (default python3)
set -euo pipefail

VENV="${CHMIGRATE_CHDB_VENV:-/tmp/chmigrate-chdb-venv}"
[[ $VENV == /* ]] || VENV="$PWD/$VENV"
readonly VENV="${VENV%/}"
readonly CHDB_SPEC="chdb-core==${CHMIGRATE_CHDB_VERSION:-26.9.0}"
readonly PYTHON="${CHMIGRATE_CHDB_PYTHON:-python3}"
readonly MARKER="$VENV/.chmigrate-chdb-ready"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly CHECKER="$REPO/tests/compat/chdb_check.py"

log() { printf '[chdb-check] %s\n' "$*" >&2; }
die() { printf '[chdb-check] ERROR: %s\n' "$*" >&2; exit 2; }

venv_ready() {
    [[ -x $VENV/bin/python && -f $MARKER && $(<"$MARKER") == "$CHDB_SPEC" ]]
}

# A fresh Debian 12 has no python3 (minimal images) or no venv/ensurepip
# module (python3-venv); install them from Debian if needed.
ensure_python() {
    if command -v "$PYTHON" >/dev/null &&
        "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
        return 0
    fi
    [[ $PYTHON == python3 ]] || die "$PYTHON cannot make a venv (needs Python >= 3.9 with venv + ensurepip)"
    [[ $(id -u) -eq 0 ]] || die "python3 with the venv module is missing; install python3-venv (needs root)"
    command -v apt-get >/dev/null || die "python3 with the venv module is missing and there is no apt-get"
    log "installing python3 python3-venv (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv >&2
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "python3 still cannot make a venv"
}

create_venv() {
    ensure_python
    local started=$SECONDS
    log "creating venv $VENV with $CHDB_SPEC (first run only, ~30 s)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        "$CHDB_SPEC" >&2 || {
        rm -rf "$VENV"
        die "pip install $CHDB_SPEC failed"
    }
    "$VENV/bin/python" -c 'import chdb.session' ||
        die "$CHDB_SPEC installed but 'import chdb.session' fails"
    printf '%s' "$CHDB_SPEC" >"$MARKER"
    log "venv ready in $((SECONDS - started))s"
}

main() {
    [[ -r $CHECKER ]] || die "missing $CHECKER"
    if ! venv_ready; then
        mkdir -p "$(dirname "$VENV")"
        # One installer at a time; a second caller waits, then finds it ready.
        exec 9>"$VENV.lock"
        flock 9
        venv_ready || create_venv
        flock -u 9
        exec 9>&-
    fi
    exec "$VENV/bin/python" "$CHECKER" "$@"
}

main "$@"
