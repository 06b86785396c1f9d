/*
 * weir-bench lines: lines of a text file read, split into words (on ' '),
 * the words counted in a hash table; the variable-size records of the term
 * layer (WEIR_VARSIZE) against a plain loop.
 *
 *   plain          one thread: read(2) into a 64 KiB buffer (the size
 *                  weir_file_lines reads), memchr for each line, split each
 *                  line on ' ', count each word
 *   weir           weir_file_lines -> weir_tokenize(" ") -> a counting sink,
 *                  on a runtime of 1 worker (the source reads on a thread of
 *                  its own, as every blocking source does)
 *   weir-parallel  tokenize and count spread over the workers, in one of two
 *                  shapes (--shape):
 *                  replicas  weir_file_lines -> weir_parallel(weir_tokenize(" ")
 *                            * count): count is a function term counting into
 *                            a table per thread, merged by its finish callback
 *                  keyed     weir_file_lines -> weir_parallel(weir_tokenize(" "))
 *                            -> weir_keyed: --shards counting sinks, a word
 *                            always in the same shard, totals added up in the
 *                            shards' finish callbacks
 *
 * Every variant counts with the same table code (lc_add), and each run is
 * checked against plain's: total words, distinct words and a checksum over
 * the (word, count) pairs, and for the weir variants the lines and bytes the
 * source delivered (its stream's statistics) against the file's: a
 * difference is exit status 1.
 *
 * --generate MB writes a file of random words to $TMPDIR (removed at exit):
 * line lengths exponential with the --line-len mean, rare lines of exactly
 * the maximum (the second line always), a vocabulary of 2^17 random words
 * picked with a Zipf-like skew (log-uniform ranks, "the" about 6 %), an
 * occasional double space and leading space.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"

#include "bench.h"

#define LC_READ_BUF   (64 * 1024)
#define LC_VOCAB_BITS 17
#define LC_MAX_SHARDS 256

enum { LV_PLAIN, LV_WEIR, LV_PARALLEL, LV_N };
enum { LC_SHAPE_REPLICAS, LC_SHAPE_KEYED };
static const char *const lv_names[LV_N] = {"plain", "weir", "weir-parallel"};

typedef struct lc_cfg {
    const char *file;
    uint64_t generate_mb; /* 0: --file */
    uint64_t mean, max;   /* --line-len */
    uint64_t seed;
    unsigned shards;        /* 0: one per worker */
    int shape;              /* of weir-parallel: LC_SHAPE_* */
    unsigned batch;         /* 0: the pipeline default */
    uint64_t byte_capacity; /* 0: see bench_lines() */
    uint64_t timeout_ns;
} lc_cfg;

/* What the file holds, from a read before any variant runs. */
typedef struct lc_file {
    uint64_t bytes;      /* file size */
    uint64_t lines;      /* newlines, + 1 for a last line without one */
    uint64_t line_bytes; /* bytes of the lines: size minus the newlines */
    uint64_t longest;    /* the longest line, newline excluded */
    uint64_t over_240;   /* lines longer than the old weir_line text */
} lc_file;

/* ---- the word table: one code for every variant --------------------------- */

typedef struct lc_entry {
    uint64_t hash;
    uint64_t count; /* 0: an empty slot */
    uint64_t off;   /* of the word's bytes in the arena */
    uint64_t len;
} lc_entry;

typedef struct lc_table {
    lc_entry *slots;
    size_t cap, used; /* cap a power of two, used <= cap / 2 */
    char *arena;      /* the words' bytes, one copy each */
    size_t alen, acap;
    uint64_t words;
    int err; /* -ENOMEM once an allocation failed */
} lc_table;

/* The result every variant must agree on. */
typedef struct lc_summary {
    uint64_t words, distinct, checksum;
} lc_summary;

/* A word's hash, 8 bytes at a time (the keyed variant and the checksum use it
 * too). */
static inline uint64_t lc_hash(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) * (n + 1);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * UINT64_C(0x94d049bb133111eb);
    return h ^ (h >> 29);
}

static int lc_table_init(lc_table *t)
{
    memset(t, 0, sizeof *t);
    t->cap = 4096;
    t->acap = 64 * 1024;
    t->slots = calloc(t->cap, sizeof *t->slots);
    t->arena = malloc(t->acap);
    return t->slots && t->arena ? 0 : -ENOMEM;
}

static void lc_table_free(lc_table *t)
{
    free(t->slots);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

static int lc_grow(lc_table *t)
{
    size_t cap = 2 * t->cap;
    lc_entry *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].count == 0)
            continue;
        size_t j = (size_t)t->slots[i].hash & (cap - 1);
        while (slots[j].count != 0)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* Count `k` occurrences of the word `w` of `len` bytes. @return 0 or -ENOMEM. */
static inline int lc_add_n(lc_table *t, const void *w, size_t len, uint64_t k)
{
    uint64_t h = lc_hash(w, len);
    size_t mask = t->cap - 1, i = (size_t)h & mask;
    for (;;) {
        lc_entry *e = &t->slots[i];
        if (e->count == 0)
            break;
        if (e->hash == h && e->len == len && memcmp(t->arena + e->off, w, len) == 0) {
            e->count += k;
            t->words += k;
            return 0;
        }
        i = (i + 1) & mask;
    }
    /* a new word: its bytes into the arena, then the slot */
    if (t->acap - t->alen < len) {
        size_t acap = t->acap;
        while (acap - t->alen < len)
            acap *= 2;
        char *a = realloc(t->arena, acap);
        if (!a)
            return t->err = -ENOMEM;
        t->arena = a;
        t->acap = acap;
    }
    memcpy(t->arena + t->alen, w, len);
    t->slots[i] = (lc_entry){h, k, t->alen, len};
    t->alen += len;
    t->words += k;
    if (2 * ++t->used > t->cap && lc_grow(t) != 0)
        return t->err = -ENOMEM;
    return 0;
}

static inline int lc_add(lc_table *t, const void *w, size_t len)
{
    return lc_add_n(t, w, len, 1);
}

static uint64_t lc_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Totals and an order-independent checksum of the (word, count) pairs. */
static lc_summary lc_summarize(const lc_table *t)
{
    lc_summary s = {t->words, t->used, 0};
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].count != 0)
            s.checksum +=
                lc_mix(t->slots[i].hash + t->slots[i].count * UINT64_C(0x9e3779b97f4a7c15));
    return s;
}

/* ---- the generated file --------------------------------------------------- */

static char lc_tmp_path[PATH_MAX];

/* Async-signal-safe: also the signal handler's. */
static void lc_remove_tmp(void)
{
    if (lc_tmp_path[0] != '\0')
        unlink(lc_tmp_path);
    lc_tmp_path[0] = '\0';
}

static void lc_on_signal(int sig)
{
    if (lc_tmp_path[0] != '\0')
        unlink(lc_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint64_t lc_rand(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1]. */
static double lc_unit(uint64_t *s)
{
    return (double)((lc_rand(s) >> 11) + 1) / 9007199254740992.0;
}

typedef struct lc_writer {
    int fd;
    char *buf;
    size_t len, cap;
    uint64_t total;
    int err;
} lc_writer;

static void lc_flush(lc_writer *w)
{
    size_t done = 0;
    while (done < w->len && w->err == 0) {
        ssize_t k = write(w->fd, w->buf + done, w->len - done);
        if (k < 0 && errno != EINTR)
            w->err = -errno;
        else if (k > 0)
            done += (size_t)k;
    }
    w->len = 0;
}

static void lc_put(lc_writer *w, const char *p, size_t n)
{
    w->total += n;
    while (n > 0) {
        size_t k = w->cap - w->len < n ? w->cap - w->len : n;
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
        if (w->len == w->cap)
            lc_flush(w);
    }
}

/* Write about `bytes` bytes of lines of random words to a new file in
 * $TMPDIR (its path in lc_tmp_path, removed at exit). @return 0 or -errno. */
static int lc_generate(const lc_cfg *cfg, uint64_t bytes)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/weir-bench-lines-XXXXXX", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    memcpy(lc_tmp_path, path, sizeof path);
    atexit(lc_remove_tmp);
    signal(SIGINT, lc_on_signal);
    signal(SIGTERM, lc_on_signal);
    signal(SIGHUP, lc_on_signal);

    /* The vocabulary: 2^17 words of 2..8 letters, a few up to 17. */
    const size_t nv = (size_t)1 << LC_VOCAB_BITS;
    uint32_t *voff = malloc(nv * sizeof *voff);
    uint8_t *vlen = malloc(nv);
    char *vtext = malloc(nv * 18);
    lc_writer w = {fd, malloc(1 << 20), 0, 1 << 20, 0, 0};
    char *line = malloc(cfg->max + 1);
    if (!voff || !vlen || !vtext || !w.buf || !line) {
        free(voff), free(vlen), free(vtext), free(w.buf), free(line);
        close(fd);
        return -ENOMEM;
    }
    uint64_t rs = cfg->seed;
    size_t vt = 0;
    for (size_t i = 0; i < nv; i++) {
        uint64_t r = lc_rand(&rs);
        size_t len = 2 + r % 3 + (r >> 4) % 3 + (r >> 8) % 3;
        if ((r >> 12) % 16 == 0)
            len += (r >> 16) % 10;
        voff[i] = (uint32_t)vt;
        vlen[i] = (uint8_t)len;
        for (size_t k = 0; k < len; k++)
            vtext[vt++] = (char)('a' + lc_rand(&rs) % 26);
    }
    /* Lengths: a line of exactly `max` with probability p, else exponential
     * with the mean that keeps the overall mean at cfg->mean. */
    double p = 1e-4, lnv = log((double)nv + 1);
    if (p * (double)cfg->max >= 0.5 * (double)cfg->mean)
        p = 0.5 * (double)cfg->mean / (double)cfg->max;
    double m = ((double)cfg->mean - p * (double)cfg->max) / (1 - p);
    for (uint64_t n = 0; w.total < bytes && w.err == 0; n++) {
        size_t L;
        if (n == 1 || lc_unit(&rs) < p) {
            L = (size_t)cfg->max;
        } else {
            double x = floor(-m * log(lc_unit(&rs)));
            L = x > (double)cfg->max ? (size_t)cfg->max : (size_t)x;
        }
        size_t len = 0;
        if (L > 0 && lc_rand(&rs) % 128 == 0)
            line[len++] = ' ';
        for (;;) {
            size_t v = (size_t)exp(lc_unit(&rs) * lnv) - 1;
            if (v >= nv)
                v = nv - 1;
            size_t sep = len == 0 ? 0 : lc_rand(&rs) % 64 == 0 ? 2 : 1;
            if (len + sep + vlen[v] > L) {
                /* fill the line to exactly L with the start of the word */
                if (len + sep < L) {
                    memset(line + len, ' ', sep);
                    memcpy(line + len + sep, vtext + voff[v], L - len - sep);
                } else {
                    memset(line + len, ' ', L - len);
                }
                len = L;
                break;
            }
            memset(line + len, ' ', sep);
            memcpy(line + len + sep, vtext + voff[v], vlen[v]);
            len += sep + vlen[v];
        }
        line[len++] = '\n';
        lc_put(&w, line, len);
    }
    lc_flush(&w);
    int err = w.err;
    if (close(fd) != 0 && err == 0)
        err = -errno;
    free(voff), free(vlen), free(vtext), free(w.buf), free(line);
    return err;
}

/* Read the whole file (into the page cache) and describe its lines. */
static int lc_scan(const char *path, lc_file *f)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *buf = malloc(1 << 20);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    uint64_t cur = 0; /* bytes of the current line so far */
    int err = 0;
    for (;;) {
        ssize_t k = read(fd, buf, 1 << 20);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            err = -errno;
        if (k <= 0)
            break;
        f->bytes += (uint64_t)k;
        const char *p = buf, *end = buf + k;
        for (;;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) {
                cur += (uint64_t)(end - p);
                break;
            }
            cur += (uint64_t)(nl - p);
            f->lines++;
            f->line_bytes += cur;
            f->longest = cur > f->longest ? cur : f->longest;
            f->over_240 += cur > WEIR_LINE_TEXT;
            cur = 0;
            p = nl + 1;
        }
    }
    if (cur > 0) { /* a last line without a newline */
        f->lines++;
        f->line_bytes += cur;
        f->longest = cur > f->longest ? cur : f->longest;
        f->over_240 += cur > WEIR_LINE_TEXT;
    }
    free(buf);
    close(fd);
    return err;
}

/* ---- plain ---------------------------------------------------------------- */

static int lc_plain_line(lc_table *t, const char *line, size_t n)
{
    const char *p = line, *end = line + n;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *w = p;
        while (p < end && *p != ' ')
            p++;
        if (p > w && lc_add(t, w, (size_t)(p - w)) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* read(2) 64 KiB at a time; a line that crosses the end of the buffer moves
 * to its start (the buffer doubles for a line longer than itself). */
static int lc_plain(const char *path, lc_table *t, uint64_t *lines, uint64_t *bytes)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = LC_READ_BUF, have = 0;
    char *buf = malloc(cap);
    int err = buf ? 0 : -ENOMEM;
    *lines = *bytes = 0;
    while (err == 0) {
        if (have == cap) {
            char *nb = realloc(buf, 2 * cap);
            if (!nb) {
                err = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - have < LC_READ_BUF ? cap - have : LC_READ_BUF;
        ssize_t k = read(fd, buf + have, want);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            err = -errno;
            break;
        }
        if (k == 0) {
            if (have > 0) { /* a last line without a newline */
                err = lc_plain_line(t, buf, have);
                ++*lines;
                *bytes += have;
            }
            break;
        }
        const char *p = buf, *end = buf + have + (size_t)k;
        for (;;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                break;
            if ((err = lc_plain_line(t, p, (size_t)(nl - p))) != 0)
                break;
            ++*lines;
            *bytes += (uint64_t)(nl - p);
            p = nl + 1;
        }
        have = (size_t)(end - p);
        memmove(buf, p, have);
    }
    free(buf);
    close(fd);
    return err;
}

/* ---- weir, weir-parallel -------------------------------------------------- */

static int lc_sink(void *state, const void *in)
{
    const weir_bytes *b = in;
    return lc_add(state, b->data, b->len);
}

/*
 * weir-parallel, shape "replicas": weir_parallel(tokenize * count), where
 * count is a function term that emits nothing and counts into a table of the
 * thread it runs on. Replicas run concurrently, so their state must be safe
 * to share: a table per thread is (one callback at a time on a thread), and
 * no word leaves the replica's fused chain. The count term's finish callback
 * (once, after the last batch) merges the threads' tables.
 */
typedef struct lc_par {
    pthread_mutex_t mu; /* guards the list of tables */
    uint64_t run;       /* a thread's table is for one run */
    lc_table **tables;  /* one per thread that counted */
    unsigned n, cap;
    lc_table merged; /* set up by the finish callback */
} lc_par;

static uint64_t lc_runs; /* numbers the runs (main thread only) */
static _Thread_local uint64_t lc_thread_run;
static _Thread_local lc_table *lc_thread_table;

static int lc_par_table(lc_par *x)
{
    lc_table *t = malloc(sizeof *t);
    if (!t || lc_table_init(t) != 0) {
        if (t)
            lc_table_free(t);
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_lock(&x->mu);
    if (x->n == x->cap) {
        unsigned cap = x->cap ? 2 * x->cap : 8;
        lc_table **nt = realloc(x->tables, cap * sizeof *nt);
        if (!nt) {
            pthread_mutex_unlock(&x->mu);
            lc_table_free(t);
            free(t);
            return -ENOMEM;
        }
        x->tables = nt;
        x->cap = cap;
    }
    x->tables[x->n++] = t;
    pthread_mutex_unlock(&x->mu);
    lc_thread_table = t;
    lc_thread_run = x->run;
    return 0;
}

static int lc_par_count(void *state, const void *in, weir_emit *e)
{
    (void)e;
    lc_par *x = state;
    if (lc_thread_run != x->run) {
        int err = lc_par_table(x); /* this thread's first word of the run */
        if (err != 0)
            return err;
    }
    const weir_bytes *b = in;
    return lc_add(lc_thread_table, b->data, b->len);
}

static int lc_par_finish(void *state, weir_emit *e)
{
    (void)e;
    lc_par *x = state;
    int err = lc_table_init(&x->merged);
    pthread_mutex_lock(&x->mu);
    for (unsigned k = 0; k < x->n && err == 0; k++) {
        const lc_table *t = x->tables[k];
        for (size_t i = 0; i < t->cap && err == 0; i++)
            if (t->slots[i].count != 0)
                err = lc_add_n(&x->merged, t->arena + t->slots[i].off, t->slots[i].len,
                               t->slots[i].count);
    }
    pthread_mutex_unlock(&x->mu);
    return err;
}

static void lc_par_free(lc_par *x)
{
    for (unsigned k = 0; k < x->n; k++) {
        lc_table_free(x->tables[k]);
        free(x->tables[k]);
    }
    free(x->tables);
    lc_table_free(&x->merged);
    pthread_mutex_destroy(&x->mu);
}

/*
 * weir-parallel, shape "keyed": weir_parallel(tokenize) -> weir_keyed, a
 * counting sink per shard with its own table, a word always in the same
 * shard; each shard's finish callback adds its totals to the run's (the
 * shards' word sets are disjoint, so the sums are exact).
 */
typedef struct lc_acc {
    pthread_mutex_t mu; /* the shards may finish on different threads */
    lc_summary sum;
} lc_acc;

typedef struct lc_shard {
    lc_table table;
    lc_acc *acc;
} lc_shard;

static int lc_shard_sink(void *state, const void *in)
{
    lc_shard *s = state;
    const weir_bytes *b = in;
    return lc_add(&s->table, b->data, b->len);
}

static int lc_shard_finish(void *state, weir_emit *e)
{
    (void)e;
    lc_shard *s = state;
    lc_summary x = lc_summarize(&s->table);
    pthread_mutex_lock(&s->acc->mu);
    s->acc->sum.words += x.words;
    s->acc->sum.distinct += x.distinct;
    s->acc->sum.checksum += x.checksum;
    pthread_mutex_unlock(&s->acc->mu);
    return 0;
}

static weir_term *lc_make_shard(void *arg, unsigned i)
{
    lc_shard *shards = arg;
    return weir_term_on_finish(weir_sink("count", WEIR_VARSIZE, lc_shard_sink, &shards[i]),
                               lc_shard_finish);
}

/* The shard key: the word's first 8 bytes and its length (weir mixes it), so
 * a word always goes to the same shard, without hashing it twice. */
static uint64_t lc_key(void *arg, const void *rec)
{
    (void)arg;
    const weir_bytes *b = rec;
    uint64_t k = 0;
    memcpy(&k, b->data, b->len < 8 ? b->len : 8);
    return k ^ ((uint64_t)b->len << 56);
}

typedef struct lc_ctx {
    const bench_opts *o;
    const lc_cfg *cfg;
    const char *path;
    const lc_file *file;
    uint64_t byte_capacity;
    weir_runtime *rt;
    unsigned shards;
    lc_shard *shard;
} lc_ctx;

/* Wait at most the --timeout; a pipeline that does not finish in time is
 * cancelled, one that does not finish 10 s after that ends the process. */
static int lc_join(weir_pipeline *p, const char *what, uint64_t timeout_ns)
{
    int rc = weir_pipeline_join_for(p, timeout_ns);
    if (rc != -ETIMEDOUT)
        return rc;
    fprintf(stderr, "weir-bench: %s: not finished after %.1f s: cancelling\n", what,
            (double)timeout_ns / 1e9);
    weir_pipeline_print_stats(p, stderr);
    weir_pipeline_cancel(p);
    if (weir_pipeline_join_for(p, UINT64_C(10000000000)) == -ETIMEDOUT) {
        fprintf(stderr, "weir-bench: %s: still not finished 10 s after cancel\n", what);
        fflush(NULL);
        lc_remove_tmp();
        _Exit(BENCH_EXIT_FAIL);
    }
    return -ETIMEDOUT;
}

/* The counting part of variant v's pipeline (after weir_file_lines). */
static weir_term *lc_counter(lc_ctx *c, int v, lc_table *table, lc_par *par, lc_acc *acc)
{
    if (v == LV_WEIR)
        return WEIR_SEQ(weir_tokenize("words", " "),
                        weir_sink("count", WEIR_VARSIZE, lc_sink, table));
    if (c->cfg->shape == LC_SHAPE_REPLICAS) {
        weir_term *count = weir_function("count", WEIR_VARSIZE, WEIR_VARSIZE, lc_par_count, par);
        return weir_parallel(
            WEIR_SEQ(weir_tokenize("words", " "), weir_term_on_finish(count, lc_par_finish)), 0);
    }
    for (unsigned i = 0; i < c->shards; i++)
        c->shard[i].acc = acc;
    return WEIR_SEQ(
        weir_parallel(weir_tokenize("words", " "), 0),
        weir_keyed("by-word", c->shards, lc_key, NULL, lc_make_shard, c->shard, WEIR_UNORDERED));
}

/* One weir run: build, create, run (timed: *ns); the lines and bytes the
 * source delivered from its stream's statistics; the result in *sum. */
static int lc_weir(lc_ctx *c, int v, uint64_t *ns, lc_summary *sum, uint64_t *lines,
                   uint64_t *bytes)
{
    lc_table table;
    lc_par par = {PTHREAD_MUTEX_INITIALIZER, ++lc_runs, NULL, 0, 0, {0}};
    lc_acc acc = {PTHREAD_MUTEX_INITIALIZER, {0, 0, 0}};
    bool keyed = v == LV_PARALLEL && c->cfg->shape == LC_SHAPE_KEYED;
    int err = 0;
    if (v == LV_WEIR)
        err = lc_table_init(&table);
    for (unsigned i = 0; keyed && i < c->shards && err == 0; i++)
        err = lc_table_init(&c->shard[i].table);
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.byte_capacity = c->byte_capacity;
    if (c->cfg->batch)
        pc.batch = c->cfg->batch;
    weir_pipeline *p = NULL;
    uint64_t t0 = bench_now_ns();
    if (err == 0) {
        weir_term *t =
            weir_seq2(weir_file_lines("lines", c->path), lc_counter(c, v, &table, &par, &acc));
        err = weir_pipeline_create(c->rt, t, &pc, &p);
        if (err < 0) {
            fprintf(stderr, "weir-bench: lines/%s: %s: %s\n", lv_names[v], weir_strerror(err),
                    weir_last_error());
            weir_term_destroy(t);
            p = NULL;
        } else {
            err = weir_pipeline_start(p);
            if (err == 0 || err == -EAGAIN)
                err = lc_join(p, lv_names[v], c->cfg->timeout_ns);
            if (err < 0)
                fprintf(stderr, "weir-bench: lines/%s: %s: %s\n", lv_names[v], weir_strerror(err),
                        weir_pipeline_error(p));
        }
    }
    *ns = bench_now_ns() - t0;
    *lines = *bytes = 0;
    for (unsigned i = 0; p != NULL && i < weir_pipeline_stream_count(p); i++) {
        weir_stream_stats s;
        if (weir_pipeline_stream_stats(p, i, &s) == 0 && strcmp(s.name, "lines") == 0) {
            *lines = s.records;
            *bytes = s.bytes;
        }
    }
    weir_pipeline_destroy(p);
    if (v == LV_WEIR) {
        if (err == 0 && table.err)
            err = table.err;
        *sum = lc_summarize(&table);
        lc_table_free(&table);
    } else if (keyed) {
        for (unsigned i = 0; i < c->shards; i++) {
            if (err == 0 && c->shard[i].table.err)
                err = c->shard[i].table.err;
            lc_table_free(&c->shard[i].table);
        }
        *sum = acc.sum;
    } else {
        for (unsigned k = 0; k < par.n && err == 0; k++)
            err = par.tables[k]->err;
        if (err == 0)
            err = par.merged.err;
        *sum = lc_summarize(&par.merged);
        lc_par_free(&par);
    }
    pthread_mutex_destroy(&acc.mu);
    return err;
}

static int lc_once(lc_ctx *c, int v, uint64_t *ns, lc_summary *sum, uint64_t *lines,
                   uint64_t *bytes)
{
    if (v != LV_PLAIN)
        return lc_weir(c, v, ns, sum, lines, bytes);
    lc_table t;
    int err = lc_table_init(&t);
    uint64_t t0 = bench_now_ns();
    if (err == 0)
        err = lc_plain(c->path, &t, lines, bytes);
    *ns = bench_now_ns() - t0;
    if (err == 0)
        err = t.err;
    if (err < 0)
        fprintf(stderr, "weir-bench: lines/plain: %s\n", weir_strerror(err));
    *sum = lc_summarize(&t);
    lc_table_free(&t);
    return err;
}

static weir_runtime *lc_runtime(const bench_opts *o, unsigned workers)
{
    bench_opts one = *o;
    one.workers = workers;
    weir_runtime *rt = NULL;
    return bench_runtime_create(&one, &rt) < 0 ? NULL : rt;
}

/* ---- options and the run -------------------------------------------------- */

static void lc_help(void)
{
    printf("lines: the lines of a text file read, split into words on ' ', the words\n"
           "counted in a hash table (the same table code in every variant).\n"
           "\n"
           "Options:\n"
           "  --file F          the text file to read\n"
           "  --generate MB     instead, write MB x 10^6 bytes of lines of random words to\n"
           "                    a file in $TMPDIR (removed at exit); --n MB is the same\n"
           "  --line-len M,X    generated line lengths: mean M, maximum X bytes (default\n"
           "                    120,65536): exponential, with rare lines of exactly X (the\n"
           "                    second line always)\n"
           "  --seed S          seed of the generated file (default 1)\n"
           "  --shape S         weir-parallel's shape: replicas (default) or keyed\n"
           "  --shards K        counting shards of weir-parallel --shape keyed (default:\n"
           "                    its workers)\n"
           "  --batch B         weir_pipeline_config.batch of the weir variants (default:\n"
           "                    the pipeline default, 256)\n"
           "  --byte-capacity N weir_pipeline_config.byte_capacity (default: 1 MiB, or\n"
           "                    twice the longest line rounded up to a power of two)\n"
           "  --timeout S       seconds before an unfinished weir run is cancelled and\n"
           "                    reported as a failure (default 300)\n"
           "\n"
           "Variants (--variants; default all):\n"
           "  plain          one thread: read(2) 64 KiB at a time, memchr for the lines,\n"
           "                 split on ' ', count\n"
           "  weir           weir_file_lines -> weir_tokenize(\" \") -> a counting sink, on\n"
           "                 a runtime of 1 worker (the file is read on the source's own\n"
           "                 thread, as for every blocking source)\n"
           "  weir-parallel  tokenize and count over --workers workers, --shape:\n"
           "                 replicas: weir_file_lines -> weir_parallel(weir_tokenize(\" \")\n"
           "                   * count), count a function term that counts into a table\n"
           "                   of the thread it runs on (safe to share: one callback at a\n"
           "                   time on a thread; no word leaves the replica), the tables\n"
           "                   merged by its finish callback\n"
           "                 keyed: weir_file_lines -> weir_parallel(weir_tokenize(\" \"))\n"
           "                   -> weir_keyed by word: --shards counting sinks, each with\n"
           "                   its own table, totals added up in their finish callbacks\n"
           "\n"
           "The file is read once before any variant (page cache warm) and again before\n"
           "each variant. Each run is timed from the open (weir: from building the\n"
           "pipeline) to the last word counted (weir: join); the tables' set-up and\n"
           "summary are outside (replicas: the threads' tables are made and merged\n"
           "inside). Rows: n = bytes = the file size; extras lines, mb_per_s\n"
           "(10^6 bytes / s), lines_per_s, truncated = the file's line bytes (size minus\n"
           "newlines) minus the bytes the source delivered (must be 0), words, distinct,\n"
           "cpu_pct; result = the checksum over the (word, count) pairs; vs_serial =\n"
           "median / plain's median. Every run's words, distinct words, checksum, lines\n"
           "and bytes must equal plain's and the file's: otherwise exit status 1.\n");
}

static int lc_parse(const bench_opts *o, int argc, char **argv, lc_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mean = 120;
    cfg->max = 65536;
    cfg->seed = 1;
    cfg->timeout_ns = UINT64_C(300000000000);
    if (o->has_n)
        cfg->generate_mb = o->n;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        uint64_t u;
        int m;
        if ((m = bench_opt_value(argc, argv, &i, "--file", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            cfg->file = val;
        } else if ((m = bench_opt_value(argc, argv, &i, "--generate", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_u64(val, &cfg->generate_mb) || cfg->generate_mb == 0 ||
                cfg->generate_mb > 100000)
                return bench_usage_error("--generate '%s': MB in 1..100000", val);
        } else if ((m = bench_opt_value(argc, argv, &i, "--line-len", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            char *comma = strchr(val, ',');
            char mean[32];
            if (!comma || (size_t)(comma - val) >= sizeof mean)
                return bench_usage_error("--line-len '%s': MEAN,MAX", val);
            memcpy(mean, val, (size_t)(comma - val));
            mean[comma - val] = '\0';
            if (!bench_parse_u64(mean, &cfg->mean) || !bench_parse_u64(comma + 1, &cfg->max) ||
                cfg->mean < 1 || cfg->mean > cfg->max || cfg->max > (UINT64_C(1) << 28))
                return bench_usage_error("--line-len '%s': MEAN,MAX with 1 <= MEAN <= MAX <= 2^28",
                                         val);
        } else if ((m = bench_opt_value(argc, argv, &i, "--seed", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &cfg->seed))
                return m < 0 ? BENCH_EXIT_USAGE
                             : bench_usage_error("--seed '%s': not an integer", val);
        } else if ((m = bench_opt_value(argc, argv, &i, "--shards", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u < 1 || u > LC_MAX_SHARDS)
                return m < 0 ? BENCH_EXIT_USAGE
                             : bench_usage_error("--shards '%s': 1..%d", val, LC_MAX_SHARDS);
            cfg->shards = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--shape", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (strcmp(val, "replicas") == 0)
                cfg->shape = LC_SHAPE_REPLICAS;
            else if (strcmp(val, "keyed") == 0)
                cfg->shape = LC_SHAPE_KEYED;
            else
                return bench_usage_error("--shape '%s': replicas or keyed", val);
        } else if ((m = bench_opt_value(argc, argv, &i, "--batch", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u < 1 || u > (1u << 20))
                return m < 0 ? BENCH_EXIT_USAGE
                             : bench_usage_error("--batch '%s': 1..%u", val, 1u << 20);
            cfg->batch = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--byte-capacity", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &cfg->byte_capacity) || cfg->byte_capacity < 64 ||
                cfg->byte_capacity > WEIR_MAX_BYTE_CAPACITY)
                return m < 0 ? BENCH_EXIT_USAGE
                             : bench_usage_error("--byte-capacity '%s': 64..2^30 bytes", val);
        } else if ((m = bench_opt_value(argc, argv, &i, "--timeout", &val)) != 0) {
            double sec;
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_double(val, &sec) || sec <= 0 || sec > 1e6)
                return bench_usage_error("--timeout '%s': not a positive number of seconds", val);
            cfg->timeout_ns = (uint64_t)(sec * 1e9);
        } else {
            return bench_usage_error("lines: unknown option or argument '%s'", argv[i]);
        }
    }
    if ((cfg->file != NULL) == (cfg->generate_mb != 0))
        return bench_usage_error("lines: give one of --file F and --generate MB");
    return 0;
}

/* Warm-up and timed runs of variant v; prints its row and sets *median.
 * `*ref` is plain's result, set by the first run when `*have_ref` is false. */
static int lc_variant(lc_ctx *c, int v, unsigned workers, lc_summary *ref, bool *have_ref,
                      double plain_median, uint64_t *median)
{
    const bench_opts *o = c->o;
    const lc_file *f = c->file;
    unsigned runs = o->runs ? o->runs : 1;
    uint64_t *t = calloc(runs, sizeof *t);
    if (!t) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    lc_file warm;
    lc_scan(c->path, &warm); /* the page cache, again */
    int status = 0;
    unsigned done = 0;
    uint64_t cpu = 0, wall = 0, lines = 0, bytes = 0;
    lc_summary sum = {0, 0, 0};
    for (unsigned r = 0; r < o->warmup + runs && status == 0; r++) {
        if (r == o->warmup && c->rt != NULL)
            weir_runtime_stats_reset(c->rt);
        uint64_t ns = 0, c0 = bench_cpu_ns();
        if (lc_once(c, v, &ns, &sum, &lines, &bytes) != 0) {
            status = BENCH_EXIT_FAIL;
            break;
        }
        uint64_t c1 = bench_cpu_ns();
        if (!*have_ref) {
            *ref = sum;
            *have_ref = true;
        }
        if (sum.words != ref->words || sum.distinct != ref->distinct ||
            sum.checksum != ref->checksum || lines != f->lines || bytes != f->line_bytes) {
            fprintf(stderr,
                    "weir-bench: lines/%s: WRONG RESULT: %" PRIu64 " words, %" PRIu64
                    " distinct, checksum %016" PRIx64 ", %" PRIu64 " lines of %" PRIu64
                    " bytes; want %" PRIu64 ", %" PRIu64 ", %016" PRIx64 ", %" PRIu64 " of %" PRIu64
                    "\n",
                    lv_names[v], sum.words, sum.distinct, sum.checksum, lines, bytes, ref->words,
                    ref->distinct, ref->checksum, f->lines, f->line_bytes);
            status = BENCH_EXIT_FAIL;
            break;
        }
        if (r >= o->warmup) {
            t[done++] = ns;
            cpu += c1 - c0;
            wall += ns;
        }
    }
    *median = 0;
    if (done > 0 && status == 0) {
        bench_row row;
        bench_row_init(&row, "lines", lv_names[v], workers, f->bytes);
        row.runs = done;
        row.median_ns = *median = bench_median(t, done);
        row.min_ns = bench_min(t, done);
        if (plain_median > 0)
            row.ratio = (double)row.median_ns / plain_median;
        row.has_result = true;
        row.result = sum.checksum;
        double sec = (double)row.median_ns / 1e9;
        bench_row_extra(&row, "bytes", (double)f->bytes, true);
        bench_row_extra(&row, "lines", (double)lines, true);
        bench_row_extra(&row, "mb_per_s", (double)f->bytes / 1e6 / sec, false);
        bench_row_extra(&row, "lines_per_s", (double)lines / sec, true);
        bench_row_extra(&row, "truncated", (double)(f->line_bytes - bytes), true);
        bench_row_extra(&row, "words", (double)sum.words, true);
        bench_row_extra(&row, "distinct", (double)sum.distinct, true);
        if (wall >= 10000000u)
            bench_row_extra(&row, "cpu_pct", 100.0 * (double)cpu / (double)wall, false);
        if (c->rt != NULL) {
            row.has_stats = true;
            weir_runtime_stats_total(c->rt, &row.stats);
        }
        bench_print_row(o, &row);
    }
    free(t);
    return status;
}

int bench_lines(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        lc_help();
        return 0;
    }
    lc_cfg cfg;
    int rc = lc_parse(o, argc, argv, &cfg);
    if (rc == 0)
        rc = bench_check_variants(o, lv_names, LV_N);
    if (rc != 0)
        return rc;

    const char *path = cfg.file;
    if (cfg.generate_mb != 0) {
        uint64_t t0 = bench_now_ns();
        int err = lc_generate(&cfg, cfg.generate_mb * UINT64_C(1000000));
        if (err < 0) {
            fprintf(stderr, "weir-bench: lines: cannot write the generated file in %s: %s\n",
                    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", weir_strerror(err));
            lc_remove_tmp();
            return BENCH_EXIT_FAIL;
        }
        path = lc_tmp_path;
        bench_note(o,
                   "lines: generated %s in %.2f s (line length mean %" PRIu64 ", max %" PRIu64
                   ", seed %" PRIu64 ")",
                   path, (double)(bench_now_ns() - t0) / 1e9, cfg.mean, cfg.max, cfg.seed);
    }
    lc_file file;
    int err = lc_scan(path, &file);
    if (err < 0) {
        fprintf(stderr, "weir-bench: lines: cannot read '%s': %s\n", path, weir_strerror(err));
        lc_remove_tmp();
        return BENCH_EXIT_FAIL;
    }
    /* The longest line must fit its stream (and the words' streams): the
     * default 1 MiB, or twice the longest line rounded up to a power of two;
     * --byte-capacity as given (a line longer fails the run, -EMSGSIZE). */
    uint64_t cap = UINT64_C(1) << 20;
    while (cap < 2 * (file.longest + 8) && cap < WEIR_MAX_BYTE_CAPACITY)
        cap *= 2;
    if (cfg.byte_capacity)
        cap = cfg.byte_capacity;

    lc_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.cfg = &cfg;
    c.path = path;
    c.file = &file;
    c.byte_capacity = cap;
    unsigned pworkers = bench_default_workers(o);
    c.shards = cfg.shards ? cfg.shards : pworkers;
    c.shard = calloc(c.shards, sizeof *c.shard);
    if (!c.shard) {
        fprintf(stderr, "weir-bench: out of memory\n");
        lc_remove_tmp();
        return BENCH_EXIT_FAIL;
    }
    bench_note(o,
               "lines: %" PRIu64 " bytes, %" PRIu64 " lines (mean %.1f, longest %" PRIu64
               ", %" PRIu64 " over %d bytes), byte_capacity %" PRIu64 ", runs=%u warmup=%u cpus=%u",
               file.bytes, file.lines,
               file.lines ? (double)file.line_bytes / (double)file.lines : 0.0, file.longest,
               file.over_240, WEIR_LINE_TEXT, cap, o->runs, o->warmup, bench_online_cpus());

    int status = 0;
    lc_summary ref = {0, 0, 0};
    bool have_ref = false;
    double plain = 0;
    for (int v = 0; v < LV_N; v++) {
        bool selected = bench_variant_selected(o, lv_names[v]);
        if (!selected && !(v == LV_PLAIN))
            continue;
        if (!selected) {
            /* plain not asked for: one untimed run for the reference */
            uint64_t ns, lines, bytes;
            if (lc_once(&c, LV_PLAIN, &ns, &ref, &lines, &bytes) != 0) {
                status = BENCH_EXIT_FAIL;
                break;
            }
            have_ref = true;
            continue;
        }
        unsigned workers = v == LV_PLAIN ? 1 : v == LV_WEIR ? 1 : pworkers;
        if (v != LV_PLAIN && !(c.rt = lc_runtime(o, workers))) {
            status = BENCH_EXIT_FAIL;
            continue;
        }
        if (c.rt)
            workers = weir_runtime_workers(c.rt);
        uint64_t median = 0;
        if (lc_variant(&c, v, workers, &ref, &have_ref, plain, &median) != 0)
            status = BENCH_EXIT_FAIL;
        if (v == LV_PLAIN)
            plain = (double)median;
        weir_runtime_destroy(c.rt);
        c.rt = NULL;
    }
    free(c.shard);
    lc_remove_tmp();
    return status;
}
