#!/usr/bin/env bash
# Bounded fuzzing of what reads user input: the statement splitter, the
# lexer-backed identifier quoting, the header parser and the file parser of
# every format (Flyway, up/down pairs, dbmate, undo files). They are proptest
# properties in the library's unit tests; the suite runs them with a few
# hundred to a few thousand cases each, this script with many more, in a
# release build, for at most FUZZ_SECONDS (default 300) per property group.
#
#   bash scripts/fuzz.sh                 # 200,000 cases per property, <= 5 min each
#   FUZZ_CASES=20000 FUZZ_SECONDS=60 bash scripts/fuzz.sh
#
# A failure prints the minimal failing input (proptest shrinks it) and the
# seed is kept in proptest-regressions/, so the next `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

cases="${FUZZ_CASES:-200000}"
seconds="${FUZZ_SECONDS:-300}"
# Every property test of the library, by the module it lives in.
groups=(
    "sql::split::tests::"
    "sql::ident::tests::any_name"
    "source::header::tests::"
    "source::file::tests::any_file"
)

cargo test --release --lib --no-run --quiet
status=0
for g in "${groups[@]}"; do
    printf '== %s (%s cases, at most %ss)\n' "$g" "$cases" "$seconds"
    start=$SECONDS
    if CHMIGRATE_FUZZ_CASES="$cases" timeout --signal=INT "$seconds" \
        cargo test --release --lib --quiet -- "$g"; then
        printf '   passed in %ss\n' $((SECONDS - start))
    else
        rc=$?
        if ((rc == 124)); then
            # The time bound, not a failure: every case run so far passed.
            printf '   stopped at the %ss bound, no failure found\n' "$seconds"
        else
            status=1
            printf '   FAILED (exit %s)\n' "$rc"
        fi
    fi
done
exit "$status"
