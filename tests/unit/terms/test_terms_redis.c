/*
 * The Redis Streams source and sink (include/weir/redis.h, issue 13) against
 * a real redis-server that each test starts for itself (tests/common/
 * redis_server.h: 127.0.0.1, a free port, no persistence, killed at the end
 * whatever happens). A test without redis-server on the machine is skipped.
 *
 * Pinned down: a source -> sink round trip is exact (ids, fields, values,
 * binary bytes, order) in the three modes; the entry layout's readers and
 * writer, malformed records included; the sink's BYTES format, MAXLEN ~ and
 * an error reply; two pipelines in one group split a stream without
 * duplicates; entries a dead consumer left pending are claimed (XAUTOCLAIM),
 * and a restarted consumer re-reads its own; with checkpoints an entry is
 * acknowledged only after it reached the sink (XPENDING sampled while a gated
 * sink holds records) and nothing is pending at the end; without, nothing is
 * ever pending (NOACK); a server down at start, killed mid-run, and killed
 * then restarted; stop, cancel and destroy while the source waits in
 * XREADGROUP; a password from the environment; a unix socket; bad configs.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/redis_server.h"
#include "helpers.h"
#include "weir/redis.h"

static redis_server srv;

static void redis_setup(void)
{
    rt_setup();
}

static void redis_teardown(void)
{
    redis_server_stop(&srv);
    rt_teardown();
}

TestSuite(redis, .init = redis_setup, .fini = redis_teardown, .timeout = 60);

#define NEED_SERVER(...)                                                                           \
    do {                                                                                           \
        const char *extra_[] = {__VA_ARGS__ NULL};                                                 \
        if (redis_server_start(&srv, extra_) != 0)                                                 \
            cr_skip_test("redis-server is not available: Redis tests skipped");                    \
    } while (0)

static uint64_t now_ms(void)
{
    return weir_now_ns() / 1000000u;
}

static void sleep_ms(long ms)
{
    redis_server_sleep_ms(ms);
}

/* Wait until `cond` or `ms` pass. */
#define WAIT_FOR(cond, ms)                                                                         \
    do {                                                                                           \
        uint64_t until_ = now_ms() + (ms);                                                         \
        while (!(cond) && now_ms() < until_)                                                       \
            sleep_ms(2);                                                                           \
    } while (0)

/* ------------------------------------------------------------- the server */

static redisContext *conn(void)
{
    redisContext *c = redis_server_connect(&srv);
    cr_assert(c, "cannot connect to the test server on port %d", srv.port);
    return c;
}

static long long xlen(redisContext *c, const char *key)
{
    redisReply *r = redisCommand(c, "XLEN %s", key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* Entries pending in the group (XPENDING summary), -1 if no group. */
static long long xpending(redisContext *c, const char *key, const char *group)
{
    redisReply *r = redisCommand(c, "XPENDING %s %s", key, group);
    cr_assert(r);
    long long n = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4)
        n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

/* Entry i of a test stream: a few fields, binary bytes, an empty value. */
typedef struct test_entry {
    char id[48];
    int npairs;
    char f[3][16];
    char v[3][64];
    size_t vlen[3];
} test_entry;

static void make_entry(test_entry *t, int i)
{
    t->npairs = 1 + i % 3;
    snprintf(t->f[0], sizeof t->f[0], "i");
    t->vlen[0] = (size_t)snprintf(t->v[0], sizeof t->v[0], "%d", i);
    if (t->npairs > 1) {
        snprintf(t->f[1], sizeof t->f[1], "bin");
        t->vlen[1] = (size_t)(i % 9);
        for (size_t k = 0; k < t->vlen[1]; k++)
            t->v[1][k] = (char)((i * 31 + (int)k) & 0xff); /* NULs included */
    }
    if (t->npairs > 2) {
        snprintf(t->f[2], sizeof t->f[2], "empty");
        t->vlen[2] = 0;
    }
}

/* XADD `n` test entries to `key`, their ids into out[0..n). */
static void fill(redisContext *c, const char *key, int from, int n, test_entry *out)
{
    for (int i = 0; i < n; i++) {
        test_entry t;
        make_entry(&t, from + i);
        const char *argv[9] = {"XADD", key, "*"};
        size_t lens[9] = {4, strlen(key), 1};
        int argc = 3;
        for (int k = 0; k < t.npairs; k++) {
            argv[argc] = t.f[k];
            lens[argc++] = strlen(t.f[k]);
            argv[argc] = t.v[k];
            lens[argc++] = t.vlen[k];
        }
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD: %s", r ? r->str : c->errstr);
        snprintf(t.id, sizeof t.id, "%s", r->str);
        freeReplyObject(r);
        if (out)
            out[i] = t;
    }
}

/* Does the entry-layout record `b` hold exactly entry t (id and pairs)? */
static bool same_entry(const weir_bytes *b, const test_entry *t, bool check_id)
{
    const char *id;
    size_t idlen;
    if (weir_redis_entry_id(b, &id, &idlen) != 0)
        return false;
    if (check_id && (idlen != strlen(t->id) || memcmp(id, t->id, idlen) != 0))
        return false;
    weir_redis_iter it;
    if (weir_redis_iter_init(&it, b) != 0 || it.npairs != (uint32_t)t->npairs)
        return false;
    weir_bytes f, v;
    for (int k = 0; k < t->npairs; k++) {
        if (weir_redis_iter_next(&it, &f, &v) != 1)
            return false;
        if (f.len != strlen(t->f[k]) || memcmp(f.data, t->f[k], f.len) != 0 ||
            v.len != t->vlen[k] || (v.len && memcmp(v.data, t->v[k], v.len) != 0))
            return false;
    }
    return weir_redis_iter_next(&it, &f, &v) == 0;
}

/* XRANGE `key` - + as entry-layout records (for comparing). */
typedef struct entries {
    size_t n;
    weir_bytes *recs;
} entries;

static entries xrange(redisContext *c, const char *key)
{
    redisReply *r = redisCommand(c, "XRANGE %s - +", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    entries e = {r->elements, calloc(r->elements + 1, sizeof(weir_bytes))};
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *en = r->element[i], *fv = en->element[1];
        size_t cap = 64 + en->element[0]->len;
        for (size_t k = 0; k < fv->elements; k++)
            cap += 4 + fv->element[k]->len;
        void *buf = malloc(cap);
        weir_redis_writer w;
        weir_redis_writer_init(&w, buf, cap, en->element[0]->str, en->element[0]->len);
        for (size_t k = 0; k + 1 < fv->elements; k += 2)
            weir_redis_writer_add(&w, fv->element[k]->str, fv->element[k]->len,
                                  fv->element[k + 1]->str, fv->element[k + 1]->len);
        size_t len;
        cr_assert_eq(weir_redis_writer_finish(&w, &len), 0);
        e.recs[i].data = buf;
        e.recs[i].len = len;
    }
    freeReplyObject(r);
    return e;
}

static void entries_free(entries *e)
{
    for (size_t i = 0; i < e->n; i++)
        free((void *)e->recs[i].data);
    free(e->recs);
}

/* ------------------------------------------------------------ terms */

static weir_redis_source_config src_cfg(const char *stream, const char *group, const char *consumer)
{
    weir_redis_source_config c;
    weir_redis_source_config_init(&c);
    c.url = srv.url;
    c.stream = stream;
    c.group = group;
    c.consumer = consumer;
    c.end_idle_ms = 300;
    c.block_ms = 100;
    c.timeout_ms = 2000;
    c.retry_ms = 1000;
    c.drain_ms = 500;
    return c;
}

static weir_term *sink_to(const char *name, const char *stream, weir_redis_sink_format f)
{
    weir_redis_sink_config c;
    weir_redis_sink_config_init(&c);
    c.url = srv.url;
    c.stream = stream;
    c.format = f;
    c.retry_ms = 1000;
    c.pipeline = 32;
    weir_term *t = weir_redis_sink(name, &c);
    cr_assert(t, "sink: %s", weir_last_error());
    return t;
}

static weir_term *source(const char *name, const weir_redis_source_config *c)
{
    weir_term *t = weir_redis_source(name, c);
    cr_assert(t, "source: %s", weir_last_error());
    return t;
}

/* A sink that counts records and holds them until `allow` says so. */
typedef struct gate {
    _Atomic uint64_t seen;
    _Atomic uint64_t allow;
} gate;

static int gate_fn(void *state, const void *in)
{
    gate *g = state;
    (void)in;
    uint64_t t0 = now_ms();
    while (atomic_load(&g->seen) >= atomic_load(&g->allow)) {
        if (now_ms() - t0 > 20000)
            return -ETIMEDOUT; /* never hold a test for ever */
        sleep_ms(1);
    }
    atomic_fetch_add(&g->seen, 1);
    return 0;
}

static weir_pipeline *start(weir_term *t, weir_exec_mode m)
{
    weir_pipeline_config c = cfg_of(m, 0, 0);
    weir_pipeline *p = NULL;
    int r = weir_pipeline_create(rt, t, &c, &p);
    cr_assert_eq(r, 0, "create: %s", weir_terms_last_error());
    cr_assert_eq(weir_pipeline_start(p), 0);
    return p;
}

/* ------------------------------------------------------------------ tests */

Test(redis, constructors_refuse_bad_configs_with_a_message)
{
    weir_redis_source_config c;
    weir_redis_source_config_init(&c);
    cr_expect_eq(c.batch, 128);
    cr_expect_str_eq(c.url, "redis://127.0.0.1:6379");
    cr_expect_str_eq(c.group_start, "0");
    cr_expect_null(weir_redis_source("src", NULL));
    cr_expect(strstr(weir_last_error(), "src") && strstr(weir_last_error(), "NULL"), "%s",
              weir_last_error());
    cr_expect_null(weir_redis_source("src", &c)); /* no stream */
    cr_expect(strstr(weir_last_error(), "stream"), "%s", weir_last_error());
    c.stream = "s";
    cr_expect_null(weir_redis_source("src", &c)); /* no group */
    cr_expect(strstr(weir_last_error(), "group"), "%s", weir_last_error());
    c.group = "g";
    const char *bad[] = {"http://x",
                         "redis://",
                         "redis://:6379",
                         "redis://h:0",
                         "redis://h:99999",
                         "redis://h:12x",
                         "unix:",
                         "redis://pw@h",
                         "redis://h:1/notdb",
                         "redis://[::1:5",
                         "",
                         "redis://h:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c.url = bad[i];
        cr_expect_null(weir_redis_source("src", &c), "url '%s' accepted", bad[i]);
        cr_expect(strstr(weir_last_error(), "src") && strstr(weir_last_error(), "url"), "'%s': %s",
                  bad[i], weir_last_error());
    }
    const char *good[] = {"redis://h",         "redis://h:1",        "redis://:pw@h:2/3",
                          "redis://u:pw@h",    "redis://[::1]:6379", "unix:/tmp/x.sock",
                          "unix:///tmp/x.sock"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        c.url = good[i];
        weir_term *t = weir_redis_source("src", &c);
        cr_expect(t, "url '%s': %s", good[i], weir_last_error());
        weir_term_destroy(t);
    }
    c.url = NULL; /* the default */
    c.batch = 0;
    cr_expect_null(weir_redis_source("src", &c));
    cr_expect(strstr(weir_last_error(), "batch"), "%s", weir_last_error());

    weir_redis_sink_config k;
    weir_redis_sink_config_init(&k);
    cr_expect_eq(k.pipeline, 256);
    cr_expect_str_eq(k.field, "data");
    cr_expect_null(weir_redis_sink("out", NULL));
    cr_expect_null(weir_redis_sink("out", &k)); /* no stream */
    cr_expect(strstr(weir_last_error(), "out") && strstr(weir_last_error(), "stream"), "%s",
              weir_last_error());
    k.stream = "s";
    k.url = "redis:/x";
    cr_expect_null(weir_redis_sink("out", &k));
    cr_expect(strstr(weir_last_error(), "url"), "%s", weir_last_error());
    k.url = NULL;
    k.field = "";
    cr_expect_null(weir_redis_sink("out", &k));
    k.field = "f";
    k.format = (weir_redis_sink_format)7;
    cr_expect_null(weir_redis_sink("out", &k));
    k.format = WEIR_REDIS_SINK_ENTRY;
    weir_term *t = weir_redis_sink("out", &k);
    cr_expect(t);
    weir_term_destroy(t);
}

Test(redis, entry_layout_readers_and_writer)
{
    unsigned char buf[256];
    weir_redis_writer w;
    weir_redis_writer_init(&w, buf, sizeof buf, "12-3", 4);
    weir_redis_writer_add(&w, "a", 1, "xyz", 3);
    weir_redis_writer_add(&w, "b", 1, "", 0);
    weir_redis_writer_add(&w, "a", 1, "\0\1", 2); /* a repeated field */
    size_t len;
    cr_assert_eq(weir_redis_writer_finish(&w, &len), 0);
    cr_assert_eq(len, 4 + 4 + 4 + 3 * 8 + 1 + 3 + 1 + 0 + 1 + 2);
    /* the documented layout, byte by byte */
    static const unsigned char want[] = {4, 0,   0, 0, '1', '2', '-', '3', 3,   0, 0, 0, 1, 0,   0,
                                         0, 'a', 3, 0, 0,   0,   'x', 'y', 'z', 1, 0, 0, 0, 'b', 0,
                                         0, 0,   0, 1, 0,   0,   0,   'a', 2,   0, 0, 0, 0, 1};
    cr_assert_eq(len, sizeof want);
    cr_assert_eq(memcmp(buf, want, len), 0);

    weir_bytes rec = {buf, len};
    const char *id;
    size_t idlen;
    cr_assert_eq(weir_redis_entry_id(&rec, &id, &idlen), 0);
    cr_assert_eq(idlen, 4);
    cr_assert_eq(memcmp(id, "12-3", 4), 0);
    const void *v;
    size_t vl;
    cr_assert_eq(weir_redis_field(&rec, "a", &v, &vl), 0); /* the first "a" */
    cr_assert_eq(vl, 3);
    cr_assert_eq(memcmp(v, "xyz", 3), 0);
    cr_assert_eq(weir_redis_field(&rec, "b", &v, &vl), 0);
    cr_assert_eq(vl, 0);
    cr_assert_eq(weir_redis_field(&rec, "c", &v, &vl), -ENOENT);
    cr_assert_eq(weir_redis_field(&rec, "", &v, &vl), -ENOENT);
    weir_redis_iter it;
    cr_assert_eq(weir_redis_iter_init(&it, &rec), 0);
    cr_assert_eq(it.npairs, 3);
    weir_bytes f, val;
    int n = 0;
    while (weir_redis_iter_next(&it, &f, &val) == 1)
        n++;
    cr_assert_eq(n, 3);
    cr_assert_eq(weir_redis_iter_next(&it, &f, &val), 0);

    /* cut records, trailing bytes, lying lengths: -EINVAL, never a read
     * beyond the record (ASan checks that) */
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        weir_bytes c = {copy, cut};
        int r = weir_redis_iter_init(&it, &c);
        if (r == 0) {
            while ((r = weir_redis_iter_next(&it, &f, &val)) == 1)
                ;
        }
        cr_expect_eq(r, -EINVAL, "a record cut at %zu bytes was read", cut);
        cr_expect_eq(weir_redis_field(&c, "zz", &v, &vl), -EINVAL, "cut at %zu", cut);
        free(copy);
    }
    unsigned char longer[sizeof want + 1];
    memcpy(longer, want, sizeof want);
    longer[sizeof want] = 0;
    weir_bytes lg = {longer, sizeof longer};
    cr_assert_eq(weir_redis_iter_init(&it, &lg), 0);
    while (weir_redis_iter_next(&it, &f, &val) == 1)
        ;
    cr_expect_eq(weir_redis_iter_next(&it, &f, &val), -EINVAL, "trailing bytes accepted");
    unsigned char lie[sizeof want];
    memcpy(lie, want, sizeof want);
    lie[8] = 0xff; /* npairs = 255 */
    weir_bytes li = {lie, sizeof lie};
    cr_expect_eq(weir_redis_iter_init(&it, &li), -EINVAL);
    cr_expect_eq(weir_redis_entry_id(NULL, &id, &idlen), -EINVAL);
    cr_expect_eq(weir_redis_field(&rec, NULL, &v, &vl), -EINVAL);

    /* too small a buffer: the size needed, then it fits */
    weir_redis_writer_init(&w, buf, 10, "12-3", 4);
    weir_redis_writer_add(&w, "a", 1, "xyz", 3);
    cr_assert_eq(weir_redis_writer_finish(&w, &len), -EMSGSIZE);
    cr_assert_eq(len, 4 + 4 + 4 + 8 + 4);
    weir_redis_writer_init(&w, NULL, 0, NULL, 0); /* sizing only */
    weir_redis_writer_add(&w, "a", 1, "b", 1);
    cr_assert_eq(weir_redis_writer_finish(&w, &len), -EMSGSIZE);
    cr_assert_eq(len, 4 + 4 + 10);
}

static void round_trip(weir_exec_mode mode, bool checkpoints)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 600 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.batch = 50;
    if (checkpoints)
        sc.checkpoint_every = 64;
    weir_collector got;
    weir_collector_init(&got, WEIR_VARSIZE);
    weir_term *t =
        weir_seq2(source("src", &sc), weir_par2(weir_collect("keep", &got),
                                                sink_to("out", "out", WEIR_REDIS_SINK_ENTRY)));
    weir_pipeline *p = NULL;
    int r = run_mode(t, mode, &p);
    cr_assert_eq(r, 0, "%s: %s", weir_exec_mode_name(mode), weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    cr_assert_eq(got.count, N);
    const weir_bytes *recs = got.data;
    for (int i = 0; i < N; i++)
        cr_assert(same_entry(&recs[i], &in[i], true), "record %d differs from entry %s", i,
                  in[i].id);
    /* the sink's stream: the same pairs in the same order, new ids */
    entries out = xrange(c, "out");
    cr_assert_eq(out.n, N);
    for (int i = 0; i < N; i++)
        cr_assert(same_entry(&out.recs[i], &in[i], false), "out entry %d differs", i);
    entries_free(&out);
    cr_assert_eq(xpending(c, "in", "g"), 0);
    weir_collector_deinit(&got);
    redisFree(c);
}

Test(redis, round_trip_is_exact_pool)
{
    round_trip(WEIR_EXEC_POOL, false);
}
Test(redis, round_trip_is_exact_threads)
{
    round_trip(WEIR_EXEC_THREADS, false);
}
Test(redis, round_trip_is_exact_hybrid)
{
    round_trip(WEIR_EXEC_HYBRID, false);
}
Test(redis, round_trip_is_exact_with_checkpoints_pool)
{
    round_trip(WEIR_EXEC_POOL, true);
}
Test(redis, round_trip_is_exact_with_checkpoints_threads)
{
    round_trip(WEIR_EXEC_THREADS, true);
}

Test(redis, sink_bytes_format_and_maxlen)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 1000 };
    static char text[N][32];
    static weir_bytes recs[N];
    for (int i = 0; i < N; i++) {
        recs[i].len = (size_t)snprintf(text[i], sizeof text[i], "record %d", i);
        recs[i].data = text[i];
    }
    weir_redis_sink_config k;
    weir_redis_sink_config_init(&k);
    k.url = srv.url;
    k.stream = "bytes";
    k.field = "payload";
    k.pipeline = 7;
    weir_term *t =
        weir_seq2(weir_array_source("arr", recs, N, WEIR_VARSIZE), weir_redis_sink("out", &k));
    weir_pipeline *p;
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, &p), 0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    redisReply *r = redisCommand(c, "XRANGE bytes - +");
    cr_assert_eq(r->elements, N);
    for (int i = 0; i < N; i++) {
        redisReply *fv = r->element[i]->element[1];
        cr_assert_eq(fv->elements, 2);
        cr_assert_str_eq(fv->element[0]->str, "payload");
        cr_assert_eq(fv->element[1]->len, recs[i].len);
        cr_assert_eq(memcmp(fv->element[1]->str, text[i], recs[i].len), 0);
    }
    freeReplyObject(r);

    /* MAXLEN ~ 100: the stream is trimmed to about 100 (whole nodes) */
    k.stream = "trimmed";
    k.maxlen = 100;
    t = weir_seq2(weir_array_source("arr", recs, N, WEIR_VARSIZE), weir_redis_sink("out", &k));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    long long n = xlen(c, "trimmed");
    cr_expect(n >= 100 && n < N / 2, "XLEN after MAXLEN ~ 100: %lld", n);
    redisFree(c);
}

Test(redis, sink_error_reply_fails_the_pipeline_naming_the_sink)
{
    NEED_SERVER();
    redisContext *c = conn();
    freeReplyObject(redisCommand(c, "SET notastream x")); /* XADD: WRONGTYPE */
    weir_bytes one = {"x", 1};
    weir_term *t = weir_seq2(weir_array_source("arr", &one, 1, WEIR_VARSIZE),
                             sink_to("the-sink", "notastream", WEIR_REDIS_SINK_BYTES));
    weir_pipeline *p;
    int r = run_mode(t, WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, -EREMOTEIO, "%d %s", r, weir_pipeline_error(p));
    cr_expect(strstr(weir_pipeline_error(p), "the-sink"), "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);

    /* an ENTRY sink given a record that is not in the layout */
    weir_bytes junk = {"junk", 4};
    t = weir_seq2(weir_array_source("arr", &junk, 1, WEIR_VARSIZE),
                  sink_to("entry-sink", "s2", WEIR_REDIS_SINK_ENTRY));
    r = run_mode(t, WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, -EINVAL);
    cr_expect(strstr(weir_pipeline_error(p), "entry-sink"), "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    redisFree(c);
}

/* A sink that records the ids it saw (one consumer's share). */
typedef struct ids_seen {
    pthread_mutex_t mu;
    size_t n, cap;
    char (*ids)[48];
} ids_seen;

static int ids_fn(void *state, const void *in)
{
    ids_seen *s = state;
    const char *id;
    size_t len;
    if (weir_redis_entry_id(in, &id, &len) != 0 || len >= 48)
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->ids = realloc(s->ids, s->cap * sizeof *s->ids);
    }
    memcpy(s->ids[s->n], id, len);
    s->ids[s->n][len] = 0;
    s->n++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Every id of in[0..n) seen exactly once across the sets. */
static void expect_exactly_once(ids_seen *sets, int nsets, const test_entry *in, int n)
{
    size_t total = 0;
    for (int i = 0; i < nsets; i++)
        total += sets[i].n;
    char(*all)[48] = malloc((total + 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < nsets; i++)
        for (size_t j = 0; j < sets[i].n; j++)
            memcpy(all[k++], sets[i].ids[j], 48);
    qsort(all, total, sizeof *all, cmp_id);
    for (size_t j = 1; j < total; j++)
        cr_expect(strcmp(all[j - 1], all[j]) != 0, "entry %s delivered twice", all[j]);
    char(*want)[48] = malloc((size_t)(n + 1) * sizeof *want);
    for (int i = 0; i < n; i++)
        memcpy(want[i], in[i].id, 48);
    qsort(want, (size_t)n, sizeof *want, cmp_id);
    cr_expect_eq(total, (size_t)n, "%zu entries delivered, %d in the stream", total, n);
    for (size_t j = 0; j < total && j < (size_t)n; j++)
        cr_assert_str_eq(all[j], want[j]);
    free(all);
    free(want);
}

Test(redis, two_pipelines_in_one_group_split_the_stream_without_duplicates)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 3000 };
    static test_entry in[N];
    ids_seen seen[2] = {{PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL},
                        {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL}};
    weir_pipeline *p[2];
    for (int i = 0; i < 2; i++) {
        weir_redis_source_config sc = src_cfg("in", "g", i ? "b" : "a");
        sc.batch = 20;
        sc.checkpoint_every = 40;
        sc.end_idle_ms = 600;
        p[i] =
            start(weir_seq2(source("src", &sc), weir_sink("ids", WEIR_VARSIZE, ids_fn, &seen[i])),
                  i ? WEIR_EXEC_THREADS : WEIR_EXEC_POOL);
    }
    /* fed while both read, so that both get a share */
    for (int i = 0; i < N; i += 100) {
        fill(c, "in", i, 100, in + i);
        sleep_ms(5);
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(weir_pipeline_join(p[i]), 0, "%s", weir_pipeline_error(p[i]));
        weir_pipeline_destroy(p[i]);
    }
    cr_expect(seen[0].n > 0 && seen[1].n > 0, "one consumer got nothing: %zu / %zu", seen[0].n,
              seen[1].n);
    expect_exactly_once(seen, 2, in, N);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    free(seen[0].ids);
    free(seen[1].ids);
    redisFree(c);
}

Test(redis, entries_pending_for_a_dead_consumer_are_claimed)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 400, DEAD = 120 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    freeReplyObject(redisCommand(c, "XGROUP CREATE in g 0"));
    /* "dead" reads DEAD entries and never acknowledges them */
    redisReply *r = redisCommand(c, "XREADGROUP GROUP g dead COUNT %d STREAMS in >", DEAD);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    cr_assert_eq(xpending(c, "in", "g"), DEAD);

    ids_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL};
    weir_redis_source_config sc = src_cfg("in", "g", "alive");
    sc.claim_idle_ms = 400; /* the dead entries are younger at start: claimed later */
    sc.checkpoint_every = 25;
    sc.end_idle_ms = 300;
    uint64_t t0 = now_ms();
    weir_pipeline *p;
    int rc = run_mode(weir_seq2(source("src", &sc), weir_sink("ids", WEIR_VARSIZE, ids_fn, &seen)),
                      WEIR_EXEC_POOL, &p);
    cr_assert_eq(rc, 0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    cr_expect(now_ms() - t0 >= 300, "ended before the dead entries were claimable");
    expect_exactly_once(&seen, 1, in, N);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    free(seen.ids);
    redisFree(c);
}

Test(redis, a_restarted_consumer_rereads_its_own_pending_entries_first)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 100, MINE = 30 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    freeReplyObject(redisCommand(c, "XGROUP CREATE in g 0"));
    freeReplyObject(redisCommand(c, "XREADGROUP GROUP g c1 COUNT %d STREAMS in >", MINE));
    ids_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.claim_idle_ms = 0; /* no claims: only its own history */
    sc.batch = 7;
    sc.checkpoint_every = 10;
    weir_pipeline *p;
    cr_assert_eq(
        run_mode(weir_seq2(source("src", &sc), weir_sink("ids", WEIR_VARSIZE, ids_fn, &seen)),
                 WEIR_EXEC_POOL, &p),
        0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    cr_assert_eq(seen.n, N);
    for (int i = 0; i < N; i++) /* its own MINE first, then the rest, in order */
        cr_assert_str_eq(seen.ids[i], in[i].id);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    free(seen.ids);
    redisFree(c);
}

Test(redis, with_checkpoints_entries_are_acknowledged_only_after_they_reached_the_sink)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 200, EVERY = 10 };
    fill(c, "in", 0, N, NULL);
    gate g = {0, 0};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.batch = 16;
    sc.checkpoint_every = EVERY;
    sc.end_idle_ms = 200;
    weir_pipeline *p =
        start(weir_seq2(source("src", &sc), weir_sink("slow", WEIR_VARSIZE, gate_fn, &g)),
              WEIR_EXEC_POOL);
    /* the gate is shut: entries are read (pending) and none acknowledged */
    WAIT_FOR(xpending(c, "in", "g") > 0, 5000);
    sleep_ms(200);
    long long pend = xpending(c, "in", "g");
    cr_assert(pend > 0, "nothing read");
    cr_expect_eq(atomic_load(&g.seen), 0);
    /* everything read is pending: acknowledged = 0 */
    redisReply *r = redisCommand(c, "XINFO GROUPS in");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    freeReplyObject(r);

    /* let 35 through: acknowledged never exceeds what reached the sink, and
     * the barriers after 10, 20 and 30 complete */
    atomic_store(&g.allow, 35);
    uint64_t until = now_ms() + 3000;
    long long read_total = 0;
    while (now_ms() < until) {
        /* acknowledged = delivered - pending; delivered from XINFO */
        redisReply *x = redisCommand(c, "XINFO GROUPS in");
        redisReply *grp = x->element[0];
        long long pending = -1, entries_read = -1;
        for (size_t k = 0; k + 1 < grp->elements; k += 2) {
            if (strcmp(grp->element[k]->str, "pending") == 0)
                pending = grp->element[k + 1]->integer;
            if (strcmp(grp->element[k]->str, "entries-read") == 0)
                entries_read = grp->element[k + 1]->integer;
        }
        freeReplyObject(x);
        uint64_t sunk = atomic_load(&g.seen); /* read after the server's figures */
        long long acked = entries_read - pending;
        read_total = entries_read;
        cr_assert(acked >= 0 && (uint64_t)acked <= sunk,
                  "%lld entries acknowledged, only %llu reached the sink", acked,
                  (unsigned long long)sunk);
        if (sunk == 35 && acked == 30)
            break;
        sleep_ms(5);
    }
    cr_expect_eq(read_total - xpending(c, "in", "g"), 30,
                 "acknowledged after 35 sunk (barriers every 10)");
    atomic_store(&g.allow, UINT64_MAX);
    cr_assert_eq(weir_pipeline_join(p), 0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    cr_expect_eq(atomic_load(&g.seen), N);
    cr_expect_eq(xpending(c, "in", "g"), 0, "pending at the end");
    redisFree(c);
}

Test(redis, a_stop_acknowledges_what_the_barriers_in_flight_cover)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 100 };
    fill(c, "in", 0, N, NULL);
    gate g = {0, 0};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.checkpoint_every = 10; /* N is a multiple: the last barrier covers everything */
    sc.end_idle_ms = 0;
    sc.drain_ms = 3000;
    weir_pipeline *p =
        start(weir_seq2(source("src", &sc), weir_sink("slow", WEIR_VARSIZE, gate_fn, &g)),
              WEIR_EXEC_POOL);
    WAIT_FOR(xpending(c, "in", "g") == N, 5000);
    sleep_ms(100);
    cr_assert_eq(xpending(c, "in", "g"), N, "all read, none acknowledged (the sink holds them)");
    cr_assert_eq(weir_pipeline_stop(p), 0);
    atomic_store(&g.allow, UINT64_MAX); /* the stop drains: every record reaches the sink */
    cr_assert_eq(weir_pipeline_join(p), 0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    cr_expect_eq(atomic_load(&g.seen), N);
    cr_expect_eq(xpending(c, "in", "g"), 0, "the barriers completed during the drain");
    redisFree(c);
}

Test(redis, many_entries_between_barriers_are_acknowledged_in_chunks)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 10000 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    ids_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.checkpoint_every = 9000; /* more ids than the first ring, more than one XACK */
    sc.batch = 500;
    sc.claim_idle_ms = 0;
    weir_pipeline *p;
    cr_assert_eq(
        run_mode(weir_seq2(source("src", &sc), weir_sink("ids", WEIR_VARSIZE, ids_fn, &seen)),
                 WEIR_EXEC_POOL, &p),
        0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    expect_exactly_once(&seen, 1, in, N);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    free(seen.ids);
    redisFree(c);
}

Test(redis, time_based_checkpoints_acknowledge_a_quiet_stream)
{
    NEED_SERVER();
    redisContext *c = conn();
    fill(c, "in", 0, 50, NULL);
    gate g = {0, UINT64_MAX};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.checkpoint_ms = 50;
    sc.end_idle_ms = 0; /* runs until stopped */
    weir_pipeline *p = start(
        weir_seq2(source("src", &sc), weir_sink("s", WEIR_VARSIZE, gate_fn, &g)), WEIR_EXEC_POOL);
    WAIT_FOR(atomic_load(&g.seen) == 50 && xpending(c, "in", "g") == 0, 5000);
    cr_expect_eq(atomic_load(&g.seen), 50);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    cr_assert_eq(weir_pipeline_stop(p), 0);
    cr_assert_eq(weir_pipeline_join(p), 0, "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    redisFree(c);
}

Test(redis, without_checkpoints_nothing_is_ever_pending)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 300 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    ids_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.max_entries = N; /* ends after N */
    sc.end_idle_ms = 0;
    weir_pipeline *p;
    cr_assert_eq(
        run_mode(weir_seq2(source("src", &sc), weir_sink("ids", WEIR_VARSIZE, ids_fn, &seen)),
                 WEIR_EXEC_POOL, &p),
        0);
    weir_pipeline_destroy(p);
    expect_exactly_once(&seen, 1, in, N);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    free(seen.ids);
    redisFree(c);
}

Test(redis, ack_after_emit_acknowledges_each_batch_once_emitted)
{
    NEED_SERVER();
    redisContext *c = conn();
    enum { N = 300 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    ids_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.ack_after_emit = true;
    sc.batch = 32;
    weir_pipeline *p;
    cr_assert_eq(
        run_mode(weir_seq2(source("src", &sc), weir_sink("ids", WEIR_VARSIZE, ids_fn, &seen)),
                 WEIR_EXEC_POOL, &p),
        0);
    weir_pipeline_destroy(p);
    expect_exactly_once(&seen, 1, in, N);
    cr_expect_eq(xpending(c, "in", "g"), 0);
    /* read without NOACK: the group counted them as delivered and acknowledged */
    redisReply *r = redisCommand(c, "XINFO GROUPS in");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    freeReplyObject(r);
    free(seen.ids);
    redisFree(c);
}

Test(redis, a_server_down_at_start_is_a_clear_error_naming_term_and_address)
{
    int port = redis_server_free_port(); /* nothing listens there */
    char url[64], addr[32];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    weir_redis_source_config sc;
    weir_redis_source_config_init(&sc);
    sc.url = url;
    sc.stream = "s";
    sc.group = "g";
    uint64_t t0 = now_ms();
    weir_pipeline *p;
    int r = run_mode(weir_seq2(source("the-source", &sc), weir_stop()), WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, -ECONNREFUSED, "%d", r);
    const char *msg = weir_pipeline_error(p);
    cr_expect(strstr(msg, "the-source") && strstr(msg, addr) && strstr(msg, "cannot connect"), "%s",
              msg);
    weir_pipeline_destroy(p);
    cr_expect(now_ms() - t0 < 2000, "took %llu ms", (unsigned long long)(now_ms() - t0));

    weir_redis_sink_config k;
    weir_redis_sink_config_init(&k);
    k.url = url;
    k.stream = "s";
    weir_bytes one = {"x", 1};
    r = run_mode(
        weir_seq2(weir_array_source("arr", &one, 1, WEIR_VARSIZE), weir_redis_sink("the-sink", &k)),
        WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, -ECONNREFUSED, "%d", r);
    cr_expect(strstr(weir_pipeline_error(p), "the-sink"), "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
}

Test(redis, a_server_killed_mid_run_fails_the_pipeline_after_the_retry_time)
{
    NEED_SERVER();
    redisContext *c = conn();
    fill(c, "in", 0, 10, NULL);
    redisFree(c);
    gate g = {0, UINT64_MAX};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.end_idle_ms = 0;
    sc.retry_ms = 800;
    sc.checkpoint_every = 5;
    weir_pipeline *p =
        start(weir_seq2(source("the-source", &sc), weir_sink("s", WEIR_VARSIZE, gate_fn, &g)),
              WEIR_EXEC_POOL);
    WAIT_FOR(atomic_load(&g.seen) == 10, 5000);
    cr_assert_eq(atomic_load(&g.seen), 10);
    redis_server_kill(&srv);
    uint64_t t0 = now_ms();
    int r = weir_pipeline_join_for(p, 5000000000ull);
    uint64_t took = now_ms() - t0;
    cr_assert_neq(r, -ETIMEDOUT, "join hung");
    cr_expect_eq(r, -ENOTCONN, "%d", r);
    const char *msg = weir_pipeline_error(p);
    cr_expect(strstr(msg, "the-source") && strstr(msg, srv.url + 8) &&
                  strstr(msg, "could not reconnect within 800 ms"),
              "%s", msg);
    cr_expect(took >= 600 && took < 3000, "failed %llu ms after the kill",
              (unsigned long long)took);
    weir_pipeline_destroy(p);
}

/* int64 -> its decimal text (bytes valid until the next call). */
static void to_text(void *state, const void *in, void *out)
{
    char *buf = state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    weir_bytes *b = out;
    b->len = (size_t)snprintf(buf, 32, "%lld", (long long)v);
    b->data = buf;
}

Test(redis, a_sink_whose_server_is_killed_fails_after_the_retry_time)
{
    NEED_SERVER();
    weir_redis_sink_config k;
    weir_redis_sink_config_init(&k);
    k.url = srv.url;
    k.stream = "out";
    k.retry_ms = 500;
    static char buf[32];
    /* an endless source: the sink writes until the server dies */
    weir_pipeline *p = start(WEIR_SEQ(weir_counter_source("n", 0),
                                      weir_map("text", sizeof(int64_t), WEIR_VARSIZE, to_text, buf),
                                      weir_redis_sink("the-sink", &k)),
                             WEIR_EXEC_POOL);
    redisContext *c = conn();
    WAIT_FOR(xlen(c, "out") > 1000, 5000);
    redisFree(c);
    redis_server_kill(&srv);
    uint64_t t0 = now_ms();
    int r = weir_pipeline_join_for(p, 5000000000ull);
    uint64_t took = now_ms() - t0;
    cr_assert_neq(r, -ETIMEDOUT, "join hung");
    cr_expect_eq(r, -ENOTCONN, "%d %s", r, weir_pipeline_error(p));
    cr_expect(strstr(weir_pipeline_error(p), "the-sink"), "%s", weir_pipeline_error(p));
    cr_expect(took >= 400 && took < 3000, "failed %llu ms after the kill",
              (unsigned long long)took);
    weir_pipeline_destroy(p);
}

Test(redis, a_server_restarted_mid_run_is_reconnected_to)
{
    NEED_SERVER();
    redisContext *c = conn();
    fill(c, "in", 0, 20, NULL);
    redisFree(c);
    gate g = {0, UINT64_MAX};
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.end_idle_ms = 0;
    sc.max_entries = 30;
    sc.retry_ms = 5000;
    weir_pipeline *p = start(
        weir_seq2(source("src", &sc), weir_sink("s", WEIR_VARSIZE, gate_fn, &g)), WEIR_EXEC_POOL);
    WAIT_FOR(atomic_load(&g.seen) == 20, 5000);
    cr_assert_eq(atomic_load(&g.seen), 20);
    redis_server_kill(&srv);
    sleep_ms(300);
    cr_assert_eq(redis_server_restart(&srv), 0);
    c = conn();
    fill(c, "in", 100, 10, NULL); /* an empty server: the group comes back with MKSTREAM */
    int r = weir_pipeline_join_for(p, 10000000000ull);
    cr_assert_eq(r, 0, "%d %s", r, weir_pipeline_error(p));
    cr_expect_eq(atomic_load(&g.seen), 30);
    weir_pipeline_destroy(p);
    redisFree(c);
}

static void stop_while_blocked(int how)
{
    NEED_SERVER();
    weir_redis_source_config sc = src_cfg("empty", "g", "c1");
    sc.end_idle_ms = 0;
    sc.block_ms = 100000; /* a long read: the interrupt must cut it short */
    sc.checkpoint_every = 10;
    gate g = {0, UINT64_MAX};
    weir_pipeline *p = start(
        weir_seq2(source("src", &sc), weir_sink("s", WEIR_VARSIZE, gate_fn, &g)), WEIR_EXEC_HYBRID);
    sleep_ms(350); /* in XREADGROUP ... BLOCK by now */
    uint64_t t0 = now_ms();
    if (how == 0)
        cr_assert_eq(weir_pipeline_stop(p), 0);
    else if (how == 1)
        cr_assert_eq(weir_pipeline_cancel(p), 0);
    int r = how == 2 ? 0 : weir_pipeline_join(p);
    weir_pipeline_destroy(p);
    uint64_t took = now_ms() - t0;
    cr_expect_eq(r, how == 1 ? -ECANCELED : 0, "%d", r);
    cr_expect(took < 80, "join took %llu ms", (unsigned long long)took);
}

Test(redis, stop_while_blocked_in_xreadgroup_returns_quickly)
{
    stop_while_blocked(0);
}
Test(redis, cancel_while_blocked_in_xreadgroup_returns_quickly)
{
    stop_while_blocked(1);
}
Test(redis, destroy_while_blocked_in_xreadgroup_returns_quickly)
{
    stop_while_blocked(2);
}

Test(redis, password_from_the_environment)
{
    NEED_SERVER("--requirepass", "s3cret", );
    redisContext *c = redis_server_connect(&srv);
    freeReplyObject(redisCommand(c, "AUTH s3cret"));
    fill(c, "in", 0, 5, NULL);
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.password_env = "WEIR_TEST_REDIS_PASSWORD";
    sc.max_entries = 5;
    sc.end_idle_ms = 0;
    setenv("WEIR_TEST_REDIS_PASSWORD", "s3cret", 1);
    gate g = {0, UINT64_MAX};
    weir_pipeline *p;
    int r = run_mode(weir_seq2(source("src", &sc), weir_sink("s", WEIR_VARSIZE, gate_fn, &g)),
                     WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, 0, "%s", weir_pipeline_error(p));
    cr_expect_eq(atomic_load(&g.seen), 5);
    weir_pipeline_destroy(p);

    setenv("WEIR_TEST_REDIS_PASSWORD", "wrong", 1);
    r = run_mode(weir_seq2(source("src", &sc), weir_stop()), WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, -EACCES, "%d", r);
    cr_expect(strstr(weir_pipeline_error(p), "AUTH"), "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);

    unsetenv("WEIR_TEST_REDIS_PASSWORD");
    r = run_mode(weir_seq2(source("src", &sc), weir_stop()), WEIR_EXEC_POOL, &p);
    cr_expect_eq(r, -EINVAL, "%d", r);
    cr_expect(strstr(weir_pipeline_error(p), "WEIR_TEST_REDIS_PASSWORD"), "%s",
              weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    redisFree(c);
}

Test(redis, unix_socket_url)
{
    NEED_SERVER("unix", );
    redisContext *c = conn();
    enum { N = 50 };
    static test_entry in[N];
    fill(c, "in", 0, N, in);
    char url[400];
    snprintf(url, sizeof url, "unix:%s", srv.unix_path);
    weir_redis_source_config sc = src_cfg("in", "g", "c1");
    sc.url = url;
    weir_redis_sink_config k;
    weir_redis_sink_config_init(&k);
    k.url = url;
    k.stream = "out";
    k.format = WEIR_REDIS_SINK_ENTRY;
    weir_pipeline *p;
    cr_assert_eq(
        run_mode(weir_seq2(source("src", &sc), weir_redis_sink("out", &k)), WEIR_EXEC_POOL, &p), 0,
        "%s", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    entries out = xrange(c, "out");
    cr_assert_eq(out.n, N);
    for (int i = 0; i < N; i++)
        cr_assert(same_entry(&out.recs[i], &in[i], false));
    entries_free(&out);
    redisFree(c);
}
