#!/bin/sh
# Build and run weir's libFuzzer harnesses for a bounded time.
#
#   tests/fuzz/run.sh [--seconds N] [--out DIR] [BUILD_DIR]
#
# Builds tests/fuzz/fuzz_places and tests/fuzz/fuzz_env with clang
# (-fsanitize=fuzzer,address,undefined) straight from the library sources
# they need, runs each for N seconds (default 20, or $FUZZ_SECONDS) on a copy
# of its seed corpus in tests/fuzz/corpus/<name>/, and prints one summary
# line per harness. Exits 1 if any harness crashed, leaked, timed out or ran
# out of memory (the reproducer is printed in hex and kept in DIR), 2 when
# the build fails.
#
# BUILD_DIR: a Meson build directory whose weir_build_config.h is used (the
# defaults the parsers fall back to). Without it a header with the defaults
# of meson_options.txt is written to the work directory, so the script needs
# nothing but clang. DIR (default: a fresh temporary directory) keeps the
# binaries, logs, the grown corpora and any crash artifacts; it is removed at
# the end unless --out was given or something failed.
#
# Environment: CLANG (default clang), FUZZ_SECONDS, FUZZ_FLAGS (extra
# libFuzzer flags, e.g. "-jobs=2" or "-seed=1").
set -eu

seconds=${FUZZ_SECONDS:-20}
out=
build=
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
case $seconds in
''|*[!0-9]*) echo "run.sh: --seconds needs a whole number, got '$seconds'" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
clang=${CLANG:-clang}
command -v "$clang" >/dev/null 2>&1 || { echo "run.sh: $clang not found (apt-get install clang)" >&2; exit 2; }

keep=0
if [ -n "$out" ]; then
    mkdir -p "$out"
    keep=1
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/weir-fuzz.XXXXXX")
fi
out=$(cd "$out" && pwd)

# The generated header: the build's if given, else the option defaults.
if [ -n "$build" ]; then
    [ -f "$build/weir_build_config.h" ] || { echo "run.sh: $build/weir_build_config.h not found" >&2; exit 2; }
    confdir=$(cd "$build" && pwd)
    [ -f "$confdir/include/weir/version.h" ] || { echo "run.sh: $build/include/weir/version.h not found" >&2; exit 2; }
    confdir="$confdir -I$confdir/include"
else
    confdir=$out/conf
    mkdir -p "$confdir"
    cat > "$confdir/weir_build_config.h" <<'EOF'
/* Written by tests/fuzz/run.sh: the defaults of meson_options.txt. */
#pragma once
#define WEIR_DEFAULT_AFFINITY WEIR_AFFINITY_COMPACT
#define WEIR_DEFAULT_SPIN 4096
#define WEIR_DEFAULT_WORKERS 0
#define WEIR_HAVE_HWLOC 0
EOF
    mkdir -p "$confdir/weir"
    cat > "$confdir/weir/version.h" <<'EOF'
/* Written by tests/fuzz/run.sh: the parsers do not depend on the version. */
#pragma once
#define WEIR_VERSION_MAJOR 0
#define WEIR_VERSION_MINOR 0
#define WEIR_VERSION_PATCH 0
#define WEIR_VERSION_STRING "0.0.0"
#define WEIR_VERSION_NUMBER 0
EOF
fi

# The parsers and what they call: config.c reports through error.c; alloc.c
# is the allocation layer every runtime file may use. Nothing here starts a
# thread or needs hwloc or liburcu.
lib_sources="$root/runtime/config.c $root/runtime/error.c $root/runtime/alloc.c"
cflags="-std=c11 -D_GNU_SOURCE -DWEIR_BUILDING -g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -Wall -Wextra -Wpedantic -Wno-unused-parameter
        -I$root/include -I$root/runtime -I$confdir -I$here"

for name in places env; do
    # shellcheck disable=SC2086 # word splitting of the flag lists is intended
    if ! "$clang" $cflags -Werror "$here/fuzz_$name.c" $lib_sources -pthread \
            -o "$out/fuzz_$name" 2> "$out/build_$name.log"; then
        cat "$out/build_$name.log" >&2
        echo "run.sh: building fuzz_$name failed (work directory $out)" >&2
        exit 2
    fi
done

# libFuzzer reports leaks (LeakSanitizer) and UB (UBSan, halting) as crashes.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"

status=0
for name in places env; do
    corpus=$out/corpus_$name
    rm -rf "$corpus"
    mkdir -p "$corpus"
    cp "$here/corpus/$name"/* "$corpus/"
    seeds=$(find "$corpus" -type f | wc -l)
    dict=
    [ -f "$here/$name.dict" ] && dict="-dict=$here/$name.dict"
    case $name in
    places) maxlen=4096 ;;  # long lists: thousands of entries
    *) maxlen=1024 ;;       # six values; anything past 64 characters is quoted, cut
    esac
    log=$out/fuzz_$name.log
    rc=0
    # shellcheck disable=SC2086
    "$out/fuzz_$name" -max_total_time="$seconds" -timeout=5 -max_len=$maxlen \
        -print_final_stats=1 -artifact_prefix="$out/${name}-" $dict ${FUZZ_FLAGS:-} \
        "$corpus" > "$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -n 1 || true)
    cov=$(printf '%s\n' "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(find "$corpus" -type f | wc -l)
    crashes=0
    for a in "$out/${name}"-*; do
        [ -e "$a" ] || continue
        crashes=$((crashes + 1))
        echo "fuzz_$name: $(basename "$a") ($(wc -c < "$a") bytes):" >&2
        od -An -tx1 -v "$a" | head -n 32 >&2
    done
    verdict=ok
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        verdict="FAILED (exit $rc)"
        status=1
        grep -E 'ERROR|SUMMARY|fuzz_'"$name"':|Test unit written' "$log" | head -n 20 >&2 || true
    fi
    echo "fuzz_$name: ${execs:-?} execs (${seconds} s budget), cov ${cov:-?}, ft ${ft:-?}, corpus $seeds seeds -> $corp, crashes $crashes: $verdict"
done

if [ "$status" -ne 0 ]; then
    echo "run.sh: failures; logs, corpora and artifacts kept in $out" >&2
elif [ "$keep" -eq 0 ]; then
    rm -rf "$out"
fi
exit "$status"
