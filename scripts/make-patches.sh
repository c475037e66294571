#!/bin/bash
# Export the QEMU side of this repository as a `git format-patch` series
# against the pinned QEMU (QEMU_VERSION: Debian's source package, as
# `apt-get source` extracts it), with a cover letter, and check it.
#
#   scripts/make-patches.sh [-o DIR] [--build] [--bisect]
#
# One commit per patches/*.patch, in patches/series order; each commit also
# adds, as new files, the overlay files (new in-tree files of this repo) that
# patches/series maps to it.  Every overlay file must be mapped exactly once.
# The standalone-only files (top-level meson.build, meson_options.txt,
# README.md, QEMU_VERSION, Makefile, tests/vma/, scripts/, bench/, patches/,
# dot files) are not part of the series.
#
# Checks:
#   - every exported patch with the QEMU tree's scripts/checkpatch.pl:
#     errors fail, warnings are printed; so are whitespace errors
#     (git diff --check: what `git am` warns about)
#   - the exported files `git am` onto the pristine tree and give exactly
#     the tree they were exported from
#   - --build: configure that tree and build qemu-system-x86_64, qemu-img
#     (and vma, if the series builds it) in a scratch dir ($QEMU_WORKDIR/
#     export/verify-build), nice'd.  15 min on 2 busy cores; not in CI.
#   - --bisect: the same build at every commit of the series, in order, in
#     one scratch dir ($QEMU_WORKDIR/export/bisect-build; ninja rebuilds
#     what each patch changes): each patch builds on its own.  The full
#     build once, then a few minutes per patch; not in CI.
#
# Output: DIR (default build/patches/): 0000-cover-letter.patch, 0001-...
# Last line: "N passed, N failed": one test per exported patch (checkpatch
# without errors) plus one for the `git am` round trip (and one for --build,
# one per patch for --bisect).
#
# Environment: QEMU_WORKDIR (default /var/tmp/vma-qemu), shared with
# scripts/qemu-build.sh: the pristine source is fetched once for both.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORKDIR=${QEMU_WORKDIR:-/var/tmp/vma-qemu}
EXPORT=$WORKDIR/export
TREE=$EXPORT/qemu                       # git: tag `pristine`, series on top
OUT=$REPO/build/patches
BUILD_CHECK=0
BISECT_CHECK=0
GIT_IDENT=(-c "user.name=VMA backup developers" -c "user.email=vma-backup@example.org")
TITLE="VMA backup archive and live VM backup for QEMU"

while [ $# -gt 0 ]; do
    case $1 in
        -o) OUT=$(realpath -m "$2"); shift 2 ;;
        --build) BUILD_CHECK=1; shift ;;
        --bisect) BISECT_CHECK=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "usage: $0 [-o DIR] [--build] [--bisect]" >&2; exit 2 ;;
    esac
done

say() { echo "make-patches: $*"; }
n_pass=0 n_fail=0
finish() {
    echo "$n_pass passed, $n_fail failed"
    exit $((n_fail > 0))
}
# An error that stops the export: counted as one failed test
die() { say "ERROR: $*"; n_fail=$((n_fail + 1)); finish; }
tgit() { git -C "$TREE" "${GIT_IDENT[@]}" "$@"; }

mkdir -p "$EXPORT"
exec 9>"$EXPORT/.lock"
flock -w 900 9 || die "another make-patches.sh holds $EXPORT/.lock"

# --- the pinned pristine source --------------------------------------------
PINNED=$(tr -d '[:space:]' <"$REPO/QEMU_VERSION")
[ -n "$PINNED" ] || die "QEMU_VERSION is empty"
# Same place and completion marker as scripts/qemu-build.sh, so that either
# script fetches it once for both.  Unlike the build, the export never falls
# back to another version: the series is against the pinned one.
SRCDIR=$WORKDIR/source/${PINNED//:/_}
if [ ! -f "$SRCDIR/.complete" ]; then
    "$REPO/scripts/install-qemu-deps.sh" || die "installing the QEMU dependencies failed"
    tmp=$SRCDIR.export-tmp
    rm -rf "$tmp"; mkdir -p "$tmp"
    say "apt-get source qemu=$PINNED"
    (cd "$tmp" && apt-get source -q -o APT::Sandbox::User=root "qemu=$PINNED") \
        >"$EXPORT/fetch.log" 2>&1 ||
        { tail -n 20 "$EXPORT/fetch.log"; die "apt-get source qemu=$PINNED failed (see $EXPORT/fetch.log)"; }
    touch "$tmp/.complete"
    if [ -f "$SRCDIR/.complete" ]; then rm -rf "$tmp"; else rm -rf "$SRCDIR"; mv "$tmp" "$SRCDIR"; fi
fi
PRISTINE=$(find "$SRCDIR" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' -print -quit)
if [ -z "$PRISTINE" ] || [ ! -f "$PRISTINE/VERSION" ]; then
    die "no extracted source tree in $SRCDIR"
fi
UPSTREAM=$(cat "$PRISTINE/VERSION")

# A git repository of the pristine tree (minus quilt's .pc/, like the build
# tree), made once per version.  The commit is reproducible (fixed identity,
# date of Debian's changelog entry), so the same series exports to the same
# files.
if [ "$(cat "$TREE/.git/vma-export-base" 2>/dev/null)" != "$PINNED" ]; then
    say "importing $PRISTINE into $TREE (once per QEMU version)"
    rm -rf "$TREE" "$TREE.tmp"
    rsync -a --exclude=/.pc "$PRISTINE/" "$TREE.tmp/"
    date=$(awk '/^ -- / { sub(/^ -- .*>  /, ""); print; exit }' \
               "$TREE.tmp/debian/changelog" 2>/dev/null || true)
    git -C "$TREE.tmp" init -q
    git -C "$TREE.tmp" config gc.auto 0
    git -C "$TREE.tmp" add -A -f .
    GIT_AUTHOR_DATE=${date:-@0 +0000} GIT_COMMITTER_DATE=${date:-@0 +0000} \
        git -C "$TREE.tmp" "${GIT_IDENT[@]}" commit -q -m "pristine" \
        -m "Debian source package qemu $PINNED as extracted by apt-get source."
    git -C "$TREE.tmp" tag pristine
    echo "$PINNED" >"$TREE.tmp/.git/vma-export-base"
    mv "$TREE.tmp" "$TREE"
fi

# --- which files go where ---------------------------------------------------
# The overlay: this repo's files that belong in QEMU's tree.  Same rule as
# overlay_files() in scripts/qemu-build.sh - keep the two in sync.
mapfile -d '' OVERLAY < <(
    cd "$REPO"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard
    else
        find . -type f -printf '%P\0'
    fi |
    while IFS= read -r -d '' f; do
        case $f in
            meson.build|meson_options.txt|README.md|QEMU_VERSION|Makefile) continue ;;
            .*|tests/vma/*|tests/guest/*|tests/ceph/*|bench/*|scripts/*|patches/*|build/*|build-*/*) continue ;;
            # the design rationale goes into the cover letter, not the tree
            docs/backup-rfc.txt) continue ;;
        esac
        [ -f "$f" ] && printf '%s\0' "$f"
    done | sort -z)

shopt -s nullglob
ALL_PATCHES=("$REPO"/patches/*.patch)
shopt -u nullglob

# patches/series: ENTRY_PATCH[i] (file), ENTRY_GLOBS[i] (space separated)
ENTRY_PATCH=() ENTRY_GLOBS=() errors=()
SERIES=$REPO/patches/series
[ -f "$SERIES" ] || die "no $SERIES"
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ $line =~ ^[[:space:]] ]]; then
        if [ ${#ENTRY_PATCH[@]} -eq 0 ]; then
            errors+=("patches/series:$lineno: continuation line before the first entry")
            continue
        fi
        ENTRY_GLOBS[-1]+=" $line"
        continue
    fi
    if [[ $line != *:* ]]; then
        errors+=("patches/series:$lineno: expected '<patch>: <overlay files>'")
        continue
    fi
    pat=${line%%:*}
    matches=()
    for p in "${ALL_PATCHES[@]}"; do
        # shellcheck disable=SC2053
        [[ ${p##*/} == $pat ]] && matches+=("$p")
    done
    if [ ${#matches[@]} -ne 1 ]; then
        errors+=("patches/series:$lineno: '$pat' matches ${#matches[@]} files in patches/ (need exactly one)")
        continue
    fi
    ENTRY_PATCH+=("${matches[0]}")
    ENTRY_GLOBS+=("${line#*:}")
done <"$SERIES"

# The series order must be the order qemu-build.sh applies patches/*.patch in
if [ "${ENTRY_PATCH[*]}" != "${ALL_PATCHES[*]}" ] && [ ${#errors[@]} -eq 0 ]; then
    errors+=("patches/series must name every patches/*.patch once, in file name order:"
             "  series:   $(printf '%s ' "${ENTRY_PATCH[@]##*/}")"
             "  patches/: $(printf '%s ' "${ALL_PATCHES[@]##*/}")")
fi

# Map every overlay file to exactly one entry; every glob must match
declare -A GLOB_USED=()
ENTRY_FILES=()
for i in "${!ENTRY_PATCH[@]}"; do ENTRY_FILES[i]=""; done
for f in "${OVERLAY[@]}"; do
    owners=()
    for i in "${!ENTRY_PATCH[@]}"; do
        read -r -a globs <<<"${ENTRY_GLOBS[i]}"     # no pathname expansion
        for g in "${globs[@]}"; do
            # shellcheck disable=SC2053
            if [[ $f == $g ]]; then
                GLOB_USED[$i:$g]=1
                [[ " ${owners[*]} " == *" $i "* ]] || owners+=("$i")
            fi
        done
    done
    case ${#owners[@]} in
        1) ENTRY_FILES[owners[0]]+="$f"$'\n' ;;
        0) errors+=("overlay file $f is in no patch: add it to a line of patches/series") ;;
        *) errors+=("overlay file $f is in several patches: $(for i in "${owners[@]}"; do printf '%s ' "${ENTRY_PATCH[i]##*/}"; done)") ;;
    esac
done
for i in "${!ENTRY_PATCH[@]}"; do
    read -r -a globs <<<"${ENTRY_GLOBS[i]}"
    for g in "${globs[@]}"; do
        [ -n "${GLOB_USED[$i:$g]:-}" ] ||
            errors+=("patches/series: '$g' (${ENTRY_PATCH[i]##*/}) matches no overlay file")
    done
done
if [ ${#errors[@]} -gt 0 ]; then
    printf 'make-patches: ERROR: %s\n' "${errors[@]}"
    die "patches/series does not map the overlay onto patches/ (${#errors[@]} problems)"
fi

# --- the commits --------------------------------------------------------------
say "exporting ${#ENTRY_PATCH[@]} patches against qemu $PINNED (QEMU $UPSTREAM)"
reset_tree() {
    tgit am --abort >/dev/null 2>&1 || true
    tgit reset -q --hard pristine
    tgit clean -q -fdx
}
reset_tree
for i in "${!ENTRY_PATCH[@]}"; do
    p=${ENTRY_PATCH[i]}
    if ! tgit am -q --committer-date-is-author-date "$p" >"$EXPORT/am.log" 2>&1; then
        cat "$EXPORT/am.log"
        reset_tree
        die "${p##*/} does not apply to qemu $PINNED"
    fi
    mapfile -t files < <(printf '%s' "${ENTRY_FILES[i]}")
    if [ ${#files[@]} -gt 0 ]; then
        clash=$(tgit ls-files -- "${files[@]}")
        [ -z "$clash" ] || die "overlay files that QEMU's tree (or the series) already has: $clash"
        (cd "$REPO" && cp --parents -- "${files[@]}" "$TREE/")
        tgit add -- "${files[@]}"
        GIT_COMMITTER_DATE=$(tgit log -1 --format=%aD) \
            tgit commit -q --amend --no-edit --no-verify
    fi
    printf '  %s  %s (+%d new files)\n' "$(tgit log -1 --format=%h)" \
        "$(tgit log -1 --format=%s)" "${#files[@]}"
done
EXPORTED=$(tgit rev-parse HEAD)

# --- format-patch + cover letter --------------------------------------------
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
orderfile=()
[ -f "$TREE/scripts/git.orderfile" ] && orderfile=(-O "$TREE/scripts/git.orderfile")
tgit format-patch -q --cover-letter --numbered --no-signature "${orderfile[@]}" \
    -o "$OUT.tmp" pristine..HEAD
N=${#ENTRY_PATCH[@]}

# The summary of one commit: its first paragraph (and the next one when the
# first ends with a colon), then the new files it adds
commit_summary() {
    local c=$1
    tgit log -1 --format=%b "$c" | sed '/^Signed-off-by:/d' |
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
             NR == 1 { print; if ($0 !~ /:$/) exit; next }
             NR == 2 { print; exit }' |
        sed -e 's/^./    &/' -e '${/^$/d}'
    local new
    new=$(tgit diff-tree --no-commit-id --diff-filter=A --name-only -r "$c")
    if [ -n "$new" ]; then
        echo "    New files:"
        echo "$new" | fmt -w 70 | sed 's/^/      /'
    fi
}
blurb=$OUT.tmp/blurb
{
    # The design rationale (docs/backup-rfc.txt, without its Subject line)
    sed '1{/^Subject:/d}' "$REPO/docs/backup-rfc.txt" | sed '1{/^$/d}'
    cat <<EOF

Based on Debian's qemu $PINNED (QEMU $UPSTREAM).

The patches:

EOF
    k=0
    for c in $(tgit rev-list --reverse pristine..HEAD); do
        k=$((k + 1))
        [ $k -eq 1 ] || echo
        echo "$k/$N: $(tgit log -1 --format=%s "$c")"
        commit_summary "$c"
    done
} >"$blurb"
cover=$OUT.tmp/0000-cover-letter.patch
# The cover letter's date is the last patch's (not now): the same series
# exports to the same files
awk -v title="$TITLE" -v blurbfile="$blurb" -v date="$(tgit log -1 --format=%aD)" '
    /^Date: / && !dated { print "Date: " date; dated = 1; next }
    /\*\*\* SUBJECT HERE \*\*\*/ { sub(/\*\*\* SUBJECT HERE \*\*\*/, title) }
    /^\*\*\* BLURB HERE \*\*\*$/ {
        while ((getline l < blurbfile) > 0) print l
        next
    }
    { print }' "$cover" >"$cover.new"
mv "$cover.new" "$cover"
rm -f "$blurb"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
PATCH_FILES=()
for f in "$OUT"/[0-9][0-9][0-9][0-9]-*.patch; do
    [ "${f##*/}" = 0000-cover-letter.patch ] || PATCH_FILES+=("$f")
done
say "wrote $OUT: cover letter + ${#PATCH_FILES[@]} patches"

# --- checkpatch ---------------------------------------------------------------
for f in "${PATCH_FILES[@]}"; do
    log=$EXPORT/checkpatch-${f##*/}.log
    rc=0
    (cd "$TREE" && perl scripts/checkpatch.pl --color=never "$f") >"$log" 2>&1 || rc=$?
    total=$(grep -E '^total: [0-9]+ errors, [0-9]+ warnings' "$log" | tail -n 1)
    if [[ $total =~ ^total:\ ([0-9]+)\ errors,\ ([0-9]+)\ warnings ]]; then
        e=${BASH_REMATCH[1]} w=${BASH_REMATCH[2]}
    else
        e=1 w=0
        echo "  (checkpatch exited with $rc without a summary)"
    fi
    if [ "$e" -eq 0 ] && [ "$rc" -eq 0 ]; then
        n_pass=$((n_pass + 1)); verdict=ok
    else
        n_fail=$((n_fail + 1)); verdict=FAIL
    fi
    echo "checkpatch ${f##*/}: $verdict, $e errors, $w warnings"
    if [ "$e" -gt 0 ] || [ "$w" -gt 0 ] || [ "$verdict" = FAIL ]; then
        grep -v -E '^total: |has no obvious style problems|has style problems, please review|are false positives report them|^CHECKPATCH in MAINTAINERS|^$' "$log" |
            sed 's/^/    /' | head -n 200
    fi
done

# Whitespace errors (git am warns about them): printed, not counted
ws=$(tgit diff --check pristine "$EXPORTED" || true)
if [ -n "$ws" ]; then
    echo "whitespace (git diff --check), warnings:"
    echo "$ws" | grep -v '^[+-]' | sed 's/^/    /'
fi

# --- the exported files apply to the pristine tree -----------------------------
reset_tree
if tgit am -q "${PATCH_FILES[@]}" >"$EXPORT/am.log" 2>&1 &&
   [ "$(tgit rev-parse 'HEAD^{tree}')" = "$(tgit rev-parse "$EXPORTED^{tree}")" ]; then
    n_pass=$((n_pass + 1))
    say "git am of $OUT onto qemu $PINNED: ok (same tree as exported)"
else
    n_fail=$((n_fail + 1))
    cat "$EXPORT/am.log"
    say "FAIL: git am of $OUT onto qemu $PINNED does not give the exported tree"
fi

# --- optional: build what git am gave -------------------------------------------
# Configure $1 for the tree as it is checked out; log to $2
configure_build() {
    (cd "$1" && nice "$TREE/configure" --python=/usr/bin/python3 "--cc=ccache gcc" \
        --target-list=x86_64-softmmu --enable-tools --disable-docs \
        --disable-download --disable-install-blobs) >"$2" 2>&1
}

# Build qemu-system-x86_64, qemu-img and (once the series has it) vma in $1
build_targets() {
    local targets=(qemu-system-x86_64 qemu-img)
    ninja -C "$1" -t query vma >/dev/null 2>&1 && targets+=(vma)
    nice ninja -C "$1" "${targets[@]}" >>"$2" 2>&1
}

# Count one build check: $1 what is built, $2 its log, then the command
count_build() {
    local what=$1 log=$2 t0=$SECONDS
    shift 2
    if "$@"; then
        n_pass=$((n_pass + 1))
        say "$what: built in $((SECONDS - t0))s"
    else
        n_fail=$((n_fail + 1))
        grep -E 'error|FAILED' "$log" | head -n 20
        say "FAIL: $what (after $((SECONDS - t0))s; see $log)"
    fi
}

# A new build dir $1, configured and built; log to $2
fresh_build() {
    rm -rf "$1"; mkdir -p "$1"
    configure_build "$1" "$2" && build_targets "$1" "$2"
}

if [ $BUILD_CHECK = 1 ]; then
    say "--build: configure + ninja in $EXPORT/verify-build"
    count_build --build "$EXPORT/verify-build.log" \
        fresh_build "$EXPORT/verify-build" "$EXPORT/verify-build.log"
fi

if [ $BISECT_CHECK = 1 ]; then
    head=$(tgit rev-parse HEAD)
    mapfile -t commits < <(tgit rev-list --reverse pristine..HEAD)
    for i in "${!commits[@]}"; do
        tgit checkout -q "${commits[i]}"
        what="--bisect $((i + 1))/${#commits[@]} $(tgit log -1 --format=%s)"
        log=$EXPORT/bisect-$((i + 1)).log
        if [ "$i" -eq 0 ]; then
            count_build "$what" "$log" fresh_build "$EXPORT/bisect-build" "$log"
        else
            count_build "$what" "$log" build_targets "$EXPORT/bisect-build" "$log"
        fi
    done
    tgit checkout -q "$head"
fi
finish
