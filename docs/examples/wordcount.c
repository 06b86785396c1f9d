/*
 * wordcount — count the words of a text file with a weir pipeline, exactly as
 *
 *   LC_ALL=C tr -s ' ' '\n' < FILE | sort | uniq -c
 *
 * counts them (a word is a maximal run of bytes other than ' ' and the
 * newline: tabs, CRs and punctuation are part of words).
 *
 *   lines   weir_file_lines(): a blocking source (it reads a file, so it runs
 *           on a thread of its own and blocks when its stream is full). Each
 *           line is one variable-size record (WEIR_VARSIZE), whole, however
 *           long (up to the stream's byte capacity, 1 MiB by default): the
 *           bytes without the newline, a CR before it kept as data
 *   words   weir_tokenize(" "): every run of bytes other than ' ' in a line
 *           becomes a record of its own (a flat-map, variable-size in and out)
 *   count   weir_keyed(): SHARDS sinks, each with a hash table word -> count
 *           of its own; a word always goes to the same shard (by the hash of
 *           its bytes), so the shards count in parallel, without a lock, and
 *           a word's count lives in exactly one table
 *
 *   lines * words * keyed(count x SHARDS, by word)
 *
 * A sink reads each word in place, in the stream's byte ring (a weir_bytes:
 * pointer and length), valid only during the call: a new word is copied into
 * the shard's own arena.
 *
 * Usage: wordcount FILE [SHARDS]
 *   Prints every distinct word as "COUNT WORD", in byte order of the words:
 *   the output of the command above without uniq's leading blanks. The
 *   line, word and distinct-word totals go to stderr. SHARDS (default: the
 *   runtime's worker count) count words in parallel. Exit status 0, or 1
 *   when the pipeline fails (e.g. FILE cannot be opened, or a line is longer
 *   than 1 MiB), 2 for a usage error. WEIR_EXEC=threads|hybrid|pool picks
 *   the execution mode, WEIR_STATS=1 prints the term and stream tables.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir.h>

/* ---- count: a hash table of words ----------------------------------------- */

typedef struct entry {
    uint64_t hash;
    uint64_t count; /* 0 = empty slot */
    size_t off;     /* of the word's bytes in the arena */
    size_t len;
} entry;

typedef struct table {
    entry *slots;
    size_t cap, used;
    char *arena; /* the bytes of the table's words, one copy each */
    size_t alen, acap;
    uint64_t words;
} table;

static uint64_t hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h;
}

static entry *lookup(const table *t, entry *slots, size_t cap, uint64_t h, const void *w,
                     size_t len)
{
    size_t i = (size_t)h & (cap - 1);
    while (slots[i].count != 0 && (slots[i].hash != h || slots[i].len != len ||
                                   memcmp(t->arena + slots[i].off, w, len) != 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 256;
    entry *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        entry *e = &t->slots[i];
        if (e->count != 0)
            *lookup(t, slots, cap, e->hash, t->arena + e->off, e->len) = *e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* The sink of one shard: `in` is a weir_bytes, the word in the stream. */
static int count(void *state, const void *in)
{
    table *t = state;
    const weir_bytes *w = in;
    if (2 * (t->used + 1) > t->cap) {
        int err = grow(t); /* an error stops the pipeline; join returns it */
        if (err != 0)
            return err;
    }
    uint64_t h = hash(w->data, w->len);
    entry *e = lookup(t, t->slots, t->cap, h, w->data, w->len);
    if (e->count == 0) {
        /* a new word: copy its bytes, which are only valid during this call */
        if (t->acap - t->alen < w->len) {
            size_t acap = t->acap ? t->acap : 4096;
            while (acap - t->alen < w->len)
                acap *= 2;
            char *a = realloc(t->arena, acap);
            if (a == NULL)
                return -ENOMEM;
            t->arena = a;
            t->acap = acap;
        }
        memcpy(t->arena + t->alen, w->data, w->len);
        *e = (entry){h, 0, t->alen, w->len};
        t->alen += w->len;
        t->used++;
    }
    e->count++;
    t->words++;
    return 0;
}

/* weir_keyed's key: the word's hash (weir mixes it to pick the shard). */
static uint64_t word_key(void *arg, const void *rec)
{
    (void)arg;
    const weir_bytes *w = rec;
    return hash(w->data, w->len);
}

#define MAX_SHARDS 64

/* weir_keyed's factory: shard i counts into tables[i]. */
static weir_term *make_count(void *arg, unsigned i)
{
    table *tables = arg;
    return weir_sink("count", WEIR_VARSIZE, count, &tables[i]);
}

/* ---- output: every word, in byte order ------------------------------------ */

typedef struct word {
    const char *text;
    size_t len;
    uint64_t count;
} word;

/* Byte order, a prefix first: the order of `LC_ALL=C sort`. */
static int by_bytes(const void *a, const void *b)
{
    const word *x = a, *y = b;
    int c = memcmp(x->text, y->text, x->len < y->len ? x->len : y->len);
    if (c != 0)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: wordcount FILE [SHARDS]\n");
        return 2;
    }
    long shards = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
    if (shards < 0 || shards > MAX_SHARDS) {
        fprintf(stderr, "wordcount: SHARDS must be 0..%d\n", MAX_SHARDS);
        return 2;
    }

    weir_runtime *rt;
    int err = weir_runtime_create(NULL, &rt); /* defaults + WEIR_* environment */
    if (err < 0) {
        fprintf(stderr, "wordcount: %s\n", weir_last_error());
        return 1;
    }

    if (shards == 0)
        shards = weir_runtime_workers(rt);
    if (shards > MAX_SHARDS)
        shards = MAX_SHARDS;
    table tables[MAX_SHARDS] = {{0}};
    weir_term *t = WEIR_SEQ(weir_file_lines("lines", argv[1]), weir_tokenize("words", " "),
                            weir_keyed("by-word", (unsigned)shards, word_key, NULL, make_count,
                                       tables, WEIR_UNORDERED));
    weir_pipeline *p = NULL;
    weir_stream_stats lines = {0};
    err = weir_pipeline_create(rt, t, NULL, &p); /* NULL: default config + WEIR_EXEC */
    if (err < 0) {
        fprintf(stderr, "wordcount: %s (%s)\n", weir_terms_last_error(), weir_strerror(err));
        weir_term_destroy(t);
    } else {
        err = weir_pipeline_run(p); /* start + join */
        if (err < 0)
            fprintf(stderr, "wordcount: %s (%s)\n", weir_pipeline_error(p), weir_strerror(err));
        /* the lines: the records and bytes of the source's stream */
        for (unsigned i = 0; i < weir_pipeline_stream_count(p); i++)
            if (weir_pipeline_stream_stats(p, i, &lines) == 0 && strcmp(lines.name, "lines") == 0)
                break;
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(rt);

    /* Every word lives in one shard's table: their union is the count. */
    uint64_t words = 0;
    size_t distinct = 0;
    for (long j = 0; j < shards; j++) {
        words += tables[j].words;
        distinct += tables[j].used;
    }
    word *all = calloc(distinct ? distinct : 1, sizeof *all);
    if (all == NULL && err == 0) {
        fprintf(stderr, "wordcount: out of memory\n");
        err = -ENOMEM;
    }
    if (err == 0) {
        size_t k = 0;
        for (long j = 0; j < shards; j++)
            for (size_t i = 0; i < tables[j].cap; i++) {
                const entry *e = &tables[j].slots[i];
                if (e->count != 0)
                    all[k++] = (word){tables[j].arena + e->off, e->len, e->count};
            }
        qsort(all, k, sizeof *all, by_bytes);
        for (size_t i = 0; i < k; i++) {
            printf("%llu ", (unsigned long long)all[i].count);
            fwrite(all[i].text, 1, all[i].len, stdout);
            putchar('\n');
        }
        fprintf(stderr, "lines %llu (%llu bytes), words %llu, distinct %zu\n",
                (unsigned long long)lines.records, (unsigned long long)lines.bytes,
                (unsigned long long)words, distinct);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            perror("wordcount: stdout");
            err = -EIO;
        }
    }
    free(all);
    for (long j = 0; j < shards; j++) {
        free(tables[j].slots);
        free(tables[j].arena);
    }
    return err == 0 ? 0 : 1;
}
