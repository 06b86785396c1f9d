/*
 * Dynamic sub-pipelines per key (weir_spawn, issue 12): every key's outputs
 * against a sequential reference computed here (a filter, a flat-map, a map,
 * the built-in running mean and a tagging map per key, with a finish
 * callback), input order with WEIR_ORDERED and per-key order with
 * WEIR_UNORDERED, in the three execution modes at 1, 2 and 4 workers and
 * 1, 3 and 16 shards; key churn through the idle timeout; the live bound
 * (evict the least recently used, or fail); errors inside sub-pipelines and
 * bad factories; cancel, stop and destroy with sub-pipelines live; records
 * of any size; monitoring (weir_pipeline_spawn_list, live / spawned / ended)
 * and bad arguments.
 *
 * Every sub-pipeline's tagging map has a free function that counts, so each
 * test also checks that every sub-pipeline the factory made was freed
 * (W.freed == W.calls after destroy); run it under ASan for the rest.
 */
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "helpers.h"

#define MAXKEYS 4096

typedef struct kv {
    int64_t key, val;
} kv;

/* An output of the tagging map: the n-th record of generation `gen` of
 * `key`'s sub-pipeline (gen counts the factory's calls for the key), with
 * the running mean of its values. A finish marker has n = -(count + 1). */
typedef struct orec {
    int64_t key, gen, n;
    double mean;
} orec;

/* What the sub-pipelines did, shared by the factory and the callbacks.
 * gen[key] is written only by the factory, which runs on the key's shard. */
typedef struct world {
    _Atomic uint64_t calls;     /* factory calls */
    _Atomic uint64_t freed;     /* tagging states freed */
    _Atomic uint64_t processed; /* records into sub-pipelines */
    int64_t gen[MAXKEYS];
} world;

static world W;

static void world_reset(void)
{
    atomic_store(&W.calls, 0);
    atomic_store(&W.freed, 0);
    atomic_store(&W.processed, 0);
    memset(W.gen, 0, sizeof W.gen);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
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

static uint64_t kv_key(void *arg, const void *rec)
{
    (void)arg;
    return (uint64_t)((const kv *)rec)->key;
}

/* ------------------------------------------------ the standard sub-pipeline */

/* keep: drops values divisible by 5, and counts every record it sees */
static bool keep_fn(void *st, const void *in)
{
    (void)st;
    atomic_fetch_add_explicit(&W.processed, 1, memory_order_relaxed);
    return ((const kv *)in)->val % 5 != 0;
}

/* dup: a flat-map, twice for values divisible by 7 */
static int dup_fn(void *st, const void *in, weir_emit *e)
{
    (void)st;
    const kv *r = in;
    int rc = weir_emit_record(e, r);
    if (rc == 0 && r->val % 7 == 0)
        rc = weir_emit_record(e, r);
    return rc;
}

static void val_fn(void *st, const void *in, void *out)
{
    (void)st;
    double d = (double)((const kv *)in)->val;
    memcpy(out, &d, sizeof d);
}

typedef struct tag {
    int64_t key, gen, n;
    double mean;
} tag;

static void tag_fn(void *st, const void *in, void *out)
{
    tag *t = st;
    memcpy(&t->mean, in, sizeof t->mean);
    orec o = {t->key, t->gen, ++t->n, t->mean};
    memcpy(out, &o, sizeof o);
}

static int tag_finish(void *st, weir_emit *e)
{
    tag *t = st;
    orec o = {t->key, t->gen, -(t->n + 1), t->mean};
    return weir_emit_record(e, &o);
}

static void tag_free(void *st)
{
    atomic_fetch_add_explicit(&W.freed, 1, memory_order_relaxed);
    free(st);
}

static tag *new_tag(uint64_t key)
{
    cr_assert_lt(key, MAXKEYS);
    tag *t = calloc(1, sizeof *t);
    t->key = (int64_t)key;
    t->gen = ++W.gen[key];
    atomic_fetch_add_explicit(&W.calls, 1, memory_order_relaxed);
    return t;
}

/* keep -> dup -> val -> mean (built-in) -> tag (+ finish) */
static weir_term *std_make(void *arg, uint64_t key)
{
    (void)arg;
    tag *t = new_tag(key);
    weir_term *tt = weir_term_on_free(
        weir_term_on_finish(weir_map("tag", sizeof(double), sizeof(orec), tag_fn, t), tag_finish),
        tag_free);
    return WEIR_SEQ(weir_filter("keep", sizeof(kv), keep_fn, NULL),
                    weir_function("dup", sizeof(kv), sizeof(kv), dup_fn, NULL),
                    weir_map("val", sizeof(kv), sizeof(double), val_fn, NULL), weir_mean("mean"),
                    tt);
}

static weir_spawn_config spawn_cfg(unsigned shards, weir_order ord)
{
    weir_spawn_config c;
    weir_spawn_config_init(&c);
    c.shards = shards;
    c.order = ord;
    return c;
}

/* -------------------------------------------------------------- reference */

/* The sequential reference: one table of sub-pipelines, least recently used
 * first out when a bound is given (that is one shard's behaviour: the
 * bounded references are only compared with shards = 1). */
typedef struct sim_key {
    bool live;
    int64_t gen, n;
    double mean;
    uint64_t wn, last;
} sim_key;

typedef struct sim {
    size_t max_live;
    size_t live;
    uint64_t stamp, created;
    sim_key k[MAXKEYS];
    orec *out;
    size_t nout, cap;
} sim;

static sim *sim_new(size_t max_live)
{
    sim *s = calloc(1, sizeof *s);
    s->max_live = max_live;
    return s;
}

static void sim_free(sim *s)
{
    free(s->out);
    free(s);
}

static void sim_push(sim *s, orec o)
{
    if (s->nout == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->out = realloc(s->out, s->cap * sizeof *s->out);
    }
    s->out[s->nout++] = o;
}

static void sim_end(sim *s, int64_t key)
{
    sim_key *k = &s->k[key];
    sim_push(s, (orec){key, k->gen, -(k->n + 1), k->mean});
    k->live = false;
    s->live--;
}

static int64_t sim_lru(const sim *s)
{
    int64_t best = -1;
    for (int64_t i = 0; i < MAXKEYS; i++)
        if (s->k[i].live && (best < 0 || s->k[i].last < s->k[best].last))
            best = i;
    return best;
}

static void sim_rec(sim *s, kv r)
{
    sim_key *k = &s->k[r.key];
    if (!k->live) {
        if (s->max_live && s->live >= s->max_live)
            sim_end(s, sim_lru(s));
        k->live = true;
        k->gen++;
        k->n = 0;
        k->mean = 0;
        k->wn = 0;
        s->live++;
        s->created++;
    }
    k->last = s->stamp++;
    if (r.val % 5 == 0)
        return;
    for (int rep = r.val % 7 == 0 ? 2 : 1; rep > 0; rep--) {
        double x = (double)r.val;
        k->wn++;
        k->mean += (x - k->mean) / (double)k->wn; /* as weir_mean (Welford) */
        sim_push(s, (orec){r.key, k->gen, ++k->n, k->mean});
    }
}

/* The end of the input: every live one ends, least recently used first. */
static void sim_finish(sim *s)
{
    for (int64_t key; (key = sim_lru(s)) >= 0;)
        sim_end(s, key);
}

static sim *sim_run(const kv *in, size_t n, size_t max_live)
{
    sim *s = sim_new(max_live);
    for (size_t i = 0; i < n; i++)
        sim_rec(s, in[i]);
    sim_finish(s);
    return s;
}

/* --------------------------------------------------------------- checking */

static bool orec_eq(orec a, orec b)
{
    return a.key == b.key && a.gen == b.gen && a.n == b.n && a.mean == b.mean;
}

#define OREC_FMT     "(key %lld gen %lld n %lld mean %.17g)"
#define OREC_ARGS(o) (long long)(o).key, (long long)(o).gen, (long long)(o).n, (o).mean

static void check_exact(const orec *got, size_t ng, const orec *want, size_t nw, const char *what)
{
    cr_assert_eq(ng, nw, "%s: %zu outputs, want %zu", what, ng, nw);
    for (size_t i = 0; i < nw; i++)
        cr_assert(orec_eq(got[i], want[i]), "%s: output %zu is " OREC_FMT ", want " OREC_FMT, what,
                  i, OREC_ARGS(got[i]), OREC_ARGS(want[i]));
}

/* The records (markers left out) in the same order. */
static void check_records_in_order(const orec *got, size_t ng, const orec *want, size_t nw,
                                   const char *what)
{
    size_t i = 0, j = 0;
    for (;; i++, j++) {
        while (i < ng && got[i].n < 0)
            i++;
        while (j < nw && want[j].n < 0)
            j++;
        if (i == ng || j == nw)
            break;
        cr_assert(orec_eq(got[i], want[j]), "%s: record %zu is " OREC_FMT ", want " OREC_FMT, what,
                  j, OREC_ARGS(got[i]), OREC_ARGS(want[j]));
    }
    cr_assert(i == ng && j == nw, "%s: the records end at %zu of %zu, want %zu of %zu", what, i, ng,
              j, nw);
}

typedef struct ix {
    orec o;
    size_t i;
} ix;

static int ix_cmp(const void *a, const void *b)
{
    const ix *x = a, *y = b;
    if (x->o.key != y->o.key)
        return x->o.key < y->o.key ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static ix *by_key(const orec *v, size_t n)
{
    ix *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (ix){v[i], i};
    qsort(x, n, sizeof *x, ix_cmp);
    return x;
}

/* Each key's outputs (records and markers) the same, in the same order. */
static void check_per_key(const orec *got, size_t ng, const orec *want, size_t nw, const char *what)
{
    cr_assert_eq(ng, nw, "%s: %zu outputs, want %zu", what, ng, nw);
    ix *g = by_key(got, ng), *w = by_key(want, nw);
    for (size_t i = 0; i < nw; i++)
        cr_assert(orec_eq(g[i].o, w[i].o),
                  "%s: output %zu of key %lld is " OREC_FMT " (at %zu), want " OREC_FMT, what, i,
                  (long long)w[i].o.key, OREC_ARGS(g[i].o), g[i].i, OREC_ARGS(w[i].o));
    free(g);
    free(w);
}

/* Without idle timeout or bound, finish markers come after every record. */
static void check_markers_last(const orec *got, size_t ng, const char *what)
{
    size_t first_marker = ng, last_record = 0;
    bool any = false;
    for (size_t i = 0; i < ng; i++) {
        if (got[i].n < 0 && first_marker == ng)
            first_marker = i;
        if (got[i].n > 0)
            last_record = i, any = true;
    }
    cr_assert(!any || first_marker == ng || first_marker > last_record,
              "%s: a finish marker at %zu before record %zu", what, first_marker, last_record);
}

/* The shards of spawn term `name`: live / spawned / ended summed; the input
 * records summed. */
typedef struct spawn_sum {
    uint64_t live, spawned, ended, in;
    unsigned shards;
} spawn_sum;

static spawn_sum sum_stats(const weir_pipeline *p, const char *name)
{
    spawn_sum s = {0};
    for (unsigned i = 0;; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s[%u]", name, i);
        int k = weir_pipeline_find_term(p, nm);
        if (k < 0)
            break;
        weir_term_stats ts;
        cr_assert_eq(weir_pipeline_term_stats(p, (unsigned)k, &ts), 0);
        cr_assert_str_eq(ts.kind, "spawn shard");
        s.live += ts.live;
        s.spawned += ts.spawned;
        s.ended += ts.ended;
        s.in += ts.records_in;
        s.shards++;
    }
    return s;
}

static kv *random_keys(size_t n, uint64_t keys, uint64_t seed)
{
    kv *in = malloc((n ? n : 1) * sizeof *in);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        /* a skew: a quarter of the records on a few hot keys */
        uint64_t r = rnd(&x);
        uint64_t k = r % 4 == 0 ? (r >> 8) % (keys < 4 ? keys : 4) : (r >> 8) % keys;
        in[i] = (kv){(int64_t)k, (int64_t)i};
    }
    return in;
}

/* ------------------------------------------------ exact outputs per config */

static void check_std(unsigned workers, unsigned shards, weir_exec_mode m, weir_order ord, size_t n,
                      uint64_t keys, uint64_t seed, bool no_runtime)
{
    char what[128];
    snprintf(what, sizeof what, "%s workers %u shards %u %s n %zu", weir_exec_mode_name(m), workers,
             shards, ord == WEIR_ORDERED ? "ordered" : "unordered", n);
    world_reset();
    weir_runtime *r = no_runtime ? NULL : make_rt(workers);
    kv *in = random_keys(n, keys, seed);
    sim *ref = sim_run(in, n, 0);
    weir_collector col;
    cr_assert_eq(weir_collector_init(&col, sizeof(orec)), 0);
    weir_spawn_config sc = spawn_cfg(shards, ord);
    weir_term *t =
        WEIR_SEQ(weir_array_source("src", in, n, sizeof(kv)),
                 weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                 weir_collect("out", &col));
    weir_pipeline_config c = cfg_of(m, 32, 0);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s: create: %s", what, weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "%s: run: %s", what, weir_pipeline_error(p));
    const orec *got = col.data;
    if (ord == WEIR_ORDERED && shards == 1)
        check_exact(got, col.count, ref->out, ref->nout, what);
    if (ord == WEIR_ORDERED)
        check_records_in_order(got, col.count, ref->out, ref->nout, what);
    check_per_key(got, col.count, ref->out, ref->nout, what);
    check_markers_last(got, col.count, what);
    spawn_sum ss = sum_stats(p, "sp");
    cr_assert_eq(ss.shards, shards, "%s", what);
    cr_assert_eq(ss.in, n, "%s: shards saw %llu records", what, (unsigned long long)ss.in);
    cr_assert_eq(ss.live, 0, "%s", what);
    cr_assert_eq(ss.spawned, ref->created, "%s: spawned %llu, want %llu", what,
                 (unsigned long long)ss.spawned, (unsigned long long)ref->created);
    cr_assert_eq(ss.ended, ss.spawned, "%s", what);
    cr_assert_eq(W.calls, ref->created, "%s", what);
    size_t cnt = 99;
    cr_assert_eq(weir_pipeline_spawn_list(p, "sp", NULL, 0, &cnt), 0);
    cr_assert_eq(cnt, 0, "%s: %zu live after the end", what, cnt);
    weir_pipeline_destroy(p);
    cr_assert_eq(W.freed, W.calls, "%s: %llu of %llu sub-pipelines freed", what,
                 (unsigned long long)W.freed, (unsigned long long)W.calls);
    weir_collector_deinit(&col);
    sim_free(ref);
    free(in);
    weir_runtime_destroy(r);
}

Test(spawn, ordered_outputs_equal_the_reference_in_every_mode_worker_and_shard_count)
{
    static const unsigned wk[] = {1, 2, 4}, sh[] = {1, 3, 16};
    for (int mi = 0; mi < 3; mi++)
        for (int wi = 0; wi < 3; wi++)
            for (int si = 0; si < 3; si++)
                check_std(wk[wi], sh[si], all_modes[mi], WEIR_ORDERED, 3000, 40,
                          (uint64_t)(mi * 9 + wi * 3 + si + 1), false);
}

Test(spawn, unordered_outputs_keep_per_key_order)
{
    static const unsigned wk[] = {1, 2, 4}, sh[] = {1, 3, 16};
    for (int mi = 0; mi < 3; mi++)
        for (int wi = 0; wi < 3; wi++)
            check_std(wk[wi], sh[(mi + wi) % 3], all_modes[mi], WEIR_UNORDERED, 3000, 40,
                      (uint64_t)(100 + mi * 3 + wi), false);
}

Test(spawn, empty_and_single_record_inputs_end_in_every_mode)
{
    for (int mi = 0; mi < 3; mi++)
        for (size_t n = 0; n <= 2; n++)
            check_std(2, 3, all_modes[mi], WEIR_ORDERED, n, 5, 7, false);
}

Test(spawn, many_keys_each_with_few_records)
{
    for (int mi = 0; mi < 3; mi++)
        check_std(2, 16, all_modes[mi], WEIR_ORDERED, 6000, 3000, 11, false);
}

Test(spawn, threads_mode_without_a_runtime)
{
    check_std(1, 3, WEIR_EXEC_THREADS, WEIR_ORDERED, 2000, 30, 5, true);
}

/* ------------------------------------------------- a sub-pipeline of sinks */

/* Sum and count per key, written by the key's sink only. */
typedef struct acc {
    int64_t sum[MAXKEYS], count[MAXKEYS], finished[MAXKEYS];
} acc;

static acc A;

typedef struct sink_st {
    int64_t key, n, sum;
} sink_st;

static int acc_sink(void *st, const void *in)
{
    sink_st *s = st;
    const kv *r = in;
    if (r->key != s->key)
        return -EPROTO; /* a record of another key */
    s->n++;
    s->sum += r->val;
    A.sum[s->key] += r->val;
    A.count[s->key]++;
    return 0;
}

static int acc_finish(void *st, weir_emit *e)
{
    sink_st *s = st;
    if (e != NULL)
        return -EPROTO; /* sinks get no emit */
    A.finished[s->key]++;
    return 0;
}

static void sink_free(void *st)
{
    atomic_fetch_add_explicit(&W.freed, 1, memory_order_relaxed);
    free(st);
}

static weir_term *sink_make(void *arg, uint64_t key)
{
    (void)arg;
    atomic_fetch_add_explicit(&W.calls, 1, memory_order_relaxed);
    sink_st *s = calloc(1, sizeof *s);
    s->key = (int64_t)key;
    return WEIR_SEQ(
        weir_filter("keep", sizeof(kv), keep_fn, NULL),
        weir_term_on_free(
            weir_term_on_finish(weir_sink("acc", sizeof(kv), acc_sink, s), acc_finish), sink_free));
}

Test(spawn, sub_pipelines_ending_in_sinks_with_no_output)
{
    const size_t n = 5000;
    kv *in = random_keys(n, 50, 3);
    int64_t sum[50] = {0}, count[50] = {0}, seen[50] = {0};
    for (size_t i = 0; i < n; i++) {
        seen[in[i].key] = 1;
        if (in[i].val % 5 != 0)
            sum[in[i].key] += in[i].val, count[in[i].key]++;
    }
    for (int mi = 0; mi < 3; mi++)
        for (unsigned shards = 1; shards <= 16; shards += 15) {
            world_reset();
            memset(&A, 0, sizeof A);
            weir_runtime *r = make_rt(2);
            weir_spawn_config sc = spawn_cfg(shards, WEIR_ORDERED);
            weir_term *t =
                WEIR_SEQ(weir_array_source("src", in, n, sizeof(kv)),
                         weir_spawn("sp", sizeof(kv), 0, kv_key, NULL, sink_make, NULL, &sc));
            weir_pipeline_config c = cfg_of(all_modes[mi], 64, 0);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
            for (int k = 0; k < 50; k++) {
                cr_assert_eq(A.sum[k], sum[k], "%s key %d", weir_exec_mode_name(all_modes[mi]), k);
                cr_assert_eq(A.count[k], count[k]);
                cr_assert_eq(A.finished[k], seen[k], "key %d finished %lld times", k,
                             (long long)A.finished[k]);
            }
            spawn_sum ss = sum_stats(p, "sp");
            cr_assert_eq(ss.in, n);
            cr_assert_eq(ss.spawned, W.calls);
            cr_assert_eq(ss.ended, ss.spawned);
            cr_assert_eq(ss.live, 0);
            weir_pipeline_destroy(p);
            cr_assert_eq(W.freed, W.calls);
            weir_runtime_destroy(r);
        }
    free(in);
}

/* -------------------------------------------------- the idle timeout: churn */

/* A blocking source that emits the input in bursts (one emit each, so that
 * a burst is one batch), waits until the sub-pipelines saw all of it, then
 * stays silent for `gap_ns`, longer than the idle timeout: every key that
 * comes back after a gap finds its sub-pipeline ended and gets a new one
 * (with a fresh running mean), and no key is ended inside a burst (the
 * shard reads the clock once per batch). */
typedef struct paced {
    const kv *in;
    const size_t *ends;
    size_t nbursts;
    uint64_t gap_ns;
} paced;

static int paced_fn(void *st, weir_emit *e)
{
    paced *ps = st;
    size_t at = 0;
    for (size_t b = 0; b < ps->nbursts; b++) {
        int r = weir_emit_records(e, ps->in + at, ps->ends[b] - at);
        if (r < 0)
            return r;
        at = ps->ends[b];
        uint64_t dl = now_ns() + 10000000000ull;
        while (atomic_load(&W.processed) < at) {
            if (weir_emit_stopping(e))
                return -ECANCELED;
            if (now_ns() > dl)
                return weir_emit_fail(e, -ETIMEDOUT, "burst %zu not processed", b);
            sleep_ns(100000);
        }
        sleep_ns(ps->gap_ns);
    }
    return 0;
}

Test(spawn, idle_keys_end_and_come_back_with_a_new_sub_pipeline)
{
    enum { BURSTS = 5, PER = 120, KEYS = 12 };
    kv in[BURSTS * PER];
    size_t ends[BURSTS];
    uint64_t x = 77;
    /* each burst draws from a different half of the keys, so some keys skip
     * bursts and some come back */
    for (size_t b = 0; b < BURSTS; b++) {
        for (size_t j = 0; j < PER; j++) {
            size_t i = b * PER + j;
            int64_t k = (int64_t)((rnd(&x) % (KEYS / 2)) + (b % 3) * (KEYS / 4));
            in[i] = (kv){k, (int64_t)i};
        }
        ends[b] = (b + 1) * PER;
    }
    /* the reference: at each burst boundary every live sub-pipeline has been
     * idle for longer than the timeout */
    sim *ref = sim_new(0);
    for (size_t b = 0; b < BURSTS; b++) {
        for (int64_t k = 0; k < KEYS; k++)
            if (ref->k[k].live)
                sim_end(ref, k);
        for (size_t i = b ? ends[b - 1] : 0; i < ends[b]; i++)
            sim_rec(ref, in[i]);
    }
    sim_finish(ref);
    cr_assert_gt(ref->created, KEYS, "the input should make keys come back");
    for (int mi = 0; mi < 3; mi++)
        for (unsigned shards = 1; shards <= 3; shards += 2) {
            char what[64];
            snprintf(what, sizeof what, "%s shards %u", weir_exec_mode_name(all_modes[mi]), shards);
            world_reset();
            weir_runtime *r = make_rt(2);
            paced ps = {in, ends, BURSTS, 60000000};
            weir_collector col;
            cr_assert_eq(weir_collector_init(&col, sizeof(orec)), 0);
            weir_spawn_config sc = spawn_cfg(shards, WEIR_ORDERED);
            sc.idle_ns = 20000000; /* 20 ms, the gaps 60 ms */
            weir_term *t = WEIR_SEQ(
                weir_blocking_source("src", sizeof(kv), paced_fn, &ps),
                weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                weir_collect("out", &col));
            weir_pipeline_config c = cfg_of(all_modes[mi], 256, 1024);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            cr_assert_eq(weir_pipeline_run(p), 0, "%s: %s", what, weir_pipeline_error(p));
            check_records_in_order(col.data, col.count, ref->out, ref->nout, what);
            check_per_key(col.data, col.count, ref->out, ref->nout, what);
            spawn_sum ss = sum_stats(p, "sp");
            cr_assert_eq(ss.spawned, ref->created, "%s: spawned %llu, want %llu", what,
                         (unsigned long long)ss.spawned, (unsigned long long)ref->created);
            cr_assert_eq(ss.ended, ss.spawned, "%s", what);
            cr_assert_eq(ss.live, 0, "%s", what);
            cr_assert_eq(W.calls, ref->created, "%s", what);
            weir_pipeline_destroy(p);
            cr_assert_eq(W.freed, W.calls, "%s", what);
            weir_collector_deinit(&col);
            weir_runtime_destroy(r);
        }
    sim_free(ref);
}

/* ------------------------------------------------------------ the live bound */

Test(spawn, the_live_bound_evicts_the_least_recently_used_in_exact_order)
{
    const size_t n = 3000;
    kv *in = random_keys(n, 10, 21);
    for (size_t max_live = 1; max_live <= 7; max_live += 3) {
        sim *ref = sim_run(in, n, max_live);
        cr_assert_gt(ref->created, 10, "the bound should evict");
        for (int mi = 0; mi < 3; mi++)
            for (unsigned workers = 1; workers <= 2; workers++)
                for (int o = 0; o < 2; o++) {
                    char what[96];
                    snprintf(what, sizeof what, "%s workers %u max_live %zu %s",
                             weir_exec_mode_name(all_modes[mi]), workers, max_live,
                             o ? "unordered" : "ordered");
                    world_reset();
                    weir_runtime *r = make_rt(workers);
                    weir_collector col;
                    cr_assert_eq(weir_collector_init(&col, sizeof(orec)), 0);
                    weir_spawn_config sc = spawn_cfg(1, o ? WEIR_UNORDERED : WEIR_ORDERED);
                    sc.max_live = max_live;
                    sc.policy = WEIR_SPAWN_EVICT;
                    weir_term *t = WEIR_SEQ(weir_array_source("src", in, n, sizeof(kv)),
                                            weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL,
                                                       std_make, NULL, &sc),
                                            weir_collect("out", &col));
                    weir_pipeline_config c = cfg_of(all_modes[mi], 32, 0);
                    weir_pipeline *p;
                    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
                    cr_assert_eq(weir_pipeline_run(p), 0, "%s: %s", what, weir_pipeline_error(p));
                    /* one shard: its evictions are the whole order */
                    check_exact(col.data, col.count, ref->out, ref->nout, what);
                    spawn_sum ss = sum_stats(p, "sp");
                    cr_assert_eq(ss.spawned, ref->created, "%s", what);
                    cr_assert_eq(ss.ended, ss.spawned, "%s", what);
                    weir_pipeline_destroy(p);
                    cr_assert_eq(W.freed, W.calls, "%s", what);
                    weir_collector_deinit(&col);
                    weir_runtime_destroy(r);
                }
        sim_free(ref);
    }
    free(in);
}

/* Several shards: each keeps ceil(max_live / shards). Every key's outputs
 * are still its records' in input order, generation after generation: each
 * generation's records as a fresh reference gives them, then its marker
 * with its count. */
static void per_key_generations(const orec *got, size_t ng, const kv *in, size_t n,
                                const char *what)
{
    ix *g = by_key(got, ng);
    size_t at = 0;
    sim *s = sim_new(0);
    kv *mine = malloc((n ? n : 1) * sizeof *mine);
    for (int64_t key = 0; key < MAXKEYS && at < ng; key++) {
        size_t nm = 0;
        for (size_t i = 0; i < n; i++)
            if (in[i].key == key)
                mine[nm++] = in[i];
        size_t next = 0; /* the next of the key's records to feed */
        int64_t gen = 0;
        while (at < ng && g[at].o.key == key) {
            gen++;
            sim_key *k = &s->k[key];
            *k = (sim_key){.live = true, .gen = gen};
            s->live = 1;
            s->nout = 0;
            size_t first = at;
            while (at < ng && g[at].o.key == key && g[at].o.n > 0)
                at++;
            cr_assert(at < ng && g[at].o.key == key, "%s: key %lld gen %lld has no marker", what,
                      (long long)key, (long long)gen);
            int64_t want_count = -g[at].o.n - 1;
            /* records that emit nothing (filtered) may sit at either side
             * of a generation's end: they change nothing */
            while (next < nm && (int64_t)s->nout < want_count)
                sim_rec(s, mine[next++]);
            cr_assert_eq((int64_t)s->nout, want_count,
                         "%s: key %lld gen %lld: %zu records, want %lld", what, (long long)key,
                         (long long)gen, s->nout, (long long)want_count);
            cr_assert_eq(at - first, (size_t)want_count, "%s: key %lld gen %lld", what,
                         (long long)key, (long long)gen);
            for (size_t j = 0; j < (size_t)want_count; j++)
                cr_assert(orec_eq(g[first + j].o, s->out[j]),
                          "%s: key %lld gen %lld record %zu is " OREC_FMT ", want " OREC_FMT, what,
                          (long long)key, (long long)gen, j, OREC_ARGS(g[first + j].o),
                          OREC_ARGS(s->out[j]));
            cr_assert_eq(g[at].o.gen, gen, "%s: key %lld marker of gen %lld, want %lld", what,
                         (long long)key, (long long)g[at].o.gen, (long long)gen);
            at++;
        }
        for (; next < nm; next++)
            cr_assert_eq(mine[next].val % 5, 0, "%s: key %lld: record %lld has no output", what,
                         (long long)key, (long long)mine[next].val);
    }
    cr_assert_eq(at, ng, "%s: outputs of keys out of range", what);
    free(mine);
    sim_free(s);
    free(g);
}

Test(spawn, the_live_bound_over_several_shards_keeps_each_key_in_order)
{
    const size_t n = 4000;
    kv *in = random_keys(n, 60, 5);
    for (int mi = 0; mi < 3; mi++) {
        world_reset();
        weir_runtime *r = make_rt(2);
        weir_collector col;
        cr_assert_eq(weir_collector_init(&col, sizeof(orec)), 0);
        weir_spawn_config sc = spawn_cfg(3, WEIR_ORDERED);
        sc.max_live = 8; /* 3 per shard */
        sc.policy = WEIR_SPAWN_EVICT;
        weir_term *t =
            WEIR_SEQ(weir_array_source("src", in, n, sizeof(kv)),
                     weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                     weir_collect("out", &col));
        weir_pipeline_config c = cfg_of(all_modes[mi], 32, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
        per_key_generations(col.data, col.count, in, n, weir_exec_mode_name(all_modes[mi]));
        spawn_sum ss = sum_stats(p, "sp");
        cr_assert_eq(ss.spawned, W.calls);
        cr_assert_gt(ss.spawned, 60, "the bound should have evicted");
        cr_assert_eq(ss.ended, ss.spawned);
        weir_pipeline_destroy(p);
        cr_assert_eq(W.freed, W.calls);
        weir_collector_deinit(&col);
        weir_runtime_destroy(r);
    }
    free(in);
}

Test(spawn, the_live_bound_with_the_fail_policy_is_enospc_naming_the_key)
{
    static const int64_t keys[] = {1, 2, 3, 4, 5, 1, 2, 3, 5, 4, 16, 1};
    kv in[12];
    for (int i = 0; i < 12; i++)
        in[i] = (kv){keys[i], i + 1};
    for (int mi = 0; mi < 3; mi++) {
        world_reset();
        weir_runtime *r = make_rt(2);
        _Atomic uint64_t cnt = 0;
        weir_spawn_config sc = spawn_cfg(1, WEIR_ORDERED);
        sc.max_live = 5;
        sc.policy = WEIR_SPAWN_FAIL;
        weir_term *t =
            WEIR_SEQ(weir_array_source("src", in, 12, sizeof(kv)),
                     weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                     count_sink("n", sizeof(orec), &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 4, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_run(p), -ENOSPC, "%s", weir_pipeline_error(p));
        const char *e = weir_pipeline_error(p);
        cr_assert(strstr(e, "key 16") && strstr(e, "sp[0]") && strstr(e, "bound of 5"), "%s", e);
        cr_assert_eq(W.calls, 5);
        weir_pipeline_destroy(p);
        cr_assert_eq(W.freed, 5);
        weir_runtime_destroy(r);
    }
}

/* ------------------------------------------------- errors in sub-pipelines */

static int bad_which; /* 0: -EIO at 777, 1: weir_emit_fail at 1234, 2: finish of key 9 */

static int bad_fn(void *st, const void *in, weir_emit *e)
{
    (void)st;
    const kv *r = in;
    if (r->val == 777 && bad_which == 0)
        return -EIO;
    if (r->val == 1234 && bad_which == 1)
        return weir_emit_fail(e, -EPROTO, "bad record %lld", (long long)r->val);
    return weir_emit_record(e, r);
}

static int bad_finish(void *st, weir_emit *e)
{
    (void)e;
    return (intptr_t)st == 9 ? -EIO : 0;
}

static weir_term *bad_make(void *arg, uint64_t key)
{
    (void)arg;
    tag *t = new_tag(key);
    weir_term *f = bad_which == 2
                       ? weir_term_on_finish(weir_function("bad", sizeof(kv), sizeof(kv), dup_fn,
                                                           (void *)(intptr_t)key),
                                             bad_finish)
                       : weir_function("bad", sizeof(kv), sizeof(kv), bad_fn, NULL);
    return WEIR_SEQ(
        f, weir_map("val", sizeof(kv), sizeof(double), val_fn, NULL),
        weir_term_on_free(weir_map("tag", sizeof(double), sizeof(orec), tag_fn, t), tag_free));
}

Test(spawn, an_error_inside_a_sub_pipeline_names_the_key_and_the_term)
{
    const size_t n = 5000;
    kv *in = random_keys(n, 30, 9);
    for (int which = 0; which < 3; which++)
        for (int mi = 0; mi < 3; mi++) {
            world_reset();
            bad_which = which;
            weir_runtime *r = make_rt(2);
            _Atomic uint64_t cnt = 0;
            weir_spawn_config sc = spawn_cfg(3, WEIR_ORDERED);
            weir_term *t = WEIR_SEQ(
                weir_array_source("src", in, n, sizeof(kv)),
                weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, bad_make, NULL, &sc),
                count_sink("n", sizeof(orec), &cnt));
            weir_pipeline_config c = cfg_of(all_modes[mi], 32, 0);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            int err = weir_pipeline_run(p);
            const char *e = weir_pipeline_error(p);
            char key[32];
            snprintf(key, sizeof key, "key %lld",
                     which == 2 ? 9ll : (long long)in[which == 0 ? 777 : 1234].key);
            cr_assert_eq(err, which == 1 ? -EPROTO : -EIO, "%s case %d: %d %s",
                         weir_exec_mode_name(all_modes[mi]), which, err, e);
            cr_assert(strstr(e, key) && strstr(e, "'bad'") && strstr(e, "sp["), "case %d: %s",
                      which, e);
            if (which == 1)
                cr_assert(strstr(e, "bad record 1234"), "%s", e);
            weir_pipeline_destroy(p);
            cr_assert_eq(W.freed, W.calls, "case %d: %llu of %llu freed", which,
                         (unsigned long long)W.freed, (unsigned long long)W.calls);
            weir_runtime_destroy(r);
        }
    free(in);
}

/* Factories that return what a sub-pipeline cannot be. */
static void kv2o(void *st, const void *in, void *out)
{
    (void)st;
    const kv *r = in;
    orec o = {r->key, 0, r->val, 0};
    memcpy(out, &o, sizeof o);
}

static int bad_factory; /* which mistake, see bad_tree */
static weir_term *shared_term;

static weir_term *bad_tree(void *arg, uint64_t key)
{
    (void)arg;
    atomic_fetch_add(&W.calls, 1);
    switch (bad_factory) {
    case 0: /* NULL, only for key 3 */
        return key == 3 ? NULL : weir_map("m", sizeof(kv), sizeof(orec), kv2o, NULL);
    case 1:
        return weir_zip("z", 0, NULL, NULL);
    case 2:
        return weir_range_source("src2", 0, 10, 1);
    case 3: /* a source inside the chain */
        return WEIR_SEQ(weir_id("i", sizeof(kv)), weir_range_source("src2", 0, 10, 1));
    case 4: /* a sink, but the spawn term has an output */
        return weir_sink("s", sizeof(kv), acc_sink, NULL);
    case 5: /* the first term's input is not the spawn term's */
        return weir_map("m8", 8, sizeof(orec), kv2o, NULL);
    case 6: /* the last term's output is not the spawn term's */
        return weir_map("m8", sizeof(kv), 8, val_fn, NULL);
    case 7: /* sizes inside the chain disagree */
        return WEIR_SEQ(weir_map("a", sizeof(kv), 8, val_fn, NULL),
                        weir_map("b", sizeof(kv), sizeof(orec), kv2o, NULL));
    case 8: /* variable-size input to a fixed-size spawn */
        return weir_map("v", WEIR_VARSIZE, sizeof(orec), kv2o, NULL);
    case 9: { /* WEIR_SPAWN_MAX_CHAIN + 1 terms */
        weir_term *ts[WEIR_SPAWN_MAX_CHAIN + 1];
        for (unsigned i = 0; i < WEIR_SPAWN_MAX_CHAIN; i++)
            ts[i] = weir_id(NULL, sizeof(kv));
        ts[WEIR_SPAWN_MAX_CHAIN] = weir_map("last", sizeof(kv), sizeof(orec), kv2o, NULL);
        return weir_seq(WEIR_SPAWN_MAX_CHAIN + 1, ts);
    }
    case 10: /* a NULL inside a seq */
        return WEIR_SEQ(weir_id("i", sizeof(kv)), NULL);
    case 11: /* the same term for every key: the second is -EBUSY */
        if (!shared_term)
            shared_term = weir_map("shared", sizeof(kv), sizeof(orec), kv2o, NULL);
        return shared_term;
    case 12: /* a merge */
        return weir_merge("mg");
    }
    return NULL;
}

/* The cases of bad_tree: the error, a piece of the message. */
static const struct {
    int err;
    const char *text;
} bad_cases[] = {
    {-EINVAL, "factory returned NULL"},
    {-EINVAL, "cannot be part of a sub-pipeline"},
    {-EINVAL, "cannot be part of a sub-pipeline"},
    {-EINVAL, "cannot be part of a sub-pipeline"},
    {-EINVAL, "cannot be part of a sub-pipeline"},
    {-EINVAL, "expects"},
    {-EINVAL, "produces"},
    {-EINVAL, "expects"},
    {-EINVAL, "variable-size"},
    {-EINVAL, "more than"},
    {-EINVAL, "NULL"},
    {-EBUSY, "another tree"},
    {-EINVAL, "cannot be part of a sub-pipeline"},
};

Test(spawn, bad_factory_trees_fail_the_pipeline_naming_the_key)
{
    /* keys 5, 3, 5, 3, 8, ...: the factory is called for 5 first (3 for
     * the NULL case, 3 again for the shared term's second key) */
    kv in[40];
    for (int i = 0; i < 40; i++)
        in[i] = (kv){i % 2 ? 3 : 5, i + 1};
    in[4].key = 8;
    for (size_t bc = 0; bc < sizeof bad_cases / sizeof bad_cases[0]; bc++)
        for (int mi = 0; mi < 3; mi++) {
            world_reset();
            bad_factory = (int)bc;
            shared_term = NULL;
            weir_runtime *r = make_rt(2);
            _Atomic uint64_t cnt = 0;
            weir_spawn_config sc = spawn_cfg(1, WEIR_ORDERED);
            weir_term *t = WEIR_SEQ(
                weir_array_source("src", in, 40, sizeof(kv)),
                weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, bad_tree, NULL, &sc),
                count_sink("n", sizeof(orec), &cnt));
            weir_pipeline_config c = cfg_of(all_modes[mi], 8, 0);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            int err = weir_pipeline_run(p);
            const char *e = weir_pipeline_error(p);
            const char *key = bc == 0 || bc == 11 ? "key 3" : "key 5";
            cr_assert_eq(err, bad_cases[bc].err, "case %zu %s: %d %s", bc,
                         weir_exec_mode_name(all_modes[mi]), err, e);
            cr_assert(strstr(e, key) && strstr(e, bad_cases[bc].text), "case %zu: %s", bc, e);
            weir_pipeline_destroy(p);
            weir_runtime_destroy(r);
        }
}

/* The longest chain there may be works. */
static weir_term *long_make(void *arg, uint64_t key)
{
    (void)arg;
    tag *t = new_tag(key);
    weir_term *ts[WEIR_SPAWN_MAX_CHAIN];
    ts[0] = weir_filter("keep", sizeof(kv), keep_fn, NULL);
    ts[1] = weir_function("dup", sizeof(kv), sizeof(kv), dup_fn, NULL);
    for (unsigned i = 2; i < WEIR_SPAWN_MAX_CHAIN - 3; i++)
        ts[i] = weir_id(NULL, sizeof(kv));
    ts[WEIR_SPAWN_MAX_CHAIN - 3] = weir_map("val", sizeof(kv), sizeof(double), val_fn, NULL);
    ts[WEIR_SPAWN_MAX_CHAIN - 2] = weir_mean("mean");
    ts[WEIR_SPAWN_MAX_CHAIN - 1] = weir_term_on_free(
        weir_term_on_finish(weir_map("tag", sizeof(double), sizeof(orec), tag_fn, t), tag_finish),
        tag_free);
    return weir_seq(WEIR_SPAWN_MAX_CHAIN, ts);
}

Test(spawn, a_chain_of_the_longest_length_runs)
{
    const size_t n = 2000;
    kv *in = random_keys(n, 20, 4);
    sim *ref = sim_run(in, n, 0);
    world_reset();
    weir_runtime *r = make_rt(2);
    weir_collector col;
    cr_assert_eq(weir_collector_init(&col, sizeof(orec)), 0);
    weir_spawn_config sc = spawn_cfg(1, WEIR_ORDERED);
    weir_term *t =
        WEIR_SEQ(weir_array_source("src", in, n, sizeof(kv)),
                 weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, long_make, NULL, &sc),
                 weir_collect("out", &col));
    weir_pipeline *p;
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 32, 0);
    cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
    check_exact(col.data, col.count, ref->out, ref->nout, "16 terms");
    weir_pipeline_destroy(p);
    cr_assert_eq(W.freed, W.calls);
    weir_collector_deinit(&col);
    sim_free(ref);
    free(in);
    weir_runtime_destroy(r);
}

/* -------------------------------------------- cancel, stop, destroy, live */

static void to_kv(void *st, const void *in, void *out)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    kv r = {v % 500, v};
    memcpy(out, &r, sizeof r);
}

static bool wait_processed(uint64_t n, uint64_t timeout_ns)
{
    uint64_t dl = now_ns() + timeout_ns;
    while (atomic_load(&W.processed) < n)
        if (now_ns() > dl)
            return false;
        else
            sleep_ns(200000);
    return true;
}

/* An endless source into 500 keys' sub-pipelines: cancel, or destroy while
 * running, returns at once and frees every live sub-pipeline without its
 * finish. */
Test(spawn, cancel_and_destroy_with_live_sub_pipelines_return_and_free_them)
{
    for (int how = 0; how < 2; how++)
        for (int mi = 0; mi < 3; mi++) {
            world_reset();
            weir_runtime *r = make_rt(2);
            _Atomic uint64_t cnt = 0;
            weir_spawn_config sc = spawn_cfg(4, WEIR_ORDERED);
            weir_term *t = WEIR_SEQ(
                weir_counter_source("src", 0), weir_map("kv", 8, sizeof(kv), to_kv, NULL),
                weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                count_sink("n", sizeof(orec), &cnt));
            weir_pipeline_config c = cfg_of(all_modes[mi], 64, 0);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            cr_assert_eq(weir_pipeline_start(p), 0);
            cr_assert(wait_processed(20000, 10000000000ull), "no progress");
            uint64_t t0 = now_ns();
            if (how == 0) {
                cr_assert_eq(weir_pipeline_cancel(p), 0);
                cr_assert_eq(weir_pipeline_join_for(p, 5000000000ull), -ECANCELED);
                size_t live = 0;
                cr_assert_eq(weir_pipeline_spawn_list(p, "sp", NULL, 0, &live), 0);
                spawn_sum ss = sum_stats(p, "sp");
                cr_assert_eq(ss.live, live);
                cr_assert_eq(ss.live + ss.ended, ss.spawned);
                cr_assert_eq(ss.spawned, W.calls);
            }
            weir_pipeline_destroy(p);
            uint64_t took = now_ns() - t0;
            cr_assert_lt(took, 2000000000ull, "%s: %s took %llu ms",
                         weir_exec_mode_name(all_modes[mi]), how ? "destroy" : "cancel",
                         (unsigned long long)(took / 1000000));
            cr_assert_eq(W.freed, W.calls, "%llu of %llu freed", (unsigned long long)W.freed,
                         (unsigned long long)W.calls);
            weir_runtime_destroy(r);
        }
}

/* stop: every record the source produced goes through its key's
 * sub-pipeline, and every sub-pipeline then finishes. */
Test(spawn, stop_with_live_sub_pipelines_drains_exactly_and_runs_every_finish)
{
    for (int mi = 0; mi < 3; mi++) {
        world_reset();
        weir_runtime *r = make_rt(2);
        weir_collector col;
        cr_assert_eq(weir_collector_init(&col, sizeof(orec)), 0);
        weir_spawn_config sc = spawn_cfg(3, WEIR_ORDERED);
        weir_term *t =
            WEIR_SEQ(weir_counter_source("src", 0), weir_map("kv", 8, sizeof(kv), to_kv, NULL),
                     weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                     weir_collect("out", &col));
        weir_pipeline_config c = cfg_of(all_modes[mi], 64, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(p), 0);
        cr_assert(wait_processed(20000, 10000000000ull), "no progress");
        cr_assert_eq(weir_pipeline_stop(p), 0);
        cr_assert_eq(weir_pipeline_join(p), 0, "%s", weir_pipeline_error(p));
        weir_term_stats ts;
        cr_assert_eq(weir_pipeline_term_stats(p, 0, &ts), 0);
        cr_assert_str_eq(ts.name, "src");
        size_t n = ts.records_out;
        cr_assert_eq(W.processed, n);
        kv *in = malloc(n * sizeof *in);
        for (size_t i = 0; i < n; i++)
            to_kv(NULL, &(int64_t){(int64_t)i}, &in[i]);
        sim *ref = sim_run(in, n, 0);
        check_records_in_order(col.data, col.count, ref->out, ref->nout,
                               weir_exec_mode_name(all_modes[mi]));
        check_per_key(col.data, col.count, ref->out, ref->nout, weir_exec_mode_name(all_modes[mi]));
        check_markers_last(col.data, col.count, weir_exec_mode_name(all_modes[mi]));
        spawn_sum ss = sum_stats(p, "sp");
        cr_assert_eq(ss.spawned, 500);
        cr_assert_eq(ss.ended, 500);
        cr_assert_eq(ss.live, 0);
        weir_pipeline_destroy(p);
        cr_assert_eq(W.freed, W.calls);
        sim_free(ref);
        free(in);
        weir_collector_deinit(&col);
        weir_runtime_destroy(r);
    }
}

/* A pipeline created and destroyed without running: no sub-pipeline, and
 * listing it is fine. */
Test(spawn, a_pipeline_destroyed_unstarted_lists_nothing, .init = rt_setup, .fini = rt_teardown)
{
    world_reset();
    static const kv one = {1, 1};
    weir_spawn_config sc = spawn_cfg(2, WEIR_ORDERED);
    weir_term *t = WEIR_SEQ(
        weir_array_source("src", &one, 1, sizeof(kv)),
        weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc), weir_stop());
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), 0, "%s", weir_last_error());
    size_t cnt = 7;
    weir_spawn_info info[2];
    cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, 2, &cnt), 0);
    cr_assert_eq(cnt, 0);
    weir_pipeline_destroy(p);
    cr_assert_eq(W.calls, 0);
}

/* ------------------------------------------------- records of any size */

/* "k<key>:<i>:<padding>" -> "<key>#<n>|<the input>" and, for i % 6 == 1, a
 * second "<key>#<n>+"; records with i % 4 == 0 are dropped; the finish
 * emits "<key>#end#<n>". */
typedef struct vstate {
    int64_t key, n;
    char buf[256];
} vstate;

static int64_t vs_field(const weir_bytes *b, int which)
{
    const char *s = b->data;
    size_t i = 1; /* after 'k' */
    int64_t v[2] = {0, 0};
    for (int f = 0; f < 2 && i < b->len; f++, i++)
        for (; i < b->len && s[i] != ':'; i++)
            v[f] = v[f] * 10 + (s[i] - '0');
    return v[which];
}

static uint64_t vs_key(void *arg, const void *rec)
{
    (void)arg;
    return (uint64_t)vs_field(rec, 0);
}

static bool vs_keep(void *st, const void *in)
{
    (void)st;
    atomic_fetch_add_explicit(&W.processed, 1, memory_order_relaxed);
    return vs_field(in, 1) % 4 != 0;
}

static int vs_fn(void *st, const void *in, weir_emit *e)
{
    vstate *s = st;
    const weir_bytes *b = in;
    if (vs_field(b, 0) != s->key)
        return -EPROTO;
    s->n++;
    int len = snprintf(s->buf, sizeof s->buf, "%lld#%lld|%.*s", (long long)s->key, (long long)s->n,
                       (int)b->len, (const char *)b->data);
    int r = weir_emit_bytes(e, s->buf, (size_t)len);
    if (r == 0 && vs_field(b, 1) % 6 == 1) {
        /* the zero-copy path as well */
        void *w;
        r = weir_emit_reserve(e, 64, &w);
        if (r == 0) {
            len = snprintf(w, 64, "%lld#%lld+", (long long)s->key, (long long)s->n);
            r = weir_emit_commit(e, (size_t)len);
        }
    }
    return r;
}

static int vs_finish(void *st, weir_emit *e)
{
    vstate *s = st;
    int len = snprintf(s->buf, sizeof s->buf, "%lld#end#%lld", (long long)s->key, (long long)s->n);
    return weir_emit_bytes(e, s->buf, (size_t)len);
}

static void vs_free(void *st)
{
    atomic_fetch_add_explicit(&W.freed, 1, memory_order_relaxed);
    free(st);
}

static weir_term *vs_make(void *arg, uint64_t key)
{
    const bool finish = arg != NULL;
    atomic_fetch_add_explicit(&W.calls, 1, memory_order_relaxed);
    vstate *s = calloc(1, sizeof *s);
    s->key = (int64_t)key;
    weir_term *f = weir_function("fmt", WEIR_VARSIZE, WEIR_VARSIZE, vs_fn, s);
    if (finish)
        f = weir_term_on_finish(f, vs_finish);
    return WEIR_SEQ(weir_filter("keep", WEIR_VARSIZE, vs_keep, NULL),
                    weir_term_on_free(f, vs_free));
}

typedef struct vsrc {
    const weir_bytes *recs;
    size_t n, at;
} vsrc;

static int vsrc_pull(void *st, void *out, size_t max, bool *end)
{
    vsrc *s = st;
    size_t k = s->n - s->at < max ? s->n - s->at : max;
    memcpy(out, s->recs + s->at, k * sizeof(weir_bytes));
    s->at += k;
    *end = s->at == s->n;
    return (int)k;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_var(bool finish)
{
    enum { N = 3000, KEYS = 25 };
    char **text = malloc(N * sizeof *text);
    weir_bytes *recs = malloc(N * sizeof *recs);
    uint64_t x = 99;
    for (size_t i = 0; i < N; i++) {
        int64_t key = (int64_t)(rnd(&x) % KEYS);
        char pad[64];
        size_t np = (size_t)(i * 7 % 50);
        memset(pad, 'a' + (int)(i % 26), np);
        pad[np] = 0;
        text[i] = malloc(96);
        snprintf(text[i], 96, "k%lld:%zu:%s", (long long)key, i, pad);
        recs[i] = (weir_bytes){text[i], strlen(text[i])};
    }
    /* the reference: records in order, then the finish lines (as a set) */
    char **want = malloc(3 * N * sizeof *want);
    size_t nw = 0;
    int64_t count[KEYS] = {0};
    bool seen[KEYS] = {0};
    for (size_t i = 0; i < N; i++) {
        int64_t key = vs_field(&recs[i], 0);
        seen[key] = true;
        if (i % 4 == 0)
            continue;
        count[key]++;
        want[nw] = malloc(160);
        snprintf(want[nw++], 160, "%lld#%lld|%s", (long long)key, (long long)count[key], text[i]);
        if (i % 6 == 1) {
            want[nw] = malloc(64);
            snprintf(want[nw++], 64, "%lld#%lld+", (long long)key, (long long)count[key]);
        }
    }
    size_t nrec = nw;
    for (int64_t k = 0; k < KEYS && finish; k++)
        if (seen[k]) {
            want[nw] = malloc(64);
            snprintf(want[nw++], 64, "%lld#end#%lld", (long long)k, (long long)count[k]);
        }
    qsort(want + nrec, nw - nrec, sizeof *want, str_cmp);
    for (int mi = 0; mi < 3; mi++)
        for (unsigned shards = 1; shards <= 4; shards += 3) {
            world_reset();
            weir_runtime *r = make_rt(2);
            vsrc src = {recs, N, 0};
            weir_collector col;
            cr_assert_eq(weir_collector_init(&col, WEIR_VARSIZE), 0);
            weir_spawn_config sc = spawn_cfg(shards, WEIR_ORDERED);
            weir_term *t = WEIR_SEQ(weir_source("src", WEIR_VARSIZE, vsrc_pull, &src),
                                    weir_spawn("sp", WEIR_VARSIZE, WEIR_VARSIZE, vs_key, NULL,
                                               vs_make, finish ? &sc : NULL, &sc),
                                    weir_collect("out", &col));
            weir_pipeline_config c = cfg_of(all_modes[mi], 32, 0);
            c.byte_capacity = 4096; /* small: the byte ring wraps and fills */
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
            cr_assert_eq(weir_pipeline_run(p), 0, "%s", weir_pipeline_error(p));
            cr_assert_eq(col.count, nw, "%s: %zu records, want %zu",
                         weir_exec_mode_name(all_modes[mi]), col.count, nw);
            const weir_bytes *got = col.data;
            for (size_t i = 0; i < nrec; i++)
                cr_assert(got[i].len == strlen(want[i]) &&
                              memcmp(got[i].data, want[i], got[i].len) == 0,
                          "%s shards %u: record %zu is '%.*s', want '%s'",
                          weir_exec_mode_name(all_modes[mi]), shards, i, (int)got[i].len,
                          (const char *)got[i].data, want[i]);
            char **fin = malloc((nw - nrec + 1) * sizeof *fin);
            for (size_t i = nrec; i < nw; i++)
                fin[i - nrec] = (char *)got[i].data; /* NUL-terminated by the collector */
            qsort(fin, nw - nrec, sizeof *fin, str_cmp);
            for (size_t i = nrec; i < nw; i++)
                cr_assert_str_eq(fin[i - nrec], want[i]);
            free(fin);
            spawn_sum ss = sum_stats(p, "sp");
            cr_assert_eq(ss.spawned, W.calls);
            cr_assert_eq(ss.ended, ss.spawned);
            weir_pipeline_destroy(p);
            cr_assert_eq(W.freed, W.calls);
            weir_collector_deinit(&col);
            weir_runtime_destroy(r);
        }
    for (size_t i = 0; i < nw; i++)
        free(want[i]);
    for (size_t i = 0; i < N; i++)
        free(text[i]);
    free(want);
    free(text);
    free(recs);
}

Test(spawn, variable_size_records_in_and_out)
{
    check_var(false);
}

/* Finish callbacks emitting variable-size records at the end of the input
 * (their descriptors must be sealed before the commit: this crashed before
 * 430140f). */
Test(spawn, variable_size_finish_outputs_at_the_end_of_input)
{
    check_var(true);
}

/* ------------------------------------------------------------- monitoring */

Test(spawn, spawn_list_from_another_thread_while_running_and_after_the_end)
{
    const size_t n = 60000;
    kv *in = random_keys(n, 2000, 13);
    for (int mi = 0; mi < 2; mi++) {
        world_reset();
        weir_runtime *r = make_rt(2);
        _Atomic uint64_t cnt = 0;
        weir_spawn_config sc = spawn_cfg(4, WEIR_ORDERED);
        sc.max_live = 100; /* 25 a shard */
        sc.policy = WEIR_SPAWN_EVICT;
        weir_term *t =
            WEIR_SEQ(weir_array_source("src", in, n, sizeof(kv)),
                     weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                     count_sink("n", sizeof(orec), &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 64, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(p), 0);
        weir_spawn_info info[64];
        unsigned lists = 0, nonempty = 0;
        int err;
        while ((err = weir_pipeline_join_for(p, 200000)) == -ETIMEDOUT) {
            size_t count = 0;
            cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, 64, &count), 0);
            lists++;
            nonempty += count > 0;
            cr_assert_leq(count, 100, "%zu live", count);
            for (size_t i = 0; i < count && i < 64; i++) {
                cr_assert_lt(info[i].key, 2000);
                cr_assert_lt(info[i].shard, 4);
                cr_assert_geq(info[i].records, 1);
                cr_assert_leq(info[i].records, n);
            }
            size_t only = 0;
            cr_assert_eq(weir_pipeline_spawn_list(p, "sp", NULL, 0, &only), 0);
            cr_assert_leq(only, 100);
            for (unsigned k = 0; k < 4; k++) {
                char nm[16];
                snprintf(nm, sizeof nm, "sp[%u]", k);
                weir_term_stats ts;
                cr_assert_eq(
                    weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, nm), &ts), 0);
                cr_assert_leq(ts.live, 25);
            }
        }
        cr_assert_eq(err, 0, "%s", weir_pipeline_error(p));
        size_t count = 1;
        cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, 64, &count), 0);
        cr_assert_eq(count, 0);
        spawn_sum ss = sum_stats(p, "sp");
        cr_assert_eq(ss.live, 0);
        cr_assert_eq(ss.ended, ss.spawned);
        cr_assert_eq(ss.spawned, W.calls);
        cr_assert_eq(ss.in, n);
        cr_assert_gt(lists, 0);
        weir_pipeline_destroy(p);
        cr_assert_eq(W.freed, W.calls);
        weir_runtime_destroy(r);
    }
    free(in);
}

/* While the sub-pipelines are live (the input paused), the list shows them
 * all, with their record counts, and the statistics agree. */
typedef struct pause_src {
    const kv *in;
    size_t n;
    _Atomic int go;
} pause_src;

static int pause_fn(void *st, weir_emit *e)
{
    pause_src *s = st;
    int r = weir_emit_records(e, s->in, s->n);
    while (r == 0 && !atomic_load(&s->go) && !weir_emit_stopping(e))
        sleep_ns(200000);
    return r;
}

static int info_cmp(const void *a, const void *b)
{
    const weir_spawn_info *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

Test(spawn, spawn_list_shows_every_live_sub_pipeline_with_its_records)
{
    enum { N = 500, KEYS = 37 };
    kv in[N];
    uint64_t per[KEYS] = {0};
    uint64_t x = 5;
    for (int i = 0; i < N; i++) {
        in[i] = (kv){(int64_t)(rnd(&x) % KEYS), i};
        per[in[i].key]++;
    }
    for (int mi = 0; mi < 3; mi++) {
        world_reset();
        weir_runtime *r = make_rt(2);
        pause_src ps = {in, N, 0};
        _Atomic uint64_t cnt = 0;
        weir_spawn_config sc = spawn_cfg(3, WEIR_ORDERED);
        weir_term *t =
            WEIR_SEQ(weir_blocking_source("src", sizeof(kv), pause_fn, &ps),
                     weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc),
                     count_sink("n", sizeof(orec), &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 64, 1024);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(r, t, &c, &p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(p), 0);
        cr_assert(wait_processed(N, 10000000000ull));
        weir_spawn_info info[KEYS + 1];
        size_t count = 0;
        /* the shard publishes its table when its batch part is done:
         * wait for that */
        uint64_t dl = now_ns() + 5000000000ull;
        do {
            cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, KEYS + 1, &count), 0);
        } while (sum_stats(p, "sp").live != KEYS && now_ns() < dl);
        cr_assert_eq(count, KEYS);
        qsort(info, count, sizeof *info, info_cmp);
        for (size_t i = 0; i < count; i++) {
            cr_assert_eq(info[i].key, i);
            cr_assert_eq(info[i].records, per[i], "key %zu: %llu records, want %llu", i,
                         (unsigned long long)info[i].records, (unsigned long long)per[i]);
            cr_assert_lt(info[i].shard, 3);
        }
        size_t small = 0;
        cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, 2, &small), 0);
        cr_assert_eq(small, KEYS, "the count exceeds max");
        spawn_sum ss = sum_stats(p, "sp");
        cr_assert_eq(ss.live, KEYS);
        cr_assert_eq(ss.spawned, KEYS);
        cr_assert_eq(ss.ended, 0);
        atomic_store(&ps.go, 1);
        cr_assert_eq(weir_pipeline_join(p), 0, "%s", weir_pipeline_error(p));
        ss = sum_stats(p, "sp");
        cr_assert_eq(ss.live, 0);
        cr_assert_eq(ss.ended, KEYS);
        cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, KEYS, &count), 0);
        cr_assert_eq(count, 0);
        weir_pipeline_destroy(p);
        cr_assert_eq(W.freed, KEYS);
        weir_runtime_destroy(r);
    }
}

Test(spawn, spawn_list_refuses_bad_arguments, .init = rt_setup, .fini = rt_teardown)
{
    static const kv one = {1, 1};
    weir_spawn_config sc = spawn_cfg(2, WEIR_ORDERED);
    weir_term *t = WEIR_SEQ(
        weir_array_source("src", &one, 1, sizeof(kv)),
        weir_spawn("sp", sizeof(kv), sizeof(orec), kv_key, NULL, std_make, NULL, &sc), weir_stop());
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), 0, "%s", weir_last_error());
    size_t cnt;
    weir_spawn_info info[1];
    cr_assert_eq(weir_pipeline_spawn_list(NULL, "sp", info, 1, &cnt), -EINVAL);
    cr_assert_eq(weir_pipeline_spawn_list(p, NULL, info, 1, &cnt), -EINVAL);
    cr_assert_eq(weir_pipeline_spawn_list(p, "sp", NULL, 1, &cnt), -EINVAL);
    cr_assert_eq(weir_pipeline_spawn_list(p, "nope", info, 1, &cnt), -ENOENT);
    cr_assert(strstr(weir_last_error(), "nope"), "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_spawn_list(p, "src", info, 1, &cnt), -ENOENT);
    cr_assert_eq(weir_pipeline_spawn_list(p, "sp", info, 1, NULL), 0);
    weir_pipeline_destroy(p);
}

/* ---------------------------------------------------------- bad arguments */

Test(spawn, bad_arguments_return_null_with_a_message)
{
    weir_spawn_config sc;
    weir_spawn_config_init(&sc);
    cr_assert_eq(sc.shards, 16);
    cr_assert_eq(sc.max_live, 0);
    cr_assert_eq(sc.policy, WEIR_SPAWN_FAIL);
    cr_assert_eq(sc.idle_ns, 0);
    cr_assert_eq(sc.order, WEIR_ORDERED);
    weir_spawn_config_init(NULL); /* ignored */

    cr_assert_null(weir_spawn("s", sizeof(kv), 8, NULL, NULL, std_make, NULL, &sc));
    cr_assert(strstr(weir_last_error(), "'s'") && strstr(weir_last_error(), "NULL"), "%s",
              weir_last_error());
    cr_assert_null(weir_spawn("s", sizeof(kv), 8, kv_key, NULL, NULL, NULL, &sc));
    cr_assert(strstr(weir_last_error(), "factory"), "%s", weir_last_error());
    cr_assert_null(weir_spawn("s", 0, 8, kv_key, NULL, std_make, NULL, &sc));
    cr_assert(strstr(weir_last_error(), "size 0"), "%s", weir_last_error());

    sc.shards = 0;
    cr_assert_null(weir_spawn("s", sizeof(kv), 8, kv_key, NULL, std_make, NULL, &sc));
    cr_assert(strstr(weir_last_error(), "0 shards"), "%s", weir_last_error());
    sc.shards = WEIR_KEYED_MAX_SHARDS + 1;
    cr_assert_null(weir_spawn("s", sizeof(kv), 8, kv_key, NULL, std_make, NULL, &sc));
    cr_assert(strstr(weir_last_error(), "shards"), "%s", weir_last_error());
    sc.shards = 2;
    sc.policy = (weir_spawn_policy)7;
    cr_assert_null(weir_spawn("s", sizeof(kv), 8, kv_key, NULL, std_make, NULL, &sc));
    cr_assert(strstr(weir_last_error(), "policy"), "%s", weir_last_error());
    sc.policy = WEIR_SPAWN_EVICT;
    sc.order = (weir_order)9;
    cr_assert_null(weir_spawn("s", sizeof(kv), 8, kv_key, NULL, std_make, NULL, &sc));
    cr_assert_neq(weir_last_error()[0], 0);

    /* the largest shard count, and NULL for the defaults, are fine */
    sc.order = WEIR_ORDERED;
    sc.shards = WEIR_KEYED_MAX_SHARDS;
    weir_term *t = weir_spawn(NULL, sizeof(kv), 8, kv_key, NULL, std_make, NULL, &sc);
    cr_assert_not_null(t, "%s", weir_last_error());
    weir_term_destroy(t);
    t = weir_spawn("d", sizeof(kv), 0, kv_key, NULL, std_make, NULL, NULL);
    cr_assert_not_null(t, "%s", weir_last_error());
    weir_term_destroy(t);
}

/* Was a bug, fixed (kept as a regression test): weir_pipeline_spawn_list() called from inside a
 * sub-pipeline's callback (or from the factory) never returns: the header says "any thread", but a
 * spawn shard holds its mutex (sh->mu, weir__spawn_begin() in terms/spawn.c) for its whole batch
 * part, callbacks and factory calls included, and the listing locks every shard's mutex in turn.
 * With a plain mutex a shard's own callback deadlocks on it at once. With a recursive one (tried in
 * the working tree) two shards whose callbacks list at the same time deadlock on each other: shard
 * 0 holds mu0 and waits for mu1, shard 1 holds mu1 and waits for mu0 (seen in gdb: two workers in
 * pthread_mutex_lock under weir_pipeline_spawn_list, each inside a map
 * callback). The listing must not wait for a running shard (a snapshot the
 * shard publishes, or the mutex held only while the table changes, not
 * over user callbacks). Repro: 8 shards, 64 keys, 20 000 records, a map in
 * every sub-pipeline calling weir_pipeline_spawn_list(p, "sp", NULL, 0, &n):
 * join_for times out in every mode. */
static weir_pipeline *listing_p;
static _Atomic uint64_t listed_max;

static void listing_map(void *st, const void *in, void *out)
{
    (void)st;
    size_t n = 0;
    if (weir_pipeline_spawn_list(listing_p, "sp", NULL, 0, &n) == 0 && n > listed_max)
        listed_max = n;
    memcpy(out, in, sizeof(kv));
}

static weir_term *listing_make(void *arg, uint64_t key)
{
    (void)arg;
    (void)key;
    return weir_map("list", sizeof(kv), sizeof(kv), listing_map, NULL);
}

Test(spawn, spawn_list_from_a_sub_pipeline_callback, .timeout = 30)
{
    enum { N = 20000 };
    kv *in = malloc(N * sizeof *in);
    for (int i = 0; i < N; i++)
        in[i] = (kv){i % 64, i};
    for (int mi = 0; mi < 3; mi++) {
        weir_runtime *r = make_rt(2);
        _Atomic uint64_t cnt = 0;
        weir_spawn_config sc = spawn_cfg(8, WEIR_ORDERED);
        weir_term *t = WEIR_SEQ(
            weir_array_source("src", in, N, sizeof(kv)),
            weir_spawn("sp", sizeof(kv), sizeof(kv), kv_key, NULL, listing_make, NULL, &sc),
            count_sink("n", sizeof(kv), &cnt));
        weir_pipeline_config c = cfg_of(all_modes[mi], 16, 0);
        cr_assert_eq(weir_pipeline_create(r, t, &c, &listing_p), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(listing_p), 0);
        int err = weir_pipeline_join_for(listing_p, 5000000000ull);
        cr_assert_eq(err, 0, "%s: join %d (a hang: -ETIMEDOUT)", weir_exec_mode_name(all_modes[mi]),
                     err);
        cr_assert_eq(cnt, N);
        cr_assert_geq(listed_max, 1);
        weir_pipeline_destroy(listing_p);
        weir_runtime_destroy(r);
    }
    free(in);
}
