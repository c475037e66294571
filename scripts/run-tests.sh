#!/bin/bash
# Run every test group and print the total on the last line:
#   N passed, N failed[, N skipped]
# Installs what it needs (Debian 12, as root).  Set FUZZ_SECONDS to change
# the fuzzing time (default 60).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGDIR=${TEST_LOGDIR:-$ROOT/build/test-logs}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

total_pass=0 total_fail=0 total_skip=0

# Add one group's counts to the total and say how it went
record() {
    local group=$1 pass=$2 fail=$3 skip=$4 seconds=$5
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    total_skip=$((total_skip + skip))
    printf '== %-12s %4d passed, %d failed, %d skipped  (%ds)\n' \
        "$group" "$pass" "$fail" "$skip" "$seconds"
}

# Run TAP test programs; a program that dies without reporting is a failure
run_tap_group() {
    local group=$1; shift
    local start=$SECONDS pass=0 fail=0 skip=0 log p s
    for prog in "$@"; do
        log=$LOGDIR/$group-$(basename "$prog").log
        "$prog" --tap >"$log" 2>&1
        local rc=$?
        p=$(grep -c '^ok ' "$log" | tr -d '\n'); s=$(grep -c '^ok .*# SKIP' "$log")
        local f; f=$(grep -c '^not ok ' "$log")
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1
            echo "$group: $prog exited with $rc; see $log"
        fi
        [ "$f" -gt 0 ] && grep -E '^not ok|ERROR|Bail out' "$log" | head -20
        pass=$((pass + p - s)); skip=$((skip + s)); fail=$((fail + f))
    done
    record "$group" $pass $fail $skip $((SECONDS - start))
}

# Run a program whose last line is "N passed, N failed[, N skipped]"
run_summary_group() {
    local group=$1; shift
    local start=$SECONDS log=$LOGDIR/$group.log
    "$@" >"$log" 2>&1
    local rc=$?
    local last; last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        [ "$f" -gt 0 ] && grep -E 'FAIL|Error|error' "$log" | head -30
        record "$group" "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "$group: no summary line (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record "$group" 0 1 0 $((SECONDS - start))
    fi
}

# One libFuzzer run over a seed corpus made from real archives
run_fuzz_group() {
    local start=$SECONDS corpus=$LOGDIR/fuzz-corpus log=$LOGDIR/fuzz.log
    rm -rf "$corpus"; mkdir -p "$corpus"
    python3 tests/vma/make-fuzz-seeds.py "$ROOT/build/vma" "$corpus" \
        >"$LOGDIR/fuzz-seeds.log" 2>&1
    if build-fuzz/fuzz-vma-reader -max_total_time="$FUZZ_SECONDS" \
            -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$LOGDIR/" \
            "$corpus" >"$log" 2>&1; then
        record fuzz 1 0 0 $((SECONDS - start))
    else
        tail -n 30 "$log"
        record fuzz 0 1 0 $((SECONDS - start))
    fi
}

# The QEMU side (scripts/run-qemu-tests.sh: patch export + checkpatch, QEMU
# build, iotests, qtests).  Its group lines are in record's format: add them
# up; everything else it prints passes through.  Its last line is its own
# total: without it, it died on the way, which counts as a failure.
run_qemu_groups() {
    local line ended=0
    while IFS= read -r line; do
        if [[ $line =~ ^==\ ([^ ]+)\ +([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped\ +\(([0-9]+)s\)$ ]]; then
            record "${BASH_REMATCH[@]:1:5}"
        elif [[ $line =~ ^[0-9]+\ passed,\ [0-9]+\ failed(,\ [0-9]+\ skipped)?$ ]]; then
            ended=1
        else
            echo "$line"
        fi
    done < <(TEST_LOGDIR=$LOGDIR scripts/run-qemu-tests.sh 2>&1)
    if [ $ended = 0 ]; then
        echo "qemu: scripts/run-qemu-tests.sh ended without its summary line"
        record qemu 0 1 0 0
    fi
}

main() {
    scripts/install-deps.sh || { echo "installing dependencies failed"; echo "0 passed, 1 failed"; exit 1; }
    local start=$SECONDS
    if ! scripts/build-standalone.sh plain asan nozstd fuzz; then
        echo "standalone build failed"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "== standalone builds: $((SECONDS - start))s"
    mkdir -p "$LOGDIR"

    run_tap_group unit build/test-vma-writer build/test-vma-reader build/test-vma-chain \
        build/test-vma-partitions
    run_tap_group unit-asan build-asan/test-vma-writer build-asan/test-vma-reader \
        build-asan/test-vma-chain \
        build-asan/test-vma-partitions
    run_summary_group tool env VMA_BIN="$ROOT/build/vma" \
        VMA_NOZSTD_BIN="$ROOT/build-nozstd/vma" python3 tests/vma/test_tool.py
    run_summary_group tool-asan env VMA_BIN="$ROOT/build-asan/vma" \
        ASAN_OPTIONS=detect_leaks=1 python3 tests/vma/test_tool.py
    run_fuzz_group
    run_qemu_groups

    echo "logs: $LOGDIR"
    if [ $total_skip -gt 0 ]; then
        echo "$total_pass passed, $total_fail failed, $total_skip skipped"
    else
        echo "$total_pass passed, $total_fail failed"
    fi
    [ $total_fail -eq 0 ]
}

main "$@"
