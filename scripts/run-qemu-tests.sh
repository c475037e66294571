#!/bin/bash
# The QEMU side of the test run; scripts/run-tests.sh runs it after the
# standalone groups, and it runs on its own as well:
#
#   scripts/run-qemu-tests.sh [group]...     (default: all, in this order)
#
#   patches           scripts/make-patches.sh: export the series, checkpatch,
#                     `git am` round trip (1 test per patch + the round trip)
#   (QEMU build)      scripts/qemu-build.sh, incremental; timed, not a test
#   iotests-upstream  upstream iotests covering backup, copy-before-write,
#                     fleecing and jobs: ./check -qcow2, 1 test per iotest;
#                     one that fails is run once more alone (timing)
#   iotests-vma       our iotests (every tests/qemu-iotests/tests/* of this
#                     repo), the same way
#   qtest             qmp-cmd-test and test-hmp, 1 test per TAP line
#   tool-qemu         tests/vma/test_tool.py (the tool group's tests, among
#                     them the qemu-server restore) against the QEMU build's
#                     vma; ~15 s
#   clang-werror      scripts/qemu-build-clang.sh: the tree configured again
#                     with clang-19 and -Werror (thread-safety analysis on),
#                     every file the series adds or changes compiled (all of
#                     QEMU with QEMU_CLANG_BUILD=full), 1 test
#   ceph              tests/ceph/run-tests.sh: backup of RBD disks and
#                     restore into RBD on a private Ceph cluster it starts
#                     and stops; all skipped (with the reason) if Ceph
#                     cannot start
#   guest             tests/guest/test_live_backup.py: live backups of a
#                     real Linux guest (kit: tests/guest/build-kit.sh)
#                     writing ext4 + a raw disk, restored bit for bit and
#                     booted to check itself; KVM if it boots there, else
#                     TCG; all skipped (with the reason) if neither boots.
#                     About 2 minutes.
#   guest-instant     tests/guest/test_instant_restore.py: a kit guest
#                     backed up, then booted at once on the archive while
#                     vma-instant-restore copies it; checkers on the
#                     archive and on the targets alone (about 1 min)
#   guest-vmstate     tests/guest/test_vmstate_resume.py: a kit guest backed
#                     up with its RAM state while it works, resumed from the
#                     archive by a new QEMU, checks itself; e2fsck -fn
#   guest-incremental tests/guest/test_incremental_week.py: "a week of daily
#                     backups" of a writing kit guest: a full with
#                     track-changes, 7 incrementals (query-backup and the
#                     backup-chain config checked, each much smaller than
#                     the full); every day's chain prefix verified,
#                     extracted, equal bit for bit to the disks at its
#                     instant and booted to check itself; vma merge of the
#                     chain == its extract.  About 2 minutes under TCG.
#   guest-stopcont    tests/guest/test_stop_cont.py: a kit guest writing
#                     its disks on virtio-blk and virtio-scsi in an
#                     iothread, throttled, stopped and continued 150
#                     times: both writers must go on after every cont
#                     (the lost interrupts of patches 0014 and 0015).
#                     About 1 minute.
#
# iotests: "not run" counts as skipped; a test ./check did not report (it
# crashed or timed out) counts as failed.  If the QEMU build fails, every
# test of the groups after it counts as failed: old binaries in the build
# dir are never tested.
#
# Prints one line per group in run-tests.sh's format
#   == <group>  N passed, N failed, N skipped  (Ns)
# (run-tests.sh adds these up), details of failures, and last the total
# "N passed, N failed[, N skipped]".  Logs: $TEST_LOGDIR (default
# build/test-logs).  Needs root (qemu-build.sh installs packages).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
LOGDIR=${TEST_LOGDIR:-$ROOT/build/test-logs}
mkdir -p "$LOGDIR"

UPSTREAM_IOTESTS=(055 056 124 129 141 185 219 256 257 264 281 283 304
                  copy-before-write image-fleecing backup-discard-source
                  migrate-during-backup)
# Ours: every iotest of the repo (a script with its reference output)
VMA_IOTESTS=()
for f in tests/qemu-iotests/tests/*.out; do
    [ -x "${f%.out}" ] && VMA_IOTESTS+=("$(basename "${f%.out}")")
done
QTESTS=(qmp-cmd-test test-hmp)
# Each ./check run or qtest program is killed after this many seconds
IOTEST_TIMEOUT=${IOTEST_TIMEOUT:-900}
QTEST_TIMEOUT=${QTEST_TIMEOUT:-300}
CEPH_TIMEOUT=${CEPH_TIMEOUT:-600}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-600}

total_pass=0 total_fail=0 total_skip=0
record() {
    local group=$1 pass=$2 fail=$3 skip=$4 seconds=$5
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    total_skip=$((total_skip + skip))
    printf '== %-12s %4d passed, %d failed, %d skipped  (%ds)\n' \
        "$group" "$pass" "$fail" "$skip" "$seconds"
}

# --- patches ---------------------------------------------------------------
run_patches() {
    local start=$SECONDS log=$LOGDIR/patches.log
    scripts/make-patches.sh >"$log" 2>&1
    local rc=$? last
    last=$(tail -n 1 "$log")
    # Per patch: the checkpatch verdict and its errors in full (warnings:
    # in the log); the export's own errors
    awk '/^checkpatch |^make-patches: (ERROR|FAIL)/ { print; err = 0; next }
         /^    (ERROR|WARNING):/ { err = /ERROR/ }
         !/^    / { err = 0 }
         err' "$log"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        record patches "$p" "$f" 0 $((SECONDS - start))
    else
        echo "patches: make-patches.sh ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record patches 0 1 0 $((SECONDS - start))
    fi
}

# --- QEMU build ------------------------------------------------------------
BUILD=
build_qemu() {
    local start=$SECONDS log=$LOGDIR/qemu-build.log
    nice scripts/qemu-build.sh >"$log" 2>&1
    local rc=$?
    # qemu-build.sh's own phase timings
    sed -n '/^qemu-build: timings/,/^  total/{/^qemu-build: timings/d;p}' "$log"
    if [ $rc -ne 0 ]; then
        echo "QEMU build FAILED after $((SECONDS - start))s (exit $rc); last lines of $log:"
        tail -n 30 "$log"
        return 1
    fi
    BUILD=$(sed -n 's/^build dir: *//p' "$log")
    echo "== qemu build: $((SECONDS - start))s ($BUILD)"
    if [ -z "$BUILD" ] || [ ! -x "$BUILD/tests/qemu-iotests/check" ]; then
        echo "QEMU build: no build dir with tests/qemu-iotests/check in its output"
        return 1
    fi
}

# The tests of a group that cannot run because the build failed
record_unbuilt() {
    local group=$1 n=$2
    echo "$group: not run because the QEMU build failed: $n tests counted as failed"
    record "$group" 0 "$n" 0 0
}

# --- iotests ---------------------------------------------------------------
# run_iotests <group> [VAR=value...] -- <test>...: one ./check -qcow2 run
run_iotests() {
    local group=$1; shift
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    local start=$SECONDS log=$LOGDIR/$group.log scratch=$LOGDIR/$group-scratch
    rm -rf "$scratch"; mkdir -p "$scratch"
    # A private TEST_DIR: other ./check runs in the same build dir do not
    # disturb this one.  timeout kills the whole process group.
    (cd "$BUILD/tests/qemu-iotests" &&
     env TEST_DIR="$scratch" "${envs[@]}" \
         timeout -k 30 "$IOTEST_TIMEOUT" ./check --color=off -qcow2 "$@") >"$log" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && echo "$group: ./check killed after ${IOTEST_TIMEOUT}s"
    # ./check ends each test's line with the status; the "..." line before
    # it is ended by \r
    local -A status=()
    local line pass=0 fail=0 skip=0 t
    while IFS= read -r line; do
        if [[ $line =~ ^([^[:space:]]+)[[:space:]]+(pass|fail|not\ run)[[:space:]]+\[ ]]; then
            status[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        fi
    done < <(tr '\r' '\n' <"$log")
    # Upstream's own tests (IOTEST_RETRY=1): one that fails runs once more,
    # alone, and counts as passed only if it then passes.  Some are timing
    # sensitive on a loaded 2-core machine (185: an event's order against a
    # command's return; pristine QEMU fails the same way now and then).
    if [ "${IOTEST_RETRY:-0}" = 1 ]; then
        for t in "$@"; do
            [ "${status[$t]:-}" = fail ] || continue
            (cd "$BUILD/tests/qemu-iotests" &&
             env TEST_DIR="$scratch" "${envs[@]}" \
                 timeout -k 30 "$IOTEST_TIMEOUT" ./check --color=off -qcow2 "$t") \
                >"$log.retry-$t" 2>&1
            if tr '\r' '\n' <"$log.retry-$t" |
                    grep -qE "^$t[[:space:]]+pass[[:space:]]+\["; then
                echo "$group: $t failed once and passed when run again alone (first output in $log)"
                status[$t]=pass
            fi
        done
    fi
    for t in "$@"; do
        case ${status[$t]:-} in
            pass) pass=$((pass + 1)) ;;
            "not run")
                skip=$((skip + 1))
                echo "$group: $t NOT RUN: $(tr '\r' '\n' <"$log" |
                    sed -n "s/^$t  *not run  *\[[^]]*\] *\[[^]]*\] *//p" | tail -n 1)" ;;
            fail)
                fail=$((fail + 1))
                echo "$group: $t FAILED; its output:"
                # the test's line up to the next test's
                tr '\r' '\n' <"$log" | awk -v t="$t" '
                    $1 == t && $2 == "fail" { on = 1; print; next }
                    on && ($2 ~ /^(pass|fail|not|\.\.\.)$/ || /^(Failures|Passed|Not run|Some cases):?/) { exit }
                    on' | head -n 60 ;;
            *)
                fail=$((fail + 1))
                echo "$group: $t has no result (./check exited with $rc); see $log" ;;
        esac
    done
    # Python test cases skipped inside a test that ran
    grep -E '^Some cases not run in:' "$log" | sed "s/^/$group: /"
    record "$group" $pass $fail $skip $((SECONDS - start))
}

run_vma_iotests() {
    # The repository, for the tests that use its tools (tests/vma/vmagen.py)
    local envs=("VMA_SRCDIR=$ROOT")
    if [ ! -x "$BUILD/vma" ]; then
        echo "!!! iotests-vma: $BUILD/vma was not built (patch missing?): running the"
        echo "!!! tests with the standalone tool, VMA_PROG=$ROOT/build/vma"
        envs+=("VMA_PROG=$ROOT/build/vma")
    fi
    run_iotests iotests-vma "${envs[@]}" -- "${VMA_IOTESTS[@]}"
}

# --- tool-qemu -------------------------------------------------------------
# The standalone tool's tests against the QEMU build of the same front end:
# its back ends differ (QEMU's block layer), the behaviour must not
run_tool_qemu() {
    local start=$SECONDS log=$LOGDIR/tool-qemu.log rc last
    VMA_BIN=$BUILD/vma timeout -k 10 600 python3 tests/vma/test_tool.py -v >"$log" 2>&1
    rc=$?
    grep -E '\.\.\. skipped' "$log" | sed 's/^/tool-qemu: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -gt 0 ] && grep -E '^(FAIL|ERROR):' "$log" | head -n 30
        record tool-qemu "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "tool-qemu: tests/vma/test_tool.py ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record tool-qemu 0 1 0 $((SECONDS - start))
    fi
}

# --- qtests ----------------------------------------------------------------
run_qtests() {
    local start=$SECONDS pass=0 fail=0 skip=0 t
    for t in "${QTESTS[@]}"; do
        local log=$LOGDIR/qtest-$t.log p s f rc
        # The environment tests/qtest/meson.build gives qtests
        (cd "$BUILD" &&
         env QTEST_QEMU_BINARY=./qemu-system-x86_64 QTEST_QEMU_IMG=./qemu-img \
             QTEST_QEMU_STORAGE_DAEMON_BINARY=./storage-daemon/qemu-storage-daemon \
             PYTHON=/usr/bin/python3 \
             timeout -k 10 "$QTEST_TIMEOUT" "tests/qtest/$t" --tap -k) >"$log" 2>&1
        rc=$?
        p=$(grep -c '^ok ' "$log"); s=$(grep -c '^ok .*# SKIP' "$log")
        f=$(grep -c '^not ok ' "$log")
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1
            echo "qtest: $t exited with $rc; see $log"
        fi
        [ "$f" -gt 0 ] && grep -E '^not ok|ERROR|Bail out' "$log" | head -n 20
        pass=$((pass + p - s)); skip=$((skip + s)); fail=$((fail + f))
    done
    record qtest $pass $fail $skip $((SECONDS - start))
}

# --- ceph ------------------------------------------------------------------
run_ceph() {
    local start=$SECONDS log=$LOGDIR/ceph.log rc last
    timeout -k 30 "$CEPH_TIMEOUT" tests/ceph/run-tests.sh "$BUILD" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "ceph: killed after ${CEPH_TIMEOUT}s"
    # the cluster's start time, and why tests were skipped
    grep -E '^ceph-start: cluster up|^SKIP|\.\.\. skipped' "$log" | sed 's/^/ceph: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[3]}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -gt 0 ] && grep -E -A 15 '^(FAIL|ERROR):' "$log" | head -n 60
        record ceph "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "ceph: tests/ceph/run-tests.sh ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record ceph 0 1 0 $((SECONDS - start))
    fi
}

# --- guest -----------------------------------------------------------------
GUEST_TESTS=13     # 4 cases x 3 steps + detects-damage
run_guest() {
    local start=$SECONDS log=$LOGDIR/guest.log rc last
    timeout -k 30 "$GUEST_TIMEOUT" python3 tests/guest/test_live_backup.py "$BUILD" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "guest: killed after ${GUEST_TIMEOUT}s"
    # the accelerator used, the seeds, why tests were skipped
    grep -E '^guest kit|^--- |^SKIP' "$log" | sed 's/^/guest: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -gt 0 ] && grep -E '^FAIL|FAILED' "$log" | head -n 30
        record guest "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "guest: tests/guest/test_live_backup.py ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record guest 0 1 0 $((SECONDS - start))
    fi
}

# --- guest-instant ---------------------------------------------------------
GUEST_INSTANT_TESTS=3
run_guest_instant() {
    local start=$SECONDS log=$LOGDIR/guest-instant.log rc last
    timeout -k 30 "$GUEST_TIMEOUT" python3 tests/guest/test_instant_restore.py "$BUILD" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "guest-instant: killed after ${GUEST_TIMEOUT}s"
    grep -E '^guest kit|^--- |^SKIP' "$log" | sed 's/^/guest-instant: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -gt 0 ] && grep -E '^FAIL|FAILED' "$log" | head -n 30
        record guest-instant "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "guest-instant: tests/guest/test_instant_restore.py ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record guest-instant 0 1 0 $((SECONDS - start))
    fi
}

# --- guest-vmstate -----------------------------------------------------------
GUEST_VMSTATE_TESTS=4
run_guest_vmstate() {
    local start=$SECONDS log=$LOGDIR/guest-vmstate.log rc last
    timeout -k 30 "$GUEST_TIMEOUT" python3 tests/guest/test_vmstate_resume.py "$BUILD" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "guest-vmstate: killed after ${GUEST_TIMEOUT}s"
    grep -E '^accelerator|^case|^  |^SKIP' "$log" | sed 's/^/guest-vmstate: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        record guest-vmstate "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "guest-vmstate: tests/guest/test_vmstate_resume.py ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record guest-vmstate 0 1 0 $((SECONDS - start))
    fi
}

# --- guest-incremental -------------------------------------------------------
GUEST_INCREMENTAL_TESTS=25   # 1 full + 7 incrementals + 8 restores + 8 checkers + merge
run_guest_incremental() {
    local start=$SECONDS log=$LOGDIR/guest-incremental.log rc last
    timeout -k 30 "$GUEST_TIMEOUT" python3 tests/guest/test_incremental_week.py "$BUILD" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "guest-incremental: killed after ${GUEST_TIMEOUT}s"
    grep -E '^guest kit|^--- |^SKIP' "$log" | sed 's/^/guest-incremental: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -gt 0 ] && grep -E '^FAIL|FAILED' "$log" | head -n 30
        record guest-incremental "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "guest-incremental: tests/guest/test_incremental_week.py ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record guest-incremental 0 1 0 $((SECONDS - start))
    fi
}

# --- guest-stopcont ----------------------------------------------------------
GUEST_STOPCONT_TESTS=2       # the raw writer on virtio-scsi, the ext4 writer on virtio-blk
run_guest_stopcont() {
    local start=$SECONDS log=$LOGDIR/guest-stopcont.log rc last
    timeout -k 30 "$GUEST_TIMEOUT" python3 tests/guest/test_stop_cont.py "$BUILD" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "guest-stopcont: killed after ${GUEST_TIMEOUT}s"
    grep -E '^guest kit|^--- |^SKIP' "$log" | sed 's/^/guest-stopcont: /'
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        local p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
        [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
        [ "$f" -gt 0 ] && grep -E '^FAIL|FAILED|STALLED' "$log" | head -n 30
        record guest-stopcont "$p" "$f" "$s" $((SECONDS - start))
    else
        echo "guest-stopcont: tests/guest/test_stop_cont.py ended without a summary (exit $rc); last lines of $log:"
        tail -n 20 "$log"
        record guest-stopcont 0 1 0 $((SECONDS - start))
    fi
}

# --- clang -Werror build -----------------------------------------------------
# The same tree built with clang and -Werror: QEMU's thread-safety analysis
# (GRAPH_RDLOCK, coroutine_fn, lock annotations) over the whole series
run_clang() {
    local start=$SECONDS log=$LOGDIR/qemu-build-clang.log
    if nice scripts/qemu-build-clang.sh >"$log" 2>&1; then
        record clang-werror 1 0 0 $((SECONDS - start))
    else
        echo "clang-werror: the clang -Werror build failed; last lines of $log:"
        tail -n 30 "$log"
        record clang-werror 0 1 0 $((SECONDS - start))
    fi
}

# ---------------------------------------------------------------------------
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(patches iotests-upstream iotests-vma tool-qemu qtest clang-werror ceph guest guest-instant guest-vmstate guest-incremental guest-stopcont)
for g in "${groups[@]}"; do
    case $g in
        patches|iotests-upstream|iotests-vma|tool-qemu|qtest|clang-werror|ceph|guest|guest-instant|guest-vmstate|guest-incremental|guest-stopcont) ;;
        *) echo "run-qemu-tests: unknown group '$g'" >&2; exit 2 ;;
    esac
done
want() { [[ " ${groups[*]} " == *" $1 "* ]]; }

want patches && run_patches
if want iotests-upstream || want iotests-vma || want tool-qemu || want qtest || want ceph || want guest ||
   want guest-instant || want guest-vmstate || want guest-incremental || want guest-stopcont ||
   want clang-werror; then
    if build_qemu; then
        want iotests-upstream && IOTEST_RETRY=1 run_iotests iotests-upstream -- "${UPSTREAM_IOTESTS[@]}"
        want iotests-vma && run_vma_iotests
        want tool-qemu && run_tool_qemu
        want qtest && run_qtests
        want clang-werror && run_clang
        want ceph && run_ceph
        want guest && run_guest
        want guest-instant && run_guest_instant
        want guest-vmstate && run_guest_vmstate
        want guest-incremental && run_guest_incremental
        want guest-stopcont && run_guest_stopcont
    else
        want iotests-upstream && record_unbuilt iotests-upstream ${#UPSTREAM_IOTESTS[@]}
        want iotests-vma && record_unbuilt iotests-vma ${#VMA_IOTESTS[@]}
        want tool-qemu && record_unbuilt tool-qemu 1
        want qtest && record_unbuilt qtest ${#QTESTS[@]}
        want clang-werror && record_unbuilt clang-werror 1
        want ceph && record_unbuilt ceph "$(grep -c '^    def test_' tests/ceph/test_rbd.py)"
        want guest && record_unbuilt guest $GUEST_TESTS
        want guest-instant && record_unbuilt guest-instant $GUEST_INSTANT_TESTS
        want guest-vmstate && record_unbuilt guest-vmstate $GUEST_VMSTATE_TESTS
        want guest-incremental && record_unbuilt guest-incremental $GUEST_INCREMENTAL_TESTS
        want guest-stopcont && record_unbuilt guest-stopcont $GUEST_STOPCONT_TESTS
    fi
fi

if [ $total_skip -gt 0 ]; then
    echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
    echo "$total_pass passed, $total_fail failed"
fi
[ $total_fail -eq 0 ]
