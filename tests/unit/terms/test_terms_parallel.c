/*
 * Data-parallel terms (weir_parallel): ordered output equal to the serial
 * term's, unordered output a permutation, filters and flat-maps, fusion with
 * a serial tail, errors, cancel, end of stream, bounds, compile errors, in
 * every execution mode and at several worker counts and widths.
 */
#include <time.h>

#include "helpers.h"

static weir_term *weir_seq3(weir_term *a, weir_term *b, weir_term *c)
{
    weir_term *t[3] = {a, b, c};
    return weir_seq(3, t);
}

/* A per-record cost that varies wildly from record to record (so batches
 * finish out of order), deterministic in the record. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void spin_ns(uint64_t ns)
{
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < ns)
        ;
}

static void cost(int64_t v)
{
    uint64_t h = mix((uint64_t)v);
    if (h % 97 == 0)
        spin_ns(20000 + h % 30000); /* now and then a slow record */
}

static void work_map(void *st, const void *in, void *out)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    cost(v);
    v = v * 3 + 1;
    memcpy(out, &v, sizeof v);
}

static bool work_keep(void *st, const void *in)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    cost(v);
    return v % 3 != 0;
}

/* flat-map: record v becomes v % 4 records v*10, v*10+1, ... */
static int work_flat(void *st, const void *in, weir_emit *e)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    cost(v);
    for (int64_t k = 0; k < v % 4; k++) {
        int64_t o = v * 10 + k;
        int r = weir_emit_record(e, &o);
        if (r < 0)
            return r;
    }
    return 0;
}

static weir_runtime *make_rt(unsigned workers)
{
    weir_config c;
    weir_config_init(&c);
    c.workers = workers;
    c.affinity = WEIR_AFFINITY_NONE;
    c.print_stats = false;
    weir_runtime *r = NULL;
    cr_assert_eq(weir_runtime_create(&c, &r), 0, "runtime: %s", weir_last_error());
    return r;
}

typedef enum { T_MAP, T_FILTER, T_FLAT, T_CHAIN } shape;

static weir_term *par_of(shape sh, unsigned width, weir_order ord)
{
    switch (sh) {
    case T_MAP:
        return weir_parallel_order(weir_map("m", 8, 8, work_map, NULL), width, ord);
    case T_FILTER:
        return weir_parallel_order(weir_filter("f", 8, work_keep, NULL), width, ord);
    case T_FLAT:
        return weir_parallel_order(weir_function("fm", 8, 8, work_flat, NULL), width, ord);
    case T_CHAIN:
        /* a fused run: filter, flat-map, map */
        return weir_parallel_order(weir_seq3(weir_filter("f", 8, work_keep, NULL),
                                             weir_function("fm", 8, 8, work_flat, NULL),
                                             weir_map("m", 8, 8, work_map, NULL)),
                                   width, ord);
    }
    return NULL;
}

/* The serial reference of each shape. */
static size_t expect(shape sh, int64_t n, int64_t *out)
{
    size_t k = 0;
    for (int64_t v = 0; v < n; v++) {
        int64_t x = v;
        if ((sh == T_FILTER || sh == T_CHAIN) && x % 3 == 0)
            continue;
        if (sh == T_MAP) {
            out[k++] = x * 3 + 1;
        } else if (sh == T_FILTER) {
            out[k++] = x;
        } else {
            for (int64_t j = 0; j < x % 4; j++)
                out[k++] = sh == T_FLAT ? x * 10 + j : (x * 10 + j) * 3 + 1;
        }
    }
    return k;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void check_shape(shape sh, unsigned workers, unsigned width, weir_exec_mode m,
                        weir_order ord, int64_t n, unsigned batch)
{
    weir_runtime *r = make_rt(workers);
    int64_t *want = malloc(sizeof(int64_t) * (size_t)(n * 3 + 1));
    size_t nw = expect(sh, n, want);
    weir_collector col;
    cr_assert_eq(weir_collector_init(&col, 8), 0);
    weir_term *t = weir_seq3(weir_range_source("src", 0, n, 1), par_of(sh, width, ord),
                             weir_collect("out", &col));
    weir_pipeline_config c = cfg_of(m, batch, 0);
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "create: %s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "run: %s", weir_pipeline_error(p));
    cr_assert_eq(col.count, nw,
                 "shape %d workers %u width %u mode %s order %d: %zu records, want %zu", sh,
                 workers, width, weir_exec_mode_name(m), ord, col.count, nw);
    int64_t *got = (int64_t *)col.data;
    if (ord == WEIR_UNORDERED && nw > 0) {
        qsort(got, nw, 8, cmp64);
        qsort(want, nw, 8, cmp64);
    }
    for (size_t i = 0; i < nw; i++)
        cr_assert_eq(
            got[i], want[i], "shape %d workers %u width %u mode %s: record %zu is %lld, want %lld",
            sh, workers, width, weir_exec_mode_name(m), i, (long long)got[i], (long long)want[i]);
    weir_pipeline_destroy(p);
    weir_collector_deinit(&col);
    free(want);
    weir_runtime_destroy(r);
}

Test(parallel, ordered_output_equals_the_serial_terms_for_map_filter_flatmap_and_chains)
{
    const shape shapes[] = {T_MAP, T_FILTER, T_FLAT, T_CHAIN};
    for (unsigned si = 0; si < 4; si++)
        for (unsigned workers = 1; workers <= 4; workers++)
            for (unsigned width = 1; width <= 4; width++)
                check_shape(shapes[si], workers, width, WEIR_EXEC_POOL, WEIR_ORDERED, 20000, 64);
}

Test(parallel, every_mode_gives_the_same_ordered_output)
{
    for (int mi = 0; mi < 3; mi++) {
        check_shape(T_CHAIN, 2, 3, all_modes[mi], WEIR_ORDERED, 20000, 0);
        check_shape(T_MAP, 3, 0, all_modes[mi], WEIR_ORDERED, 20000, 16);
    }
}

Test(parallel, unordered_output_is_a_permutation_with_every_record_once)
{
    for (int mi = 0; mi < 3; mi++)
        for (unsigned width = 1; width <= 4; width += 3) {
            check_shape(T_MAP, 2, width, all_modes[mi], WEIR_UNORDERED, 20000, 32);
            check_shape(T_FLAT, 2, width, all_modes[mi], WEIR_UNORDERED, 20000, 32);
        }
}

Test(parallel, empty_and_single_record_inputs_end)
{
    for (int mi = 0; mi < 3; mi++)
        for (int64_t n = 0; n <= 2; n++) {
            check_shape(T_MAP, 2, 2, all_modes[mi], WEIR_ORDERED, n, 0);
            check_shape(T_FILTER, 2, 2, all_modes[mi], WEIR_UNORDERED, n, 0);
        }
}

/* A serial tail fused behind the replicas: a sink checking the order. */
static void inc_map(void *st, const void *in, void *out)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, 8);
    cost(v);
    v++;
    memcpy(out, &v, 8);
}

static void dec_map(void *st, const void *in, void *out)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, 8);
    v--;
    memcpy(out, &v, 8);
}

Test(parallel, adjacent_parallel_terms_fuse_and_the_serial_tail_restores_order)
{
    weir_runtime *r = make_rt(3);
    for (int mi = 0; mi < 3; mi++) {
        seq_check chk;
        weir_term *t = weir_seq(
            5, (weir_term *[]){weir_range_source("src", 0, 50000, 1),
                               weir_parallel(weir_map("inc", 8, 8, inc_map, NULL), 2),
                               weir_parallel(weir_map("inc2", 8, 8, inc_map, NULL), 3),
                               weir_map("dec", 8, 8, dec_map, NULL), seq_sink("chk", &chk, 1)});
        weir_pipeline_config c = cfg_of(all_modes[mi], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
        cr_assert_eq(chk.count, 50000);
        cr_assert_eq(chk.bad, 0, "mode %s: %llu records out of order",
                     weir_exec_mode_name(all_modes[mi]), (unsigned long long)chk.bad);
        weir_term_stats a, b, d;
        weir_pipeline_term_stats(p, 1, &a);
        weir_pipeline_term_stats(p, 2, &b);
        weir_pipeline_term_stats(p, 3, &d);
        cr_assert_eq(a.stage, b.stage, "adjacent parallel terms share a stage");
        cr_assert_eq(a.width, 3, "the widest width wins (%u)", a.width);
        cr_assert_eq(a.records_in, 50000);
        cr_assert_eq(b.records_out, 50000);
        cr_assert_eq(d.records_in, 50000);
        cr_assert(a.batches > 0);
        cr_assert(a.max_in_flight >= 1 && a.max_in_flight <= 3);
        cr_assert(a.max_reorder_depth <= 6, "reorder depth %llu above 2 x width",
                  (unsigned long long)a.max_reorder_depth);
        if (all_modes[mi] != WEIR_EXEC_THREADS)
            cr_assert_eq(d.stage, a.stage, "the serial tail fuses behind the replicas");
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(r);
}

/* Errors: one replica fails, the pipeline reports the term. */
static int fail_at(void *st, const void *in, weir_emit *e)
{
    int64_t v;
    memcpy(&v, in, 8);
    if (v == *(int64_t *)st)
        return -EIO;
    return weir_emit_record(e, &v);
}

Test(parallel, an_error_in_one_replica_stops_everything_and_names_the_term)
{
    weir_runtime *r = make_rt(2);
    for (int mi = 0; mi < 3; mi++) {
        int64_t at = 7777;
        _Atomic uint64_t cnt = 0;
        weir_term *t =
            weir_seq3(weir_range_source("src", 0, 1000000, 1),
                      weir_parallel(weir_seq2(weir_map("slow", 8, 8, work_map, NULL),
                                              weir_function("breaker", 8, 8, fail_at, &at)),
                                    4),
                      count_sink("n", 8, &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        int err = weir_pipeline_run(p);
        cr_assert_eq(err, -EIO, "mode %s: %d", weir_exec_mode_name(all_modes[mi]), err);
        cr_assert(strstr(weir_pipeline_error(p), "breaker"), "message: %s", weir_pipeline_error(p));
        cr_assert(cnt < 1000000);
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(r);
}

/* Cancel with slow replicas returns within about one callback. */
static void slow_map(void *st, const void *in, void *out)
{
    (void)st;
    spin_ns(2000000); /* 2 ms a record */
    memcpy(out, in, 8);
}

Test(parallel, cancel_returns_within_about_one_callback)
{
    weir_runtime *r = make_rt(2);
    for (int mi = 0; mi < 3; mi++) {
        _Atomic uint64_t cnt = 0;
        weir_term *t = weir_seq3(weir_range_source("src", 0, 100000, 1),
                                 weir_parallel(weir_map("slow", 8, 8, slow_map, NULL), 2),
                                 count_sink("n", 8, &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(p), 0);
        spin_ns(30000000);
        uint64_t t0 = now_ns();
        weir_pipeline_cancel(p);
        int err = weir_pipeline_join_for(p, 5000000000ull);
        uint64_t took = now_ns() - t0;
        cr_assert_eq(err, -ECANCELED, "mode %s: %d", weir_exec_mode_name(all_modes[mi]), err);
        /* a batch of 256 records would be 0.5 s; one callback is 2 ms.
         * Generous for a loaded machine, far below a batch. */
        cr_assert(took < 350000000ull, "mode %s: join took %llu ms after cancel",
                  weir_exec_mode_name(all_modes[mi]), (unsigned long long)(took / 1000000));
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(r);
}

/* A slow sink: the reorder buffer and the streams stay within bounds. */
static int slow_sink(void *st, const void *in)
{
    (void)in;
    (*(uint64_t *)st)++;
    spin_ns(2000);
    return 0;
}

Test(parallel, a_slow_sink_keeps_reorder_buffer_and_streams_bounded)
{
    weir_runtime *r = make_rt(3);
    uint64_t n = 0;
    weir_term *t = weir_seq3(weir_range_source("src", 0, 30000, 1),
                             weir_parallel(weir_map("m", 8, 8, work_map, NULL), 2),
                             weir_sink("slow", 8, slow_sink, &n));
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 32, 256);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    cr_assert_eq(n, 30000);
    weir_term_stats ts;
    weir_pipeline_term_stats(p, 1, &ts);
    cr_assert(ts.max_reorder_depth <= 4, "reorder depth %llu",
              (unsigned long long)ts.max_reorder_depth);
    cr_assert(ts.max_in_flight <= 2);
    for (unsigned i = 0; i < weir_pipeline_stream_count(p); i++) {
        weir_stream_stats ss;
        weir_pipeline_stream_stats(p, i, &ss);
        cr_assert(ss.max_depth <= ss.capacity, "stream %s depth %llu > capacity %llu", ss.name,
                  (unsigned long long)ss.max_depth, (unsigned long long)ss.capacity);
    }
    weir_pipeline_destroy(p);
    weir_runtime_destroy(r);
}

/* A flat-map with a serial tail behind it, a stream smaller than a batch:
 * a commit that fills the output part way must still be woken for the rest
 * (stress_reference found it hanging, reported as a deadlock). */
Test(parallel, a_commit_that_fills_a_small_output_resumes)
{
    weir_runtime *r = make_rt(2);
    for (int mi = 0; mi < 3; mi++)
        for (int fn = 0; fn < 2; fn++) {
            _Atomic uint64_t cnt = 0;
            weir_term *tail = fn ? weir_function("fm2", 8, 8, work_flat, NULL)
                                 : weir_map("dec", 8, 8, dec_map, NULL);
            weir_term *t = weir_seq(
                4, (weir_term *[]){weir_range_source("src", 0, 3000, 1),
                                   weir_parallel(weir_function("fm", 8, 8, work_flat, NULL), 0),
                                   tail, count_sink("n", 8, &cnt)});
            weir_pipeline_config c = cfg_of(all_modes[mi], 108, 16);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            cr_assert_eq(weir_pipeline_run(p), 0, "%s: %s", weir_exec_mode_name(all_modes[mi]),
                         weir_pipeline_error(p));
            int64_t want[3000 * 3 + 1];
            size_t nw = expect(T_FLAT, 3000, want);
            if (fn) {
                size_t n2 = 0;
                for (size_t i = 0; i < nw; i++)
                    n2 += (size_t)(want[i] % 4);
                nw = n2;
            }
            cr_assert_eq(cnt, nw, "%s: %llu records, want %zu", weir_exec_mode_name(all_modes[mi]),
                         (unsigned long long)cnt, nw);
            weir_pipeline_destroy(p);
        }
    weir_runtime_destroy(r);
}

/* Stop: every record the source emitted comes out exactly once. */
Test(parallel, stop_drains_exactly_once)
{
    weir_runtime *r = make_rt(2);
    for (int mi = 0; mi < 3; mi++) {
        seq_check chk;
        weir_term *t = weir_seq3(weir_counter_source("src", 0),
                                 weir_parallel(weir_map("m", 8, 8, dec_map, NULL), 2),
                                 seq_sink("chk", &chk, -1));
        weir_pipeline_config c = cfg_of(all_modes[mi], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(p), 0);
        /* stop once the source has emitted something (a fixed sleep saw
         * nothing yet on a loaded CI machine) */
        weir_term_stats st0;
        for (uint64_t dl = now_ns() + 5000000000ull; now_ns() < dl;) {
            weir_pipeline_term_stats(p, 0, &st0);
            if (st0.records_out >= 1000)
                break;
            spin_ns(1000000);
        }
        cr_assert_eq(weir_pipeline_stop(p), 0);
        cr_assert_eq(weir_pipeline_join(p), 0, "%s", weir_pipeline_error(p));
        weir_term_stats src;
        weir_pipeline_term_stats(p, 0, &src);
        cr_assert(chk.count > 0);
        cr_assert_eq(chk.count, src.records_out, "mode %s: sink %llu, source %llu",
                     weir_exec_mode_name(all_modes[mi]), (unsigned long long)chk.count,
                     (unsigned long long)src.records_out);
        cr_assert_eq(chk.bad, 0);
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(r);
}

Test(parallel, only_functions_maps_and_filters_can_be_replicated, .init = rt_setup,
     .fini = rt_teardown)
{
    _Atomic uint64_t cnt = 0;
    weir_term *t =
        weir_seq2(weir_range_source("src", 0, 10, 1), weir_parallel(count_sink("snk", 8, &cnt), 2));
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), -EINVAL);
    cr_assert(strstr(weir_last_error(), "sink 'snk' cannot run as replicas"), "%s",
              weir_last_error());
    weir_term_destroy(t);

    /* parallel(par(x, y)) then merge: each branch is a parallel stage of
     * its own; every record of both comes out */
    _Atomic uint64_t both = 0;
    t = weir_seq3(weir_range_source("src", 0, 5000, 1),
                  weir_parallel(weir_par(2, (weir_term *[]){weir_map("x", 8, 8, inc_map, NULL),
                                                            weir_map("y", 8, 8, dec_map, NULL)}),
                                2),
                  weir_seq2(weir_merge("mg"), count_sink("cnt", 8, &both)));
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    cr_assert_eq(both, 10000);
    weir_pipeline_destroy(p);

    cr_assert_null(weir_parallel(weir_map("a", 8, 8, dec_map, NULL), WEIR_PARALLEL_MAX_WIDTH + 1));
    cr_assert(strstr(weir_last_error(), "width"), "%s", weir_last_error());
    cr_assert_null(weir_parallel_order(weir_map("a", 8, 8, dec_map, NULL), 2, (weir_order)7));
}

/* ------------------------------------------------------------------ keyed */

typedef struct kv {
    int64_t key, val;
} kv;

#define KEYS 37

/* Shard state: per key, how many records it saw (every shard has room for
 * all keys but sees only its own). */
typedef struct kstate {
    int64_t seen[KEYS];
    int64_t total;
    unsigned shard;
    _Atomic int busy; /* a second callback at once would be a bug */
    _Atomic int overlap;
} kstate;

static uint64_t kv_key(void *arg, const void *rec)
{
    (void)arg;
    return (uint64_t)((const kv *)rec)->key;
}

/* out = (key, the n-th record of this key) */
static int kcount(void *st, const void *in, weir_emit *e)
{
    kstate *s = st;
    kv r = *(const kv *)in;
    if (atomic_fetch_add(&s->busy, 1) != 0)
        atomic_store(&s->overlap, 1);
    cost(r.val);
    r.val = ++s->seen[r.key];
    s->total++;
    atomic_fetch_sub(&s->busy, 1);
    if (r.key % 5 == 0)
        return 0; /* a filter too */
    int rc = weir_emit_record(e, &r);
    if (rc == 0 && r.key % 7 == 0)
        rc = weir_emit_record(e, &r); /* and a flat-map */
    return rc;
}

/* totals at the end: (key, -count) for each key this shard saw */
static int kfinish(void *st, weir_emit *e)
{
    kstate *s = st;
    for (int64_t k = 0; k < KEYS; k++)
        if (s->seen[k]) {
            kv r = {k, -s->seen[k]};
            int rc = weir_emit_record(e, &r);
            if (rc < 0)
                return rc;
        }
    return 0;
}

typedef struct kmake {
    kstate st[8];
    bool finish;
} kmake;

static weir_term *kmake_fn(void *arg, unsigned i)
{
    kmake *m = arg;
    memset(&m->st[i], 0, sizeof m->st[i]);
    m->st[i].shard = i;
    weir_term *t = weir_function("count", sizeof(kv), sizeof(kv), kcount, &m->st[i]);
    if (m->finish)
        t = weir_term_on_finish(t, kfinish);
    return t;
}

static int kv_cmp(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->val < y->val ? -1 : x->val > y->val;
}

static void check_keyed(unsigned workers, unsigned shards, weir_exec_mode m, weir_order ord,
                        size_t n, bool finish)
{
    weir_runtime *r = make_rt(workers);
    kv *in = malloc(n * sizeof *in);
    kv *want = malloc((2 * n + KEYS) * sizeof *want);
    int64_t seen[KEYS] = {0};
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        in[i].key = (int64_t)(mix(i) % KEYS);
        in[i].val = (int64_t)i;
        kv o = {in[i].key, ++seen[in[i].key]};
        if (o.key % 5 == 0)
            continue;
        want[nw++] = o;
        if (o.key % 7 == 0)
            want[nw++] = o;
    }
    size_t nrec = nw;
    if (finish)
        for (int64_t k = 0; k < KEYS; k++)
            if (seen[k])
                want[nw++] = (kv){k, -seen[k]};
    kmake mk = {.finish = finish};
    weir_collector col;
    cr_assert_eq(weir_collector_init(&col, sizeof(kv)), 0);
    weir_term *t = weir_seq3(weir_array_source("src", in, n, sizeof(kv)),
                             weir_keyed("by-key", shards, kv_key, NULL, kmake_fn, &mk, ord),
                             weir_collect("out", &col));
    weir_pipeline_config c = cfg_of(m, 16, 0);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "create: %s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "run: %s", weir_pipeline_error(p));
    const char *what = weir_exec_mode_name(m);
    cr_assert_eq(col.count, nw, "%s workers %u shards %u order %d: %zu records, want %zu", what,
                 workers, shards, ord, col.count, nw);
    kv *got = (kv *)col.data;
    uint64_t per_shard = 0;
    for (unsigned i = 0; i < shards; i++) {
        cr_assert_eq(mk.st[i].overlap, 0, "shard %u ran two callbacks at once", i);
        per_shard += (uint64_t)mk.st[i].total;
        weir_term_stats ts;
        cr_assert_eq(weir_pipeline_term_stats(p, 1 + i, &ts), 0);
        cr_assert_eq(ts.records_in, (uint64_t)mk.st[i].total, "shard %u stats %llu, saw %lld", i,
                     (unsigned long long)ts.records_in, (long long)mk.st[i].total);
    }
    cr_assert_eq(per_shard, n);
    if (ord == WEIR_ORDERED) {
        /* input order, then the totals shard by shard (each sorted by key) */
        for (size_t i = 0; i < nrec; i++)
            cr_assert(got[i].key == want[i].key && got[i].val == want[i].val,
                      "%s shards %u: record %zu is (%lld,%lld), want (%lld,%lld)", what, shards, i,
                      (long long)got[i].key, (long long)got[i].val, (long long)want[i].key,
                      (long long)want[i].val);
    } else {
        /* per-key order: each key's counts come 1, 2, 3, ... */
        int64_t last[KEYS] = {0};
        for (size_t i = 0; i < nrec; i++) {
            cr_assert(got[i].val > 0, "a total before the records ended");
            cr_assert(got[i].val == last[got[i].key] || got[i].val == last[got[i].key] + 1,
                      "%s: key %lld went %lld -> %lld", what, (long long)got[i].key,
                      (long long)last[got[i].key], (long long)got[i].val);
            last[got[i].key] = got[i].val;
        }
    }
    if (nw > 0) {
        qsort(got, nw, sizeof(kv), kv_cmp);
        qsort(want, nw, sizeof(kv), kv_cmp);
        cr_assert_eq(memcmp(got, want, nw * sizeof(kv)), 0, "%s: not the same records", what);
    }
    weir_pipeline_destroy(p);
    weir_collector_deinit(&col);
    free(in);
    free(want);
    weir_runtime_destroy(r);
}

Test(keyed, input_order_output_equals_the_serial_term_and_shards_never_overlap)
{
    for (unsigned workers = 1; workers <= 4; workers++)
        for (unsigned shards = 1; shards <= 4; shards++)
            check_keyed(workers, shards, WEIR_EXEC_POOL, WEIR_ORDERED, 20000, shards & 1);
}

Test(keyed, every_mode_gives_the_same_output_and_finish_totals)
{
    for (int mi = 0; mi < 3; mi++) {
        check_keyed(2, 3, all_modes[mi], WEIR_ORDERED, 20000, true);
        check_keyed(3, 8, all_modes[mi], WEIR_UNORDERED, 20000, true);
    }
}

Test(keyed, arrival_order_keeps_per_key_order)
{
    for (unsigned shards = 1; shards <= 8; shards *= 2)
        check_keyed(3, shards, WEIR_EXEC_POOL, WEIR_UNORDERED, 30000, false);
}

Test(keyed, empty_and_single_record_inputs_end)
{
    for (int mi = 0; mi < 3; mi++)
        for (size_t n = 0; n <= 2; n++)
            check_keyed(2, 3, all_modes[mi], WEIR_ORDERED, n, true);
}

static int kfail(void *st, const void *in, weir_emit *e)
{
    (void)st;
    const kv *r = in;
    if (r->val == 4321)
        return weir_emit_fail(e, -EPROTO, "bad record %lld", (long long)r->val);
    return weir_emit_record(e, in);
}

static weir_term *kfail_make(void *arg, unsigned i)
{
    (void)arg;
    char name[32];
    snprintf(name, sizeof name, "shard%u", i);
    return weir_function(name, sizeof(kv), sizeof(kv), kfail, NULL);
}

Test(keyed, an_error_in_one_shard_stops_everything_and_names_it)
{
    weir_runtime *r = make_rt(2);
    kv *in = malloc(100000 * sizeof *in);
    for (size_t i = 0; i < 100000; i++)
        in[i] = (kv){(int64_t)(i % 11), (int64_t)i};
    for (int mi = 0; mi < 3; mi++) {
        _Atomic uint64_t cnt = 0;
        weir_term *t = weir_seq3(weir_array_source("src", in, 100000, sizeof(kv)),
                                 weir_keyed("k", 3, kv_key, NULL, kfail_make, NULL, WEIR_ORDERED),
                                 count_sink("n", sizeof(kv), &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_run(p), -EPROTO);
        cr_assert(strstr(weir_pipeline_error(p), "shard") &&
                      strstr(weir_pipeline_error(p), "bad record 4321"),
                  "%s", weir_pipeline_error(p));
        weir_pipeline_destroy(p);
    }
    free(in);
    weir_runtime_destroy(r);
}

static weir_term *null_make(void *arg, unsigned i)
{
    (void)arg;
    return i == 1 ? NULL : weir_id(NULL, sizeof(kv));
}

static weir_term *mixed_make(void *arg, unsigned i)
{
    (void)arg;
    return i == 0 ? weir_id(NULL, sizeof(kv)) : weir_id(NULL, 8);
}

static weir_term *src_make(void *arg, unsigned i)
{
    (void)arg;
    (void)i;
    return weir_range_source(NULL, 0, 1, 1);
}

Test(keyed, bad_shards_are_refused_with_the_names, .init = rt_setup, .fini = rt_teardown)
{
    static const kv one = {1, 1};
    weir_pipeline *p = NULL;
    weir_term *t = weir_seq2(weir_array_source("s", &one, 1, sizeof(kv)),
                             weir_keyed("k", 3, kv_key, NULL, null_make, NULL, WEIR_ORDERED));
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), -EINVAL);
    cr_assert(strstr(weir_last_error(), "NULL for shard 1"), "%s", weir_last_error());
    weir_term_destroy(t);

    t = weir_seq2(weir_array_source("s", &one, 1, sizeof(kv)),
                  weir_keyed("k", 2, kv_key, NULL, mixed_make, NULL, WEIR_ORDERED));
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), -EINVAL);
    cr_assert(strstr(weir_last_error(), "shard 1"), "%s", weir_last_error());
    weir_term_destroy(t);

    t = weir_seq2(weir_array_source("s", &one, 1, sizeof(kv)),
                  weir_keyed("k", 2, kv_key, NULL, src_make, NULL, WEIR_ORDERED));
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), -EINVAL);
    cr_assert(strstr(weir_last_error(), "one function, map, filter or sink"), "%s",
              weir_last_error());
    weir_term_destroy(t);

    t = weir_seq2(weir_array_source("s", &one, 1, sizeof(kv)),
                  weir_parallel(weir_keyed("k", 2, kv_key, NULL, kmake_fn,
                                           &(kmake){.finish = false}, WEIR_ORDERED),
                                2));
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), -EINVAL);
    cr_assert(strstr(weir_last_error(), "cannot be replicated"), "%s", weir_last_error());
    weir_term_destroy(t);

    cr_assert_null(weir_keyed("k", 0, kv_key, NULL, kmake_fn, NULL, WEIR_ORDERED));
    cr_assert(strstr(weir_last_error(), "0 shards"), "%s", weir_last_error());
    cr_assert_null(weir_keyed("k", 2, NULL, NULL, kmake_fn, NULL, WEIR_ORDERED));
    cr_assert_null(weir_keyed("k", 2, kv_key, NULL, NULL, NULL, WEIR_ORDERED));
    cr_assert_null(
        weir_keyed("k", WEIR_KEYED_MAX_SHARDS + 1, kv_key, NULL, kmake_fn, NULL, WEIR_ORDERED));
}

/* --------------------------------------------- cancel latency, serial stages */

static int slow_sink2(void *st, const void *in)
{
    (void)in;
    (*(_Atomic uint64_t *)st)++;
    spin_ns(2000000); /* 2 ms a record */
    return 0;
}

static int fail_fast(void *st, const void *in)
{
    (void)in;
    if (++*(int *)st == 100)
        return -EIO;
    return 0;
}

/* Cancel and a failure elsewhere stop a batch of slow callbacks after the
 * current one (issue 8, item 4): a batch of 256 records of 2 ms would be
 * 0.5 s. Every mode; the sink fused behind a map (the batch path) and alone
 * behind a stream. */
Test(cancel, join_returns_within_about_one_callback_after_cancel_or_a_failure)
{
    weir_runtime *r = make_rt(2);
    for (int mi = 0; mi < 3; mi++)
        for (int form = 0; form < 3; form++) {
            _Atomic uint64_t cnt = 0;
            int fails = 0;
            weir_term *snk = weir_sink("slow", 8, slow_sink2, (void *)&cnt);
            weir_term *t;
            if (form == 0) /* src -> map -> slow sink, fused */
                t = weir_seq3(weir_range_source("src", 0, 1000000, 1),
                              weir_map("dec", 8, 8, dec_map, NULL), snk);
            else if (form == 1) /* a merge stage in front of the sink */
                t = weir_seq3(weir_range_source("src", 0, 1000000, 1), weir_merge("m"), snk);
            else /* a failing sibling branch */
                t = weir_seq2(
                    weir_range_source("src", 0, 1000000, 1),
                    weir_par(2, (weir_term *[]){snk, weir_sink("bad", 8, fail_fast, &fails)}));
            weir_pipeline_config c = cfg_of(all_modes[mi], 256, 1024);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            uint64_t t0 = now_ns();
            cr_assert_eq(weir_pipeline_start(p), 0);
            /* (a failing sibling: timed from the start, it fails at once) */
            for (uint64_t dl = now_ns() + 3000000000ull; form < 2 && cnt < 3 && now_ns() < dl;)
                spin_ns(100000);
            if (form < 2)
                t0 = now_ns();
            if (form < 2)
                weir_pipeline_cancel(p);
            int err = weir_pipeline_join_for(p, 5000000000ull);
            uint64_t took = now_ns() - t0;
            cr_assert_eq(err, form < 2 ? -ECANCELED : -EIO, "%s form %d: %d",
                         weir_exec_mode_name(all_modes[mi]), form, err);
            cr_assert(took < 350000000ull, "%s form %d: join took %llu ms",
                      weir_exec_mode_name(all_modes[mi]), form,
                      (unsigned long long)(took / 1000000));
            weir_pipeline_destroy(p);
        }
    weir_runtime_destroy(r);
}

/* Threads mode runs without a runtime: width 0 then means one replica, and
 * keyed shards get their threads all the same. */
Test(parallel, threads_mode_without_a_runtime)
{
    weir_pipeline_config c = cfg_of(WEIR_EXEC_THREADS, 32, 0);
    seq_check chk;
    weir_term *t =
        weir_seq3(weir_range_source("src", 0, 5000, 1),
                  weir_parallel(weir_map("inc", 8, 8, inc_map, NULL), 0), seq_sink("chk", &chk, 1));
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(NULL, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    cr_assert_eq(chk.count, 5000);
    cr_assert_eq(chk.bad, 0);
    weir_pipeline_destroy(p);

    kv in[300];
    for (int i = 0; i < 300; i++)
        in[i] = (kv){i % 7, i};
    kmake mk = {.finish = true};
    _Atomic uint64_t cnt = 0;
    t = weir_seq3(weir_array_source("src", in, 300, sizeof(kv)),
                  weir_keyed("k", 3, kv_key, NULL, kmake_fn, &mk, WEIR_ORDERED),
                  count_sink("n", sizeof(kv), &cnt));
    cr_assert_eq(weir_pipeline_create(NULL, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    cr_assert(cnt > 0);
    weir_pipeline_destroy(p);
}

/* The stream feeding a parallel stage holds every batch it may claim
 * (2 x width x B), whatever the configured capacity: with 1024 records a
 * 16-wide farm could claim only 4 batches of 256. */
Test(parallel, the_input_stream_holds_every_batch_in_flight)
{
    weir_runtime *r = make_rt(2);
    _Atomic uint64_t cnt = 0;
    weir_term *t = weir_seq3(weir_range_source("src", 0, 100000, 1),
                             weir_parallel(weir_map("inc", 8, 8, inc_map, NULL), 16),
                             count_sink("n", 8, &cnt));
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 256, 1024);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
    weir_stream_stats ss;
    cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
    cr_assert_str_eq(ss.name, "src");
    cr_assert_geq(ss.capacity, 2 * 16 * 256, "capacity %llu", (unsigned long long)ss.capacity);
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    cr_assert_eq(cnt, 100000);
    weir_term_stats ts;
    weir_pipeline_term_stats(p, 1, &ts);
    cr_assert_leq(ts.max_in_flight, 16);
    weir_pipeline_destroy(p);
    weir_runtime_destroy(r);
}

/* Threads mode: a parallel term's own threads count among the pipeline's. */
Test(parallel, threads_mode_counts_the_replica_threads)
{
    weir_pipeline_config c = cfg_of(WEIR_EXEC_THREADS, 64, 0);
    seq_check chk;
    weir_term *t =
        weir_seq3(weir_range_source("src", 0, 20000, 1),
                  weir_parallel(weir_map("inc", 8, 8, inc_map, NULL), 3), seq_sink("chk", &chk, 1));
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(NULL, t, &c, &p), 0, "%s", weir_last_error());
    weir_pipeline_stats before;
    weir_pipeline_stats_get(p, &before);
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    cr_assert_eq(chk.bad, 0);
    weir_pipeline_stats ps;
    weir_pipeline_stats_get(p, &ps);
    cr_assert_eq(ps.threads, before.threads + 3, "threads %u, stage threads %u", ps.threads,
                 before.threads);
    weir_pipeline_destroy(p);
}
