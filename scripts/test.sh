#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints,
# then every unit, property and integration test. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit, property and integration tests)"
cargo test --lib --bins --tests

step "benchmarks compile (run them with: cargo bench)"
cargo build --benches --release
