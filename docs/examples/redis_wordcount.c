/*
 * redis_wordcount — word counting spread over several processes through a
 * Redis consumer group, with at-least-once delivery across crashes
 * (docs/scaling.md). Built when weir has its Redis terms (<weir/redis.h>).
 *
 *   producer   XADD every line of a text file to a stream, field "line"
 *   counters   N processes, each one weir pipeline, all in one group:
 *
 *     weir_redis_source(stream, group, consumer)   one record per entry
 *       * count   a function term: the words of the entry's "line" (runs of
 *                 bytes other than ' ', as `tr -s ' ' '\n'`), one result
 *                 record per entry: ("src", the entry's id), then
 *                 (word, its count in the line) for each distinct word
 *       * weir_redis_sink(results, ENTRY)           XADD of every result
 *
 *              The source injects a checkpoint barrier every 100 entries
 *              (or 100 ms) and acknowledges an entry (XACK) only once a
 *              barrier after it reached the sink: the sink flushed its
 *              pipelined XADDs and the server answered them. A counter
 *              killed with SIGKILL leaves its unacknowledged entries pending;
 *              the others claim them (XAUTOCLAIM) after 500 ms and count them
 *              again. A result may then be written twice (the killed one
 *              wrote it, but died before its acknowledgement), never zero
 *              times.
 *   checker    reads the results, keeps the first result of every source id
 *              (de-duplication by source id: a result is a pure function of
 *              its entry, so any copy will do), sums the counts, and compares
 *              them with the counts of the input file: equal, or exit 1. The
 *              duplicates dropped are counted and reported.
 *
 * Usage:
 *   redis_wordcount ping URL [SECONDS]          wait until the server answers
 *   redis_wordcount produce URL STREAM FILE [CHUNK PAUSE_MS]
 *                  CHUNK lines per pipelined batch, a pause between batches
 *                  (default: all at once)
 *   redis_wordcount count URL STREAM GROUP CONSUMER RESULTS
 *                  a counter; ends when the stream has been quiet for 1.5 s
 *                  and no other consumer holds pending entries
 *   redis_wordcount check URL RESULTS FILE
 * URL: redis://host:port or unix:/path. Exit status 0, 1 on a failure or a
 * mismatch, 2 for a usage error. The crash test that kills a counter at a
 * random moment, round after round, is redis-wordcount-crash.sh.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <weir.h>
#include <weir/redis.h>

/* ---- connections (producer and checker) -------------------------------- */

static redisContext *connect_url(const char *url, int quiet)
{
    struct timeval tv = {5, 0};
    redisContext *c = NULL;
    if (strncmp(url, "unix:", 5) == 0) {
        c = redisConnectUnixWithTimeout(url + 5, tv);
    } else if (strncmp(url, "redis://", 8) == 0) {
        char host[256];
        int port = 6379;
        const char *colon = strrchr(url + 8, ':');
        size_t hl = colon ? (size_t)(colon - url - 8) : strlen(url + 8);
        if (hl >= sizeof host)
            return NULL;
        memcpy(host, url + 8, hl);
        host[hl] = 0;
        if (colon)
            port = atoi(colon + 1);
        c = redisConnectWithTimeout(host, port, tv);
    }
    if (c && c->err) {
        if (!quiet)
            fprintf(stderr, "redis_wordcount: %s: %s\n", url, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, tv);
    return c;
}

static int cmd_ping(const char *url, double seconds)
{
    for (double waited = 0; waited < seconds; waited += 0.02) {
        redisContext *c = connect_url(url, 1);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "redis_wordcount: no answer from %s within %.0f s\n", url, seconds);
    return 1;
}

/* ---- the input file ------------------------------------------------------ */

typedef struct text {
    char *data;
    size_t len;
} text;

static int read_file(const char *path, text *t)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16;
    t->data = malloc(cap);
    t->len = 0;
    size_t k;
    while (t->data && (k = fread(t->data + t->len, 1, cap - t->len, f)) > 0) {
        t->len += k;
        if (t->len == cap)
            t->data = realloc(t->data, cap *= 2);
    }
    fclose(f);
    return t->data ? 0 : -1;
}

/* The next line of t from *pos (without its newline); false at the end. */
static int next_line(const text *t, size_t *pos, const char **line, size_t *len)
{
    if (*pos >= t->len)
        return 0;
    const char *p = t->data + *pos;
    const char *nl = memchr(p, '\n', t->len - *pos);
    *line = p;
    *len = nl ? (size_t)(nl - p) : t->len - *pos;
    *pos += *len + (nl ? 1 : 0);
    return 1;
}

static int cmd_produce(const char *url, const char *stream, const char *path, long chunk,
                       long pause_ms)
{
    text t;
    if (read_file(path, &t) < 0)
        return 1;
    redisContext *c = connect_url(url, 0);
    if (!c)
        return 1;
    size_t pos = 0, n = 0, pending = 0;
    const char *line;
    size_t len;
    int rc = 0;
    for (;;) {
        int more = next_line(&t, &pos, &line, &len);
        if (more) {
            const char *argv[5] = {"XADD", stream, "*", "line", line};
            size_t lens[5] = {4, strlen(stream), 1, 4, len};
            redisAppendCommandArgv(c, 5, argv, lens);
            pending++;
            n++;
        }
        if (pending && (!more || (chunk > 0 && pending >= (size_t)chunk) || pending >= 1000)) {
            for (; pending; pending--) {
                redisReply *r;
                if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_STRING) {
                    fprintf(stderr, "redis_wordcount: XADD failed: %s\n", r ? r->str : c->errstr);
                    rc = 1;
                    break;
                }
                freeReplyObject(r);
            }
            if (rc)
                break;
            if (more && chunk > 0 && pause_ms > 0) {
                struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        if (!more)
            break;
    }
    redisFree(c);
    free(t.data);
    if (rc == 0)
        fprintf(stderr, "produced %zu lines\n", n);
    return rc;
}

/* ---- counting: the weir pipeline ----------------------------------------- */

typedef struct word {
    const char *p;
    size_t len;
} word;

typedef struct counter {
    word *words;
    size_t cap;
    uint64_t entries;
} counter;

static int by_bytes(const void *a, const void *b)
{
    const word *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* One entry in, one result out: ("src", id), then (word, count) pairs. */
static int count(void *state, const void *in, weir_emit *e)
{
    counter *k = state;
    const weir_bytes *rec = in;
    const char *id;
    size_t idlen;
    const void *lv;
    size_t len;
    if (weir_redis_entry_id(rec, &id, &idlen) != 0)
        return weir_emit_fail(e, -EINVAL, "a record that is not a stream entry");
    if (weir_redis_field(rec, "line", &lv, &len) != 0)
        return weir_emit_fail(e, -EINVAL, "entry %.*s has no field 'line'", (int)idlen, id);
    const char *line = lv;
    /* the words of the line, in place, sorted so equal words are adjacent */
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && line[i] == ' ')
            i++;
        size_t s = i;
        while (i < len && line[i] != ' ')
            i++;
        if (i > s) {
            if (n == k->cap) {
                size_t cap = k->cap ? 2 * k->cap : 64;
                word *w = realloc(k->words, cap * sizeof *w);
                if (!w)
                    return -ENOMEM;
                k->words = w;
                k->cap = cap;
            }
            k->words[n++] = (word){line + s, i - s};
        }
    }
    if (n > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(k->words, n, sizeof *k->words, by_bytes);
    /* room enough: each pair costs 8 bytes, the word and at most 20 digits */
    size_t max = 16 + 4 + 3 + 4 + idlen + len + n * 28;
    void *buf;
    int r = weir_emit_reserve(e, max, &buf);
    if (r < 0)
        return r;
    weir_redis_writer w;
    weir_redis_writer_init(&w, buf, max, NULL, 0);
    weir_redis_writer_add(&w, "src", 3, id, idlen);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && by_bytes(&k->words[i], &k->words[j]) == 0)
            j++;
        char num[24];
        int nl = snprintf(num, sizeof num, "%zu", j - i);
        weir_redis_writer_add(&w, k->words[i].p, k->words[i].len, num, (size_t)nl);
        i = j;
    }
    size_t used;
    if ((r = weir_redis_writer_finish(&w, &used)) < 0)
        return weir_emit_fail(e, r, "result of entry %.*s", (int)idlen, id);
    k->entries++;
    return weir_emit_commit(e, used);
}

static int cmd_count(const char *url, const char *stream, const char *group, const char *consumer,
                     const char *results)
{
    weir_runtime *rt;
    if (weir_runtime_create(NULL, &rt) < 0) { /* defaults + WEIR_* environment */
        fprintf(stderr, "redis_wordcount: %s\n", weir_last_error());
        return 1;
    }
    weir_redis_source_config sc;
    weir_redis_source_config_init(&sc);
    sc.url = url;
    sc.stream = stream;
    sc.group = group;
    sc.consumer = consumer;
    sc.batch = 64;
    sc.checkpoint_every = 100; /* acknowledge every 100 entries ... */
    sc.checkpoint_ms = 100;    /* ... or 100 ms */
    sc.claim_idle_ms = 500;    /* take over a dead counter's entries after 0.5 s */
    sc.end_idle_ms = 1500;     /* the end: 1.5 s of quiet, nothing pending elsewhere */
    weir_redis_sink_config kc;
    weir_redis_sink_config_init(&kc);
    kc.url = url;
    kc.stream = results;
    kc.format = WEIR_REDIS_SINK_ENTRY;
    counter k = {0};
    weir_term *t = WEIR_SEQ(weir_redis_source("lines", &sc),
                            weir_function("count", WEIR_VARSIZE, WEIR_VARSIZE, count, &k),
                            weir_redis_sink("results", &kc));
    weir_pipeline *p = NULL;
    int err = t ? weir_pipeline_create(rt, t, NULL, &p) : -EINVAL;
    if (err < 0) {
        fprintf(stderr, "redis_wordcount: %s\n", weir_last_error());
        weir_term_destroy(t);
    } else {
        err = weir_pipeline_run(p);
        if (err < 0)
            fprintf(stderr, "redis_wordcount %s: %s\n", consumer, weir_pipeline_error(p));
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(rt);
    if (err == 0)
        fprintf(stderr, "%s counted %llu entries\n", consumer, (unsigned long long)k.entries);
    free(k.words);
    return err == 0 ? 0 : 1;
}

/* ---- checking: a table word -> count -------------------------------------- */

typedef struct slot {
    char *w;
    size_t len;
    uint64_t n;
} slot;

typedef struct table {
    slot *s;
    size_t cap, used;
    uint64_t total;
} table;

static uint64_t hash(const void *d, size_t n)
{
    const unsigned char *p = d;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h;
}

static slot *find(table *t, const void *w, size_t len)
{
    if (2 * (t->used + 1) > t->cap) {
        table g = {calloc(t->cap ? 2 * t->cap : 1024, sizeof(slot)), t->cap ? 2 * t->cap : 1024, 0,
                   t->total};
        for (size_t i = 0; i < t->cap; i++)
            if (t->s[i].w) {
                size_t j = hash(t->s[i].w, t->s[i].len) & (g.cap - 1);
                while (g.s[j].w)
                    j = (j + 1) & (g.cap - 1);
                g.s[j] = t->s[i];
                g.used++;
            }
        free(t->s);
        *t = g;
    }
    size_t j = hash(w, len) & (t->cap - 1);
    while (t->s[j].w && (t->s[j].len != len || memcmp(t->s[j].w, w, len) != 0))
        j = (j + 1) & (t->cap - 1);
    if (!t->s[j].w) {
        t->s[j].w = malloc(len + 1);
        memcpy(t->s[j].w, w, len);
        t->s[j].len = len;
        t->used++;
    }
    return &t->s[j];
}

static void add(table *t, const void *w, size_t len, uint64_t n)
{
    find(t, w, len)->n += n;
    t->total += n;
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->s[i].w);
    free(t->s);
}

static int cmd_check(const char *url, const char *results, const char *path)
{
    /* the reference: every word of every line of the file */
    text f;
    if (read_file(path, &f) < 0)
        return 1;
    table want = {0}, got = {0}, seen = {0};
    size_t pos = 0, lines = 0;
    const char *line;
    size_t len;
    while (next_line(&f, &pos, &line, &len)) {
        lines++;
        for (size_t i = 0; i < len;) {
            size_t s = i;
            while (i < len && line[i] != ' ')
                i++;
            if (i > s)
                add(&want, line + s, i - s, 1);
            while (i < len && line[i] == ' ')
                i++;
        }
    }
    free(f.data);

    redisContext *c = connect_url(url, 0);
    if (!c)
        return 1;
    char start[64] = "-";
    uint64_t results_read = 0, duplicates = 0;
    for (;;) {
        redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT 1000", results, start);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "redis_wordcount: XRANGE %s: %s\n", results, r ? r->str : c->errstr);
            return 1;
        }
        for (size_t i = 0; i < r->elements; i++) {
            redisReply *fv = r->element[i]->element[1];
            results_read++;
            if (fv->elements < 2 || strcmp(fv->element[0]->str, "src") != 0) {
                fprintf(stderr, "redis_wordcount: result %s has no src first\n",
                        r->element[i]->element[0]->str);
                return 1;
            }
            slot *s = find(&seen, fv->element[1]->str, fv->element[1]->len);
            if (s->n++) {
                duplicates++; /* the same source entry counted again: drop it */
                continue;
            }
            for (size_t j = 2; j + 1 < fv->elements; j += 2)
                add(&got, fv->element[j]->str, fv->element[j]->len,
                    strtoull(fv->element[j + 1]->str, NULL, 10));
        }
        size_t n = r->elements;
        if (n)
            snprintf(start, sizeof start, "(%s", r->element[n - 1]->element[0]->str);
        freeReplyObject(r);
        if (n < 1000)
            break;
    }
    redisFree(c);

    int bad = 0;
    if (seen.used != lines) {
        fprintf(stderr, "redis_wordcount: %zu lines produced, results for %zu of them\n", lines,
                seen.used);
        bad = 1;
    }
    for (size_t i = 0; i < want.cap; i++)
        if (want.s[i].w) {
            uint64_t g = find(&got, want.s[i].w, want.s[i].len)->n;
            if (g != want.s[i].n && bad++ < 10)
                fprintf(stderr, "redis_wordcount: '%.*s' counted %llu times, %llu in the file\n",
                        (int)want.s[i].len, want.s[i].w, (unsigned long long)g,
                        (unsigned long long)want.s[i].n);
        }
    if (got.used != want.used) {
        fprintf(stderr, "redis_wordcount: %zu distinct words counted, %zu in the file\n", got.used,
                want.used);
        bad = 1;
    }
    printf("lines %zu, results %llu, duplicates %llu, words %llu (%zu distinct): %s\n", lines,
           (unsigned long long)results_read, (unsigned long long)duplicates,
           (unsigned long long)got.total, got.used, bad ? "MISMATCH" : "exact");
    table_free(&want);
    table_free(&got);
    table_free(&seen);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "ping") == 0)
        return cmd_ping(argv[2], argc > 3 ? atof(argv[3]) : 5);
    if ((argc == 5 || argc == 7) && strcmp(argv[1], "produce") == 0)
        return cmd_produce(argv[2], argv[3], argv[4], argc == 7 ? atol(argv[5]) : 0,
                           argc == 7 ? atol(argv[6]) : 0);
    if (argc == 7 && strcmp(argv[1], "count") == 0)
        return cmd_count(argv[2], argv[3], argv[4], argv[5], argv[6]);
    if (argc == 5 && strcmp(argv[1], "check") == 0)
        return cmd_check(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: redis_wordcount ping URL [SECONDS]\n"
                    "       redis_wordcount produce URL STREAM FILE [CHUNK PAUSE_MS]\n"
                    "       redis_wordcount count URL STREAM GROUP CONSUMER RESULTS\n"
                    "       redis_wordcount check URL RESULTS FILE\n");
    return 2;
}
