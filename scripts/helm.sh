#!/usr/bin/env bash
# helm.sh — lint and render a Helm chart with the real Helm library (Helm v4,
# the Go shared object libhelm_sdkpy.so shipped in PyPI's `helm-sdkpy` wheel),
# driven by scripts/helm.py through ctypes. No helm binary, no cluster.
#
# Usage:
#   scripts/helm.sh lint CHART_DIR [-f VALUES.yaml ...] [--set K=V ...] [--strict]
#   scripts/helm.sh template CHART_DIR [-f VALUES.yaml ...] [--set K=V ...]
#                   [--namespace NS] [--release NAME] [--include-crds]
#                   [--no-hooks] [--skip-tests] [--kube-version vX.Y.Z]
#   scripts/helm.sh version
#   Examples: scripts/helm.sh lint charts/chmigrate -f charts/chmigrate/values-production.yaml
#             scripts/helm.sh template charts/chmigrate --namespace chmigrate --release chm
#   lint: exit 0 when Helm reports no ERROR (WARNINGs fail only with --strict),
#   1 otherwise. template: manifests on stdout; exit 1 with Helm's error (e.g.
#   a values.schema.json refusal) on stderr. See scripts/helm.py for details.
#
# The first run downloads the helm-sdkpy wheel (47 MB) with pip and unpacks
# only its libhelm_sdkpy.so (117 MB) into the cache dir, then reuses it
# (a few seconds, once). Messages about that go to stderr; stdout is only
# helm.py's output. The wheel says Python >= 3.12 because of its Python side;
# the shared object is all we use, and helm.py runs on Python >= 3.9.
#
# Environment knobs (all optional):
#   CHMIGRATE_HELM_CACHE          cache dir (default /tmp/chmigrate-helm)
#   CHMIGRATE_HELM_SDKPY_VERSION  helm-sdkpy version (default 0.1.32 = Helm v4.3.0);
#                                 changing it re-downloads
#   CHMIGRATE_HELM_PYTHON         Python (>= 3.9) for pip and helm.py (default python3)
set -euo pipefail

CACHE="${CHMIGRATE_HELM_CACHE:-/tmp/chmigrate-helm}"
[[ $CACHE == /* ]] || CACHE="$PWD/$CACHE"
readonly CACHE="${CACHE%/}"
readonly VERSION="${CHMIGRATE_HELM_SDKPY_VERSION:-0.1.32}"
readonly SPEC="helm-sdkpy==$VERSION"
readonly PYTHON="${CHMIGRATE_HELM_PYTHON:-python3}"
# sha256 of the pinned wheel; another version is checked by pip only.
readonly WHEEL_SHA256_0_1_32=bcf5bf73cacc373bebedfb9c988969aa12a9eda86a140deba658fbf28eb789c5
readonly LIB="$CACHE/libhelm_sdkpy.so"
readonly MARKER="$CACHE/.chmigrate-helm-ready"
readonly PYFILE="$CACHE/python"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly SCRIPT="$REPO/scripts/helm.py"

log() { printf '[helm] %s\n' "$*" >&2; }
die() { printf '[helm] ERROR: %s\n' "$*" >&2; exit 2; }

ready() {
    [[ -f $LIB && -f $MARKER && $(<"$MARKER") == "$SPEC $PYTHON" && -f $PYFILE ]] &&
        [[ -x $(<"$PYFILE") ]]
}

# A fresh Debian 12 may have no python3 (minimal images) or no pip for it;
# install them from Debian if needed.
ensure_python() {
    if command -v "$PYTHON" >/dev/null &&
        "$PYTHON" -c 'import sys, ctypes, zipfile; sys.exit(sys.version_info < (3, 9))' 2>/dev/null &&
        "$PYTHON" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    [[ $PYTHON == python3 ]] || die "$PYTHON is not a Python >= 3.9 with pip"
    [[ $(id -u) -eq 0 ]] || die "python3 with pip is missing; install python3-pip (needs root)"
    command -v apt-get >/dev/null || die "python3 with pip is missing and there is no apt-get"
    log "installing python3 python3-pip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-pip >&2
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "python3 still has no pip"
}

install_lib() {
    ensure_python
    local started=$SECONDS
    local machine
    machine=$(uname -m)
    [[ $machine == x86_64 ]] ||
        die "helm-sdkpy $VERSION ships libhelm_sdkpy.so for linux-amd64 only, not $machine"
    log "downloading $SPEC into $CACHE (first run only)"
    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/download.XXXXXX")
    # The wheel is py3-none-any but requires Python >= 3.12 (its Python side);
    # download it as for 3.12 without installing it.
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-input --no-deps \
        --only-binary=:all: --python-version 3.12 -d "$tmp" "$SPEC" >&2 || {
        rm -rf "$tmp"
        die "pip download $SPEC failed"
    }
    local wheel
    wheel=$(find "$tmp" -maxdepth 1 -name 'helm_sdkpy-*.whl' | head -n1)
    [[ -n $wheel ]] || { rm -rf "$tmp"; die "no helm_sdkpy wheel downloaded"; }
    if [[ $VERSION == 0.1.32 ]]; then
        local sum
        sum=$(sha256sum "$wheel" | cut -d' ' -f1)
        [[ $sum == "$WHEEL_SHA256_0_1_32" ]] || {
            rm -rf "$tmp"
            die "$wheel has sha256 $sum, expected $WHEEL_SHA256_0_1_32"
        }
    fi
    "$PYTHON" - "$wheel" "$tmp/libhelm_sdkpy.so" <<'PY' || { rm -rf "$tmp"; die "unpacking $wheel failed"; }
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    mv -f "$tmp/libhelm_sdkpy.so" "$LIB"
    rm -rf "$tmp"
    # The interpreter itself, not a wrapper such as a pyenv shim (0.3 s a call).
    "$PYTHON" -c 'import sys; print(sys.executable)' >"$PYFILE"
    CHMIGRATE_HELM_LIB="$LIB" "$(<"$PYFILE")" "$SCRIPT" version >/dev/null ||
        die "$LIB does not load"
    printf '%s' "$SPEC $PYTHON" >"$MARKER"
    log "ready in $((SECONDS - started))s: $LIB"
}

main() {
    [[ -r $SCRIPT ]] || die "missing $SCRIPT"
    if ! ready; then
        mkdir -p "$CACHE"
        # One installer at a time; a second caller waits, then finds it ready.
        exec 9>"$CACHE.lock"
        flock 9
        ready || install_lib
        flock -u 9
        exec 9>&-
    fi
    CHMIGRATE_HELM_LIB="$LIB" exec "$(<"$PYFILE")" "$SCRIPT" "$@"
}

main "$@"
