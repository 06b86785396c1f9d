/*
 * wordcount — count the words of a text file with a weir pipeline.
 *
 *   lines   weir_file_lines_fixed(): a blocking source (it reads a file, so it runs
 *           on a thread of its own and blocks when its stream is full)
 *   split   a function term: one weir_line in, one word record out per word
 *           (a flat-map: 0..n outputs per input, through weir_emit_record)
 *   count   weir_keyed(): SHARDS sinks, each with a hash table word -> count
 *           of its own; a word always goes to the same shard (by the hash
 *           of its text), so the shards count in parallel, without a lock,
 *           and a word's count lives in exactly one table
 *
 *   lines * split * keyed(count x SHARDS, by word)
 *
 * The splitter and each shard keep private state (a line counter, a hash
 * table) without a lock: weir runs at most one callback of a term at a time.
 *
 * A word is a maximal run of ASCII letters and digits, with apostrophes kept
 * when a letter or digit follows ("don't"), lower-cased, cut to 27 bytes.
 *
 * Usage: wordcount FILE [TOP [SHARDS]]
 *   Prints the line, word and distinct-word totals, then the TOP (default 10)
 *   most frequent words, most frequent first, ties in alphabetical order.
 *   SHARDS (default: the runtime's worker count) count words in parallel.
 *   Exit status 0, or 1 when the pipeline fails (e.g. FILE cannot be opened),
 *   2 for a usage error. WEIR_EXEC=threads|hybrid|pool picks the execution
 *   mode, WEIR_STATS=1 prints the term and stream tables.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir.h>

/* The record `split` emits and `count` consumes: fixed size (32 bytes),
 * copied into the stream between them. */
typedef struct word {
    uint32_t len;
    char text[28]; /* NUL-terminated: at most 27 bytes of word */
} word;

/* ---- split: weir_line -> word, 0..n per line ------------------------------ */

typedef struct split_state {
    uint64_t lines;
    uint64_t truncated; /* lines longer than WEIR_LINE_TEXT */
} split_state;

static int is_word_char(unsigned char ch)
{
    return isalnum(ch) && ch < 128;
}

static int split(void *state, const void *in, weir_emit *e)
{
    split_state *st = state;
    const weir_line *line = in;
    st->lines++;
    st->truncated += line->truncated != 0;
    size_t n = line->len < WEIR_LINE_TEXT ? line->len : WEIR_LINE_TEXT;
    size_t i = 0;
    while (i < n) {
        while (i < n && !is_word_char((unsigned char)line->text[i]))
            i++;
        if (i == n)
            break;
        word w;
        memset(&w, 0, sizeof w);
        while (i < n) {
            unsigned char ch = (unsigned char)line->text[i];
            /* An apostrophe stays when a letter or digit follows it. */
            int keep = is_word_char(ch) ||
                       (ch == '\'' && i + 1 < n && is_word_char((unsigned char)line->text[i + 1]));
            if (!keep)
                break;
            if (w.len < sizeof w.text - 1)
                w.text[w.len++] = (char)tolower(ch);
            i++;
        }
        int err = weir_emit_record(e, &w);
        if (err != 0)
            return err;
    }
    return 0;
}

/* ---- count: a hash table of words ----------------------------------------- */

typedef struct entry {
    word w;
    uint64_t count; /* 0 = empty slot */
} entry;

typedef struct table {
    entry *slots;
    size_t cap, used;
    uint64_t words;
} table;

static uint64_t hash(const word *w)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    for (uint32_t i = 0; i < w->len; i++)
        h = (h ^ (unsigned char)w->text[i]) * UINT64_C(1099511628211);
    return h;
}

static entry *lookup(entry *slots, size_t cap, const word *w)
{
    size_t i = (size_t)hash(w) & (cap - 1);
    while (slots[i].count != 0 &&
           (slots[i].w.len != w->len || memcmp(slots[i].w.text, w->text, w->len) != 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 256;
    entry *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].count != 0)
            *lookup(slots, cap, &t->slots[i].w) = t->slots[i];
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static int count(void *state, const void *in)
{
    table *t = state;
    const word *w = in;
    if (2 * (t->used + 1) > t->cap) {
        int err = grow(t); /* an error stops the pipeline; join returns it */
        if (err != 0)
            return err;
    }
    entry *e = lookup(t->slots, t->cap, w);
    if (e->count == 0) {
        e->w = *w;
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
    return hash(rec);
}

#define MAX_SHARDS 64

/* weir_keyed's factory: shard i counts into tables[i]. */
static weir_term *make_count(void *arg, unsigned i)
{
    table *tables = arg;
    return weir_sink("count", sizeof(word), count, &tables[i]);
}

static int by_count(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(x->w.text, y->w.text);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: wordcount FILE [TOP [SHARDS]]\n");
        return 2;
    }
    long top = argc >= 3 ? strtol(argv[2], NULL, 10) : 10;
    long shards = argc == 4 ? strtol(argv[3], NULL, 10) : 0;
    if (top < 0 || shards < 0 || shards > MAX_SHARDS) {
        fprintf(stderr, "wordcount: TOP must be >= 0 and SHARDS 0..%d\n", MAX_SHARDS);
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
    split_state st = {0};
    table tables[MAX_SHARDS] = {{0}};
    weir_term *t = WEIR_SEQ(weir_file_lines_fixed("lines", argv[1]),
                            weir_function("split", sizeof(weir_line), sizeof(word), split, &st),
                            weir_keyed("by-word", (unsigned)shards, word_key, NULL, make_count,
                                       tables, WEIR_UNORDERED));
    weir_pipeline *p = NULL;
    err = weir_pipeline_create(rt, t, NULL, &p); /* NULL: default config + WEIR_EXEC */
    if (err < 0) {
        fprintf(stderr, "wordcount: %s (%s)\n", weir_terms_last_error(), weir_strerror(err));
        weir_term_destroy(t);
    } else {
        err = weir_pipeline_run(p); /* start + join */
        if (err < 0)
            fprintf(stderr, "wordcount: %s (%s)\n", weir_pipeline_error(p), weir_strerror(err));
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(rt);

    /* Every word lives in one shard's table: their union is the count. */
    table counts = {0};
    for (long j = 0; j < shards; j++) {
        counts.words += tables[j].words;
        counts.cap += tables[j].used;
    }
    counts.slots = calloc(counts.cap ? counts.cap : 1, sizeof *counts.slots);
    if (counts.slots == NULL && err == 0)
        err = -ENOMEM;
    if (err == 0) {
        /* Gather the tables, sort, print the totals and the top words. */
        size_t k = 0;
        for (long j = 0; j < shards; j++)
            for (size_t i = 0; i < tables[j].cap; i++)
                if (tables[j].slots[i].count != 0)
                    counts.slots[k++] = tables[j].slots[i];
        qsort(counts.slots, k, sizeof *counts.slots, by_count);
        printf("lines %llu, words %llu, distinct %zu\n", (unsigned long long)st.lines,
               (unsigned long long)counts.words, k);
        if (st.truncated)
            printf("(%llu lines longer than %d bytes were cut)\n", (unsigned long long)st.truncated,
                   WEIR_LINE_TEXT);
        for (size_t i = 0; i < k && i < (size_t)top; i++)
            printf("%7llu  %s\n", (unsigned long long)counts.slots[i].count,
                   counts.slots[i].w.text);
    }
    free(counts.slots);
    for (long j = 0; j < shards; j++)
        free(tables[j].slots);
    return err == 0 ? 0 : 1;
}
