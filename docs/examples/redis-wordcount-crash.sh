#!/bin/sh
# The crash test of redis_wordcount (docs/scaling.md): a private redis-server
# (a unix socket in a temporary directory, no persistence, killed at the end
# whatever happens), then ROUNDS rounds of:
#
#   - a generated text (a fixed seed per round: 12000 lines of 0..14 words
#     from a vocabulary of 400, runs of spaces, empty lines);
#   - a producer adding its lines to a fresh stream over about a second;
#   - three counters in one consumer group (redis_wordcount count), started
#     with the producer;
#   - one counter, picked at random, killed with SIGKILL at a random moment
#     (100..900 ms, a hash of the round) while the producer runs; the two
#     others claim its pending entries;
#   - the checker: the results, de-duplicated by source entry id, summed, must
#     equal the counts of the text exactly (and every line must have a
#     result). Duplicates are reported.
#
# usage: redis-wordcount-crash.sh REDIS_WORDCOUNT REDIS_SERVER [ROUNDS]
#   ROUNDS defaults to $WEIR_REDIS_CRASH_ROUNDS, else 5. Exit status 0 when
#   every round is exact, 1 otherwise; 77 (skipped) without redis-server.
set -eu
exe=$1 server=$2
rounds=${3:-${WEIR_REDIS_CRASH_ROUNDS:-5}}
if ! command -v "$server" >/dev/null 2>&1; then
    echo "redis-wordcount-crash: no redis-server: skipped"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-redis-crash.XXXXXX")
srv=
pids=
cleanup() {
    for p in $pids $srv; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

sock=$tmp/redis.sock
"$server" --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$tmp" --daemonize no --logfile "$tmp/redis.log" &
srv=$!
url=unix:$sock
"$exe" ping "$url" 10

# The counters use one worker each: three processes, the server and the
# producer share the machine.
WEIR_WORKERS=1
export WEIR_WORKERS

failed=0 kills=0 dups_total=0
r=1
while [ "$r" -le "$rounds" ]; do
    text=$tmp/text$r.txt
    awk -v seed="$r" 'BEGIN {
        srand(seed)
        for (i = 0; i < 12000; i++) {
            n = int(rand() * 15); line = ""
            for (j = 0; j < n; j++)
                line = line (j ? (rand() < 0.1 ? "  " : " ") : "") "w" int(rand() * rand() * 400)
            print line
        }
    }' > "$text"
    # the moment of the kill (ms into the run) and the victim (1..3)
    # (a multiplicative hash of the round: awk's first rand() after srand()
    # barely moves with the seed)
    kill_ms=$((100 + (r * 2654435761 % 4294967296) % 800))
    victim=$((1 + (r * 40503 % 65536) / 7 % 3))

    pids=
    for c in 1 2 3; do
        "$exe" count "$url" "lines$r" g "counter$c" "results$r" 2> "$tmp/count$r.$c.log" &
        pids="$pids $!"
        eval "pid$c=\$!"
    done
    # 12000 lines in chunks of 200, 15 ms apart: about a second
    "$exe" produce "$url" "lines$r" "$text" 200 15 2> "$tmp/produce$r.log" &
    prod=$!
    pids="$pids $prod"
    sleep "$(awk -v ms="$kill_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
    eval "vp=\$pid$victim"
    if kill -9 "$vp" 2>/dev/null; then
        kills=$((kills + 1))
        killed="counter$victim killed at ${kill_ms} ms"
    else
        killed="counter$victim had ended before ${kill_ms} ms: no kill"
    fi
    wait "$prod" || { echo "round $r: the producer failed"; cat "$tmp/produce$r.log"; exit 1; }
    ok=1
    for c in 1 2 3; do
        eval "p=\$pid$c"
        if [ "$c" -eq "$victim" ]; then
            wait "$p" 2>/dev/null || true
        elif ! wait "$p"; then
            echo "round $r: counter$c failed:"
            cat "$tmp/count$r.$c.log"
            ok=0
        fi
    done
    pids=
    if out=$("$exe" check "$url" "results$r" "$text") && [ $ok -eq 1 ]; then
        echo "round $r: $killed; $out"
    else
        echo "round $r: $killed; $out"
        for c in 1 2 3; do sed "s/^/  counter$c: /" "$tmp/count$r.$c.log"; done
        failed=$((failed + 1))
    fi
    dups=$(printf '%s\n' "$out" | sed -n 's/.*duplicates \([0-9]*\).*/\1/p')
    dups_total=$((dups_total + ${dups:-0}))
    r=$((r + 1))
done
echo "redis-wordcount-crash: $rounds rounds, $kills kills, $dups_total duplicates dropped," \
    "$failed rounds with a loss or a mismatch"
test "$failed" -eq 0
