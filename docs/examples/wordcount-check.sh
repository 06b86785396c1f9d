#!/bin/sh
# The wordcount test: the example's output on INPUT must equal, byte for byte,
#
#   LC_ALL=C tr -s ' ' '\n' < INPUT | sort | uniq -c
#
# computed here, with uniq's leading blanks removed and without the empty
# word tr makes of a leading space or newline (tr -s squeezes every other
# run of blanks and newlines into one newline).
#
# usage: wordcount-check.sh WORDCOUNT INPUT SHARDS
#   INPUT --long: a file made here, in a temporary directory: a line of about
#   88 KB (above the 64 KiB the source reads at a time, so the line crosses
#   reads), CRLF, tabs inside words, runs of spaces, no final newline.
set -eu
exe=$1 input=$2 shards=$3
LC_ALL=C
export LC_ALL
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wordcount-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ "$input" = "--long" ]; then
    input=$tmp/long.txt
    awk 'BEGIN {
        printf "a short first line\r\n"
        for (i = 0; i < 15000; i++)
            printf "%sw%d", (i ? " " : ""), (i * 7919) % 9973
        printf "\r\n"
        for (i = 0; i < 3000; i++)
            printf "%sz%d\tt", (i ? "  " : ""), i % 13
        printf "\n\n   the last line has no newline"
    }' > "$input"
    longest=$(awk '{ if (length($0) > n) n = length($0) } END { print n }' "$input")
    if [ "$longest" -le 65536 ]; then
        echo "wordcount-check: the generated line is only $longest bytes" >&2
        exit 1
    fi
fi

tr -s ' ' '\n' < "$input" | sed '/^$/d' | sort | uniq -c | sed 's/^ *//' > "$tmp/expected"
if ! "$exe" "$input" "$shards" > "$tmp/got"; then
    echo "wordcount-check: $exe $input $shards failed" >&2
    exit 1
fi
diff -u "$tmp/expected" "$tmp/got"
