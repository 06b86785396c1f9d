/*
 * weir_spawn stress (issue 12): random key streams through per-key
 * sub-pipelines made at run time, with random shard counts (1..16), runtimes
 * of 1..4 workers, all three execution modes, both output orders, random
 * bounds on live sub-pipelines (evict or fail), random idle timeouts (50 us
 * .. 2 ms, against a source that pauses now and then), and random stops,
 * cancels and destroys in the middle of a run. A monitor thread lists the
 * live sub-pipelines and reads the shard statistics all along.
 *
 * Each sub-pipeline is filter (drops values divisible by 5) -> flat-map
 * (values divisible by 7 twice) -> a map keeping the generation's count and
 * running sum, with a finish callback emitting a marker (count and sum). Or,
 * one run in five, it ends in a sink that adds into per-key totals (no
 * output). Exact accounting where the run was not cancelled (the input is
 * the source's records_out prefix after a stop):
 *
 *   - every key's outputs are generations 1, 2, ... (the factory's calls for
 *     the key), each its next records in input order with counts 1..c and
 *     the running sum, then one marker with c and the sum; together the
 *     generations hold each of the key's records exactly once;
 *   - WEIR_ORDERED: the records (markers aside) are in input order;
 *   - without idle timeout or bound: one generation per key;
 *   - the sink form: per-key totals and counts;
 *   - statistics: spawned == ended == factory calls, live == 0; after
 *     destroy every sub-pipeline's state was freed (also after a cancel or
 *     a destroy while running), and the monitor never saw more live
 *     sub-pipelines than the bound allows.
 *
 * One summary line; exit 1 on a broken invariant or a hang (join bounded by
 * 60 s). Run it under ThreadSanitizer.
 *
 *   stress_spawn [--seconds S] [--workers W] [--seed N]
 *   (STRESS_SPAWN_SECONDS=S in the environment: a longer soak)
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stress_common.h"
#include "weir.h"

#define MAXKEYS 512

typedef struct kv {
    int64_t key, val;
} kv;

/* A record's output: the n-th of generation `gen` of `key`, with the
 * generation's running sum. A marker has val = -1 and n = the count. */
typedef struct out {
    int64_t key, val, gen, n, sum;
} out;

/* ------------------------------------------------------------ run state */

typedef struct run {
    uint64_t keys;
    _Atomic uint64_t calls, freed, processed;
    int64_t gen[MAXKEYS];                   /* written by the key's shard */
    int64_t tsum[MAXKEYS], tcount[MAXKEYS]; /* the sink form's totals */
    _Atomic int bad_sink;                   /* a sink saw a foreign key */
} run;

static run R;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
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

/* The key of record v of the endless source (stop / cancel runs). */
static kv rec_of(int64_t v, uint64_t keys)
{
    uint64_t h = mix64((uint64_t)v + 1);
    uint64_t k = h % 4 == 0 ? (h >> 8) % (keys < 3 ? keys : 3) : (h >> 8) % keys;
    return (kv){(int64_t)k, v};
}

/* ------------------------------------------------------- sub-pipelines */

static uint64_t kv_key(void *arg, const void *rec)
{
    (void)arg;
    return (uint64_t)((const kv *)rec)->key;
}

static bool keep_fn(void *st, const void *in)
{
    (void)st;
    atomic_fetch_add_explicit(&R.processed, 1, memory_order_relaxed);
    return ((const kv *)in)->val % 5 != 0;
}

static int dup_fn(void *st, const void *in, weir_emit *e)
{
    (void)st;
    const kv *r = in;
    int rc = weir_emit_record(e, r);
    if (rc == 0 && r->val % 7 == 0)
        rc = weir_emit_record(e, r);
    return rc;
}

typedef struct tag {
    int64_t key, gen, n, sum;
} tag;

static void tag_fn(void *st, const void *in, void *o)
{
    tag *t = st;
    const kv *r = in;
    t->n++;
    t->sum += r->val;
    out x = {t->key, r->val, t->gen, t->n, t->sum};
    memcpy(o, &x, sizeof x);
}

static int tag_finish(void *st, weir_emit *e)
{
    tag *t = st;
    out x = {t->key, -1, t->gen, t->n, t->sum};
    return weir_emit_record(e, &x);
}

static void tag_free(void *st)
{
    atomic_fetch_add_explicit(&R.freed, 1, memory_order_relaxed);
    free(st);
}

static int acc_sink(void *st, const void *in)
{
    tag *t = st;
    const kv *r = in;
    if (r->key != t->key)
        atomic_store(&R.bad_sink, 1);
    R.tsum[t->key] += r->val;
    R.tcount[t->key]++;
    return 0;
}

static tag *new_tag(uint64_t key)
{
    tag *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->key = (int64_t)key;
    t->gen = ++R.gen[key];
    atomic_fetch_add_explicit(&R.calls, 1, memory_order_relaxed);
    return t;
}

static weir_term *make_out(void *arg, uint64_t key)
{
    (void)arg;
    tag *t = new_tag(key);
    if (!t)
        return NULL;
    weir_term *last = weir_term_on_free(
        weir_term_on_finish(weir_map("tag", sizeof(kv), sizeof(out), tag_fn, t), tag_finish),
        tag_free);
    return WEIR_SEQ(weir_filter("keep", sizeof(kv), keep_fn, NULL),
                    weir_function("dup", sizeof(kv), sizeof(kv), dup_fn, NULL), last);
}

static weir_term *make_sink(void *arg, uint64_t key)
{
    (void)arg;
    tag *t = new_tag(key);
    if (!t)
        return NULL;
    return WEIR_SEQ(weir_filter("keep", sizeof(kv), keep_fn, NULL),
                    weir_function("dup", sizeof(kv), sizeof(kv), dup_fn, NULL),
                    weir_term_on_free(weir_sink("acc", sizeof(kv), acc_sink, t), tag_free));
}

/* A pull source over an array that pauses now and then (so that idle
 * timeouts fire), or an endless one (stop and cancel runs). */
typedef struct src {
    const kv *in;
    size_t n, at;
    uint64_t keys;
    bool endless, pauses;
    uint64_t seed;
} src;

static int src_pull(void *st, void *o, size_t max, bool *end)
{
    src *s = st;
    if (s->pauses && rnd(&s->seed) % 8 == 0)
        sleep_ns(rnd(&s->seed) % 400000);
    size_t k = max;
    if (s->pauses && k > 1)
        k = 1 + rnd(&s->seed) % k;
    kv *dst = o;
    if (s->endless) {
        for (size_t i = 0; i < k; i++)
            dst[i] = rec_of((int64_t)(s->at + i), s->keys);
    } else {
        if (k > s->n - s->at)
            k = s->n - s->at;
        memcpy(dst, s->in + s->at, k * sizeof *dst);
        *end = s->at + k == s->n;
    }
    s->at += k;
    return (int)k;
}

/* ------------------------------------------------------------- monitor */

typedef struct monitor {
    weir_pipeline *p;
    unsigned shards;
    size_t bound; /* most live at once (0 = unbounded) */
    _Atomic int quit;
    _Atomic uint64_t lists;
    char err[256];
} monitor;

static void *monitor_main(void *arg)
{
    monitor *m = arg;
    weir_spawn_info info[32];
    while (!atomic_load(&m->quit)) {
        size_t count = 0;
        int r = weir_pipeline_spawn_list(m->p, "sp", info, 32, &count);
        if (r != 0 && !m->err[0])
            snprintf(m->err, sizeof m->err, "spawn_list: %d", r);
        if (m->bound && count > m->bound && !m->err[0])
            snprintf(m->err, sizeof m->err, "%zu live sub-pipelines, bound %zu", count, m->bound);
        for (size_t i = 0; i < count && i < 32; i++)
            if ((info[i].key >= R.keys || info[i].shard >= m->shards || info[i].records == 0) &&
                !m->err[0])
                snprintf(m->err, sizeof m->err, "listed key %" PRIu64 " shard %u records %" PRIu64,
                         info[i].key, info[i].shard, info[i].records);
        unsigned nt = weir_pipeline_term_count(m->p);
        for (unsigned i = 0; i < nt; i++) {
            weir_term_stats ts;
            weir_pipeline_term_stats(m->p, i, &ts);
        }
        atomic_fetch_add(&m->lists, 1);
        sleep_ns(50000);
    }
    return NULL;
}

/* ------------------------------------------------------------ checking */

typedef struct ix {
    out o;
    size_t i;
} ix;

static int ix_cmp(const void *a, const void *b)
{
    const ix *x = a, *y = b;
    if (x->o.key != y->o.key)
        return x->o.key < y->o.key ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static char fail_msg[512];

#define FAIL(...) (snprintf(fail_msg, sizeof fail_msg, __VA_ARGS__), false)

/* The expansion of the input: the values that reach the tagging map (or
 * the sink), in input order. */
static int64_t *expand(const kv *in, size_t n, size_t *ne)
{
    int64_t *e = malloc((2 * n + 1) * sizeof *e);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i].val % 5 == 0)
            continue;
        e[k++] = i;
        if (in[i].val % 7 == 0)
            e[k++] = i;
    }
    *ne = k;
    return e;
}

static bool check_outputs(const kv *in, size_t n, const out *got, size_t ng, bool ordered,
                          bool one_gen, uint64_t *gens)
{
    size_t ne;
    int64_t *e = expand(in, n, &ne);
    bool ok = true;
    /* input order of the records */
    if (ordered) {
        size_t j = 0;
        for (size_t i = 0; i < ng && ok; i++) {
            if (got[i].val < 0)
                continue;
            if (j == ne || got[i].val != in[e[j]].val)
                ok = FAIL("ordered: output %zu is value %" PRId64 ", want %" PRId64, i, got[i].val,
                          j < ne ? in[e[j]].val : -1);
            j++;
        }
        if (ok && j != ne)
            ok = FAIL("ordered: %zu records, want %zu", j, ne);
    }
    /* per key: generations over the key's expansion */
    ix *g = malloc((ng + 1) * sizeof *g);
    for (size_t i = 0; i < ng; i++)
        g[i] = (ix){got[i], i};
    qsort(g, ng, sizeof *g, ix_cmp);
    size_t *pos = calloc(R.keys, sizeof *pos); /* each key's next in e */
    int64_t **per = calloc(R.keys, sizeof *per);
    size_t *nper = calloc(R.keys, sizeof *nper);
    for (size_t j = 0; j < ne; j++) {
        int64_t k = in[e[j]].key;
        if (!per[k])
            per[k] = malloc(ne * sizeof **per);
        per[k][nper[k]++] = in[e[j]].val;
    }
    size_t at = 0;
    *gens = 0;
    while (ok && at < ng) {
        int64_t key = g[at].o.key;
        if (key < 0 || (uint64_t)key >= R.keys) {
            ok = FAIL("output of key %" PRId64, key);
            break;
        }
        int64_t gen = 1, cnt = 0, sum = 0;
        for (; at < ng && g[at].o.key == key && ok; at++) {
            out o = g[at].o;
            if (o.gen != gen) {
                ok = FAIL("key %" PRId64 ": output of gen %" PRId64 " in gen %" PRId64, key, o.gen,
                          gen);
            } else if (o.val < 0) {
                if (o.n != cnt || o.sum != sum)
                    ok = FAIL("key %" PRId64 " gen %" PRId64 ": marker %" PRId64 "/%" PRId64
                              ", want %" PRId64 "/%" PRId64,
                              key, gen, o.n, o.sum, cnt, sum);
                gen++, cnt = 0, sum = 0;
                (*gens)++;
            } else {
                size_t p = pos[key]++;
                cnt++;
                sum += o.val;
                if (p >= nper[key] || per[key][p] != o.val || o.n != cnt || o.sum != sum)
                    ok = FAIL("key %" PRId64 " gen %" PRId64 ": record %" PRId64 " n %" PRId64
                              " sum %" PRId64 ", want %" PRId64 " n %" PRId64 " sum %" PRId64,
                              key, gen, o.val, o.n, o.sum, p < nper[key] ? per[key][p] : -1, cnt,
                              sum);
            }
        }
        if (ok && cnt != 0)
            ok = FAIL("key %" PRId64 ": generation %" PRId64 " has no marker", key, gen);
        if (ok && one_gen && gen != 2)
            ok = FAIL("key %" PRId64 ": %" PRId64 " generations, want 1", key, gen - 1);
    }
    for (uint64_t k = 0; k < R.keys && ok; k++)
        if (pos[k] != nper[k])
            ok = FAIL("key %" PRIu64 ": %zu of %zu records came out", k, pos[k], nper[k]);
    for (uint64_t k = 0; k < R.keys; k++)
        free(per[k]);
    free(per);
    free(nper);
    free(pos);
    free(g);
    free(e);
    return ok;
}

static bool check_sinks(const kv *in, size_t n)
{
    if (atomic_load(&R.bad_sink))
        return FAIL("a sink saw another key's record");
    int64_t sum[MAXKEYS] = {0}, count[MAXKEYS] = {0};
    for (size_t i = 0; i < n; i++) {
        if (in[i].val % 5 == 0)
            continue;
        int rep = in[i].val % 7 == 0 ? 2 : 1;
        sum[in[i].key] += rep * in[i].val;
        count[in[i].key] += rep;
    }
    for (uint64_t k = 0; k < R.keys; k++)
        if (sum[k] != R.tsum[k] || count[k] != R.tcount[k])
            return FAIL("sink key %" PRIu64 ": %" PRId64 " records sum %" PRId64 ", want %" PRId64
                        " and %" PRId64,
                        k, R.tcount[k], R.tsum[k], count[k], sum[k]);
    return true;
}

/* ----------------------------------------------------------------- main */

typedef struct tally {
    uint64_t runs, ok, stopped, cancelled, destroyed, enospc, records, subs, lists;
} tally;

enum { ACT_NONE, ACT_STOP, ACT_CANCEL, ACT_DESTROY };

static bool one_run(weir_runtime **rts, unsigned maxw, uint64_t *seed, tally *t)
{
    static const unsigned shard_choice[] = {1, 2, 3, 5, 8, 16};
    const unsigned workers = 1 + (unsigned)(rnd(seed) % maxw);
    const weir_exec_mode mode = (weir_exec_mode)(rnd(seed) % 3);
    const unsigned shards = shard_choice[rnd(seed) % 6];
    const weir_order order = rnd(seed) % 2 ? WEIR_UNORDERED : WEIR_ORDERED;
    const bool sinks = rnd(seed) % 5 == 0;
    const int act = rnd(seed) % 2 ? ACT_NONE : (int)(1 + rnd(seed) % 3);
    memset(&R, 0, sizeof R);
    R.keys = 1 + rnd(seed) % (rnd(seed) % 2 ? 20 : MAXKEYS);
    weir_spawn_config sc;
    weir_spawn_config_init(&sc);
    sc.shards = shards;
    sc.order = order;
    if (rnd(seed) % 3 == 0) {
        sc.max_live = 1 + rnd(seed) % (2 * R.keys);
        sc.policy = rnd(seed) % 4 == 0 ? WEIR_SPAWN_FAIL : WEIR_SPAWN_EVICT;
    }
    const bool pauses = rnd(seed) % 3 == 0;
    if (rnd(seed) % 3 == 0)
        sc.idle_ns = 50000 + rnd(seed) % 2000000;
    size_t n = act == ACT_NONE ? (size_t)(rnd(seed) % 6000) : 0;
    kv *in = malloc((n + 1) * sizeof *in);
    uint64_t x = rnd(seed) | 1;
    for (size_t i = 0; i < n; i++)
        in[i] = rec_of((int64_t)(rnd(&x) % 1000000), R.keys), in[i].val = (int64_t)i;
    src s = {in, n, 0, R.keys, act != ACT_NONE, pauses, rnd(seed) | 1};
    weir_collector col;
    weir_collector_init(&col, sizeof(out));
    weir_term *sp = weir_spawn("sp", sizeof(kv), sinks ? 0 : sizeof(out), kv_key, NULL,
                               sinks ? make_sink : make_out, NULL, &sc);
    weir_term *root = sinks ? WEIR_SEQ(weir_source("src", sizeof(kv), src_pull, &s), sp)
                            : WEIR_SEQ(weir_source("src", sizeof(kv), src_pull, &s), sp,
                                       weir_collect("out", &col));
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.mode = mode;
    pc.print_stats = false;
    pc.batch = 1 + (unsigned)(rnd(seed) % 128);
    pc.capacity = 64 + (unsigned)(rnd(seed) % 1024);
    char what[256];
    snprintf(what, sizeof what,
             "%s workers %u shards %u %s %s keys %" PRIu64 " n %zu max_live %zu %s idle_ns %" PRIu64
             "%s batch %u act %d",
             weir_exec_mode_name(mode), workers, shards, order ? "unordered" : "ordered",
             sinks ? "sinks" : "outputs", R.keys, n, sc.max_live,
             sc.policy == WEIR_SPAWN_EVICT ? "evict" : "fail", sc.idle_ns, pauses ? " pauses" : "",
             pc.batch, act);
    weir_pipeline *p = NULL;
    int r = weir_pipeline_create(rts[workers - 1], root, &pc, &p);
    bool ok = true;
    if (r != 0) {
        fprintf(stderr, "stress_spawn: %s: create: %d %s\n", what, r, weir_last_error());
        weir_term_destroy(root);
        free(in);
        weir_collector_deinit(&col);
        return false;
    }
    monitor m = {.p = p, .shards = shards};
    if (sc.max_live)
        m.bound = shards * ((sc.max_live + shards - 1) / shards);
    pthread_t mon;
    r = weir_pipeline_start(p);
    bool mon_started = r == 0 && pthread_create(&mon, NULL, monitor_main, &m) == 0;
    if (r != 0)
        ok = FAIL("start: %d", r);
    if (ok && act != ACT_NONE) {
        /* let it run a little: some records, and sometimes not even that */
        uint64_t want = rnd(seed) % 4 == 0 ? 0 : rnd(seed) % 20000;
        uint64_t dl = now_ns() + 2000000000ull;
        while (atomic_load(&R.processed) < want && now_ns() < dl)
            sleep_ns(100000);
        if (act == ACT_STOP)
            weir_pipeline_stop(p);
        else if (act == ACT_CANCEL)
            weir_pipeline_cancel(p);
    }
    if (ok && act == ACT_DESTROY) {
        atomic_store(&m.quit, 1);
        if (mon_started)
            pthread_join(mon, NULL);
        mon_started = false;
        weir_pipeline_destroy(p);
        p = NULL;
        t->destroyed++;
    }
    if (ok && p) {
        r = weir_pipeline_join_for(p, 60000000000ull);
        if (r == -ETIMEDOUT) {
            fprintf(stderr, "stress_spawn: %s: HANG\n", what);
            exit(1);
        }
    }
    if (mon_started) {
        atomic_store(&m.quit, 1);
        pthread_join(mon, NULL);
    }
    t->lists += m.lists;
    if (ok && m.err[0])
        ok = FAIL("monitor: %s", m.err);
    if (ok && p) {
        const bool bounded_fail = sc.max_live && sc.policy == WEIR_SPAWN_FAIL;
        if (act == ACT_CANCEL) {
            if (r != -ECANCELED && r != 0 && !(r == -ENOSPC && bounded_fail))
                ok = FAIL("cancel: join %d %s", r, weir_pipeline_error(p));
            t->cancelled++;
        } else if (r == -ENOSPC && bounded_fail) {
            if (!strstr(weir_pipeline_error(p), "key "))
                ok = FAIL("-ENOSPC without the key: %s", weir_pipeline_error(p));
            t->enospc++;
        } else if (r != 0) {
            ok = FAIL("join %d: %s", r, weir_pipeline_error(p));
        } else {
            /* the input: everything, or the prefix produced before a stop */
            size_t nin = n;
            if (act == ACT_STOP) {
                weir_term_stats ts;
                weir_pipeline_term_stats(p, 0, &ts);
                nin = (size_t)ts.records_out;
                free(in);
                in = malloc((nin + 1) * sizeof *in);
                for (size_t i = 0; i < nin; i++)
                    in[i] = rec_of((int64_t)i, R.keys);
                t->stopped++;
            } else {
                t->ok++;
            }
            uint64_t gens = 0;
            const bool one_gen = !sc.max_live && !sc.idle_ns;
            if (sinks)
                ok = check_sinks(in, nin);
            else
                ok = check_outputs(in, nin, col.data, col.count, order == WEIR_ORDERED, one_gen,
                                   &gens);
            if (ok && !sinks && gens != atomic_load(&R.calls))
                ok = FAIL("%" PRIu64 " generations, %" PRIu64 " factory calls", gens,
                          (uint64_t)atomic_load(&R.calls));
            if (ok && atomic_load(&R.processed) != nin)
                ok = FAIL("%" PRIu64 " records into sub-pipelines, %zu in",
                          (uint64_t)atomic_load(&R.processed), nin);
            t->records += nin;
        }
        /* statistics, whatever the outcome */
        uint64_t live = 0, spawned = 0, ended = 0;
        for (unsigned i = 0; i < shards; i++) {
            char nm[16];
            snprintf(nm, sizeof nm, "sp[%u]", i);
            weir_term_stats ts;
            weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, nm), &ts);
            live += ts.live, spawned += ts.spawned, ended += ts.ended;
        }
        size_t listed = 0;
        weir_pipeline_spawn_list(p, "sp", NULL, 0, &listed);
        if (ok && (live + ended != spawned || listed != live))
            ok = FAIL("statistics: live %" PRIu64 " + ended %" PRIu64 " != spawned %" PRIu64
                      " (listed %zu)",
                      live, ended, spawned, listed);
        if (ok && spawned != atomic_load(&R.calls))
            ok = FAIL("spawned %" PRIu64 ", factory calls %" PRIu64, spawned,
                      (uint64_t)atomic_load(&R.calls));
        if (ok && r == 0 && live != 0)
            ok = FAIL("%" PRIu64 " live after the end", live);
        weir_pipeline_destroy(p);
    }
    t->subs += atomic_load(&R.calls);
    if (ok && atomic_load(&R.freed) != atomic_load(&R.calls))
        ok = FAIL("%" PRIu64 " of %" PRIu64 " sub-pipelines freed", (uint64_t)atomic_load(&R.freed),
                  (uint64_t)atomic_load(&R.calls));
    if (!ok)
        fprintf(stderr, "stress_spawn: %s: %s\n", what, fail_msg);
    t->runs++;
    weir_collector_deinit(&col);
    free(in);
    return ok;
}

int main(int argc, char **argv)
{
    stress_opts o;
    int pr = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (pr)
        return pr;
    const char *soak = getenv("STRESS_SPAWN_SECONDS");
    if (soak && atof(soak) > 0)
        o.seconds = atof(soak);
    unsigned maxw = o.workers ? o.workers : 4;
    weir_runtime **rts = calloc(maxw, sizeof *rts);
    for (unsigned w = 0; w < maxw; w++) {
        weir_config c;
        weir_config_init(&c);
        c.workers = w + 1;
        c.affinity = WEIR_AFFINITY_NONE;
        c.print_stats = false;
        if (weir_runtime_create(&c, &rts[w]) != 0) {
            fprintf(stderr, "stress_spawn: runtime: %s\n", weir_last_error());
            return 2;
        }
    }
    uint64_t seed = o.seed ? o.seed : 1;
    tally t = {0};
    unsigned failures = 0;
    const double t0 = stress_now();
    while (stress_now() - t0 < o.seconds && failures < 5)
        if (!one_run(rts, maxw, &seed, &t))
            failures++;
    for (unsigned w = 0; w < maxw; w++)
        weir_runtime_destroy(rts[w]);
    free(rts);
    printf("stress_spawn: %" PRIu64 " runs (%" PRIu64 " checked, %" PRIu64 " stopped, %" PRIu64
           " cancelled, %" PRIu64 " destroyed running, %" PRIu64 " -ENOSPC), %" PRIu64
           " records checked, %" PRIu64 " sub-pipelines, %" PRIu64
           " listings, %.1f s, seed %lu: %s\n",
           t.runs, t.ok, t.stopped, t.cancelled, t.destroyed, t.enospc, t.records, t.subs, t.lists,
           stress_now() - t0, o.seed, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
