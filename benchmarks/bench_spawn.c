/*
 * weir-bench spawn: dynamic sub-pipelines per key (weir_spawn, issue 12).
 *
 * Records {key, val} with keys drawn uniformly from K keys go through
 * weir_spawn: the first record of a key makes its sub-pipeline, a map
 * (val % 1000 as a double) and the built-in running mean; the means come
 * out in input order (WEIR_ORDERED) into a sink that sums them. Variants:
 *   serial   a loop with an open-addressing table of (count, mean) per key:
 *            the same means, the same checksum (bit for bit, in order)
 *   pool     weir_spawn in WEIR_EXEC_POOL on the runtime's workers
 *   threads  the same pipeline in WEIR_EXEC_THREADS (a thread per shard)
 * The same total records for every K, so items/s at K = 100 000 (every key
 * seen ~10 times: sub-pipeline creation inside the run) against K = 10 is
 * the cost of many short-lived keys (vs_k10).
 *
 * Creation cost, measured two ways through the public API:
 *   create_us   direct: the factory notes the time on entry; the map's first
 *               call (its first record, right after the tree was checked and
 *               compiled into its context) adds the time since to a total.
 *               Factory + compile + table entry, on the thread that made it,
 *               averaged over every sub-pipeline of the timed runs: wall
 *               time, and create_cpu_us the thread's CPU time
 *               (CLOCK_THREAD_CPUTIME_ID: without preemption on a busy box).
 *   create2_us  differential: a blocking source emits K records of K new
 *               keys, waits until all K means came out, then emits the same
 *               K records again (every sub-pipeline live): (first pass -
 *               second pass) / K, wall time, summed over enough pipelines to
 *               make 10 000 sub-pipelines (so noisy at K = 10).
 *   factory_us  the factory alone (its term constructors and destroy) on
 *               one thread, CPU time: the share of creation that is the
 *               user's (its two clock reads included, as in create_cpu_us).
 * cpu_ms: the process's CPU time over the run (getrusage: the workers'
 * spinning included), cpu_vs_k10 the same ratio as vs_k10 in CPU time,
 * steadier than wall time on a busy box.
 * tail_ms: from the first finish callback to the join, the end of the
 * input: every live sub-pipeline ends there (its finish chain, then it is
 * freed), shard after shard, on the thread that runs the spawn term.
 * creates_per_s = 1e6 / create_cpu_us: sub-pipelines per second of creation
 * on one thread.
 *
 * Memory per live sub-pipeline, from the differential run's first pipeline:
 * after malloc_trim(0), /proc/self/statm and mallinfo2() before the first
 * pass and after it (K sub-pipelines live, none ended): rss_b and heap_b are
 * the differences divided by K (bytes; only for K >= 1000, below that a page
 * is more than the whole difference).
 */
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "weir.h"

#define SB_MAXK 16

typedef struct sb_rec {
    uint64_t key, val;
} sb_rec;

typedef struct sb_cfg {
    uint64_t keys[SB_MAXK];
    size_t nkeys;
    uint64_t items;
    unsigned shards, batch;
} sb_cfg;

/* ------------------------------------------------------- the sub-pipeline */

/* Creation timing (the direct method): summed by the maps' first calls. */
static _Atomic uint64_t sb_create_ns, sb_create_cpu_ns, sb_creates;

/* CPU time of the calling thread (the factory and the first record run on
 * the same thread, one after the other): preemption left out. */
static uint64_t sb_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct sb_first {
    uint64_t t0, cpu0;
    bool seen;
} sb_first;

static void sb_map(void *st, const void *in, void *out)
{
    sb_first *f = st;
    if (!f->seen) {
        f->seen = true;
        /* relaxed: totals read after the join */
        atomic_fetch_add_explicit(&sb_create_ns, bench_now_ns() - f->t0, memory_order_relaxed);
        atomic_fetch_add_explicit(&sb_create_cpu_ns, sb_thread_cpu_ns() - f->cpu0,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&sb_creates, 1, memory_order_relaxed);
    }
    double d = (double)(((const sb_rec *)in)->val % 1000);
    memcpy(out, &d, sizeof d);
}

/* The first finish callback at the end of the input: the end of the input
 * (every sub-pipeline ends there, shard after shard) starts there. */
static _Atomic uint64_t sb_first_finish_ns;

static int sb_finish(void *st, weir_emit *e)
{
    (void)st;
    (void)e;
    uint64_t zero = 0;
    /* relaxed: read after the join */
    atomic_compare_exchange_strong_explicit(&sb_first_finish_ns, &zero, bench_now_ns(),
                                            memory_order_relaxed, memory_order_relaxed);
    return 0;
}

static weir_term *sb_make(void *arg, uint64_t key)
{
    (void)arg;
    (void)key;
    uint64_t cpu0 = sb_thread_cpu_ns(), t0 = bench_now_ns();
    sb_first *f = malloc(sizeof *f);
    if (!f)
        return NULL;
    f->t0 = t0;
    f->cpu0 = cpu0;
    f->seen = false;
    weir_term *m = weir_term_on_free(
        weir_term_on_finish(weir_map("x", sizeof(sb_rec), sizeof(double), sb_map, f), sb_finish),
        free);
    return weir_seq2(m, weir_mean("mean"));
}

/* The sink: the sum of the means in arrival order, and a count the
 * differential run's source waits on. */
typedef struct sb_sum {
    double sum;
    _Atomic uint64_t count;
} sb_sum;

static int sb_sink(void *st, const void *rec)
{
    sb_sum *s = st;
    double d;
    memcpy(&d, rec, sizeof d);
    s->sum += d;
    /* relaxed: single writer; the waiting source needs no other data */
    atomic_store_explicit(&s->count, atomic_load_explicit(&s->count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return 0;
}

static uint64_t sb_key(void *arg, const void *rec)
{
    (void)arg;
    return ((const sb_rec *)rec)->key;
}

static weir_term *sb_spawn(const sb_cfg *cfg)
{
    weir_spawn_config sc;
    weir_spawn_config_init(&sc);
    if (cfg->shards)
        sc.shards = cfg->shards;
    return weir_spawn("per-key", sizeof(sb_rec), sizeof(double), sb_key, NULL, sb_make, NULL, &sc);
}

static weir_pipeline_config sb_pcfg(const sb_cfg *cfg, weir_exec_mode m)
{
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.print_stats = false;
    pc.mode = m;
    if (cfg->batch)
        pc.batch = cfg->batch;
    return pc;
}

/* ------------------------------------------------------------- the serial */

typedef struct sb_slot {
    uint64_t key, n;
    double mean;
    bool used;
} sb_slot;

static double sb_serial(const sb_rec *recs, uint64_t n, uint64_t keys)
{
    size_t cap = 16;
    while (cap < 2 * keys)
        cap *= 2;
    sb_slot *t = calloc(cap, sizeof *t);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t h = (size_t)(recs[i].key * 0x9e3779b97f4a7c15ULL >> 20) & (cap - 1);
        while (t[h].used && t[h].key != recs[i].key)
            h = (h + 1) & (cap - 1);
        sb_slot *s = &t[h];
        s->used = true;
        s->key = recs[i].key;
        double x = (double)(recs[i].val % 1000);
        s->n++;
        s->mean += (x - s->mean) / (double)s->n; /* as weir_mean */
        sum += s->mean;
    }
    free(t);
    return sum;
}

/* ------------------------------------------------------ throughput run */

/* One run of the pipeline over `recs`; the time of start + join. */
static int sb_run(weir_runtime *rt, const sb_cfg *cfg, weir_exec_mode m, const sb_rec *recs,
                  uint64_t n, double want, uint64_t *ns, uint64_t *cpu_ns, uint64_t *tail_ns,
                  uint64_t *spawned)
{
    sb_sum s = {0, 0};
    atomic_store(&sb_first_finish_ns, 0);
    weir_term *t[3] = {weir_array_source("src", recs, n, sizeof(sb_rec)), sb_spawn(cfg),
                       weir_sink("sum", sizeof(double), sb_sink, &s)};
    weir_pipeline_config pc = sb_pcfg(cfg, m);
    weir_pipeline *p = NULL;
    int r = weir_pipeline_create(rt, weir_seq(3, t), &pc, &p);
    if (r < 0) {
        fprintf(stderr, "weir-bench: spawn: create: %s\n", weir_last_error());
        return -1;
    }
    uint64_t c0 = bench_cpu_ns(), t0 = bench_now_ns();
    r = weir_pipeline_run(p);
    uint64_t t1 = bench_now_ns();
    *ns = t1 - t0;
    *cpu_ns = bench_cpu_ns() - c0;
    uint64_t f = atomic_load(&sb_first_finish_ns);
    *tail_ns = f && t1 > f ? t1 - f : 0;
    *spawned = 0;
    for (unsigned i = 0, nt = weir_pipeline_term_count(p); i < nt; i++) {
        weir_term_stats ts;
        if (weir_pipeline_term_stats(p, i, &ts) == 0)
            *spawned += ts.spawned;
    }
    if (r < 0)
        fprintf(stderr, "weir-bench: spawn/%s: %s\n", weir_exec_mode_name(m),
                weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    if (r < 0)
        return -1;
    if (s.sum != want || atomic_load(&s.count) != n) {
        fprintf(stderr,
                "weir-bench: spawn/%s: %" PRIu64 " means summing to %.17g, want %" PRIu64
                " and %.17g\n",
                weir_exec_mode_name(m), (uint64_t)atomic_load(&s.count), s.sum, n, want);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------- differential run */

typedef struct sb_pass {
    const sb_rec *recs; /* K records, K keys */
    uint64_t k;
    sb_sum *sum;
    bool memory;
    uint64_t t[3];
    uint64_t rss0, rss1, heap0, heap1;
} sb_pass;

static int sb_wait(weir_emit *e, sb_sum *s, uint64_t n)
{
    const struct timespec ts = {0, 20000};
    while (atomic_load_explicit(&s->count, memory_order_relaxed) < n) {
        if (weir_emit_stopping(e))
            return -ECANCELED;
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int sb_emit(weir_emit *e, const sb_rec *recs, uint64_t k)
{
    for (uint64_t i = 0; i < k; i += 512) {
        int r = weir_emit_records(e, recs + i, k - i < 512 ? k - i : 512);
        if (r < 0)
            return r;
    }
    return 0;
}

static int sb_pass_fn(void *st, weir_emit *e)
{
    sb_pass *ps = st;
    if (ps->memory) {
        malloc_trim(0);
        ps->rss0 = bench_rss_kib();
        ps->heap0 = mallinfo2().uordblks;
    }
    ps->t[0] = bench_now_ns();
    int r = sb_emit(e, ps->recs, ps->k);
    if (r == 0)
        r = sb_wait(e, ps->sum, ps->k);
    ps->t[1] = bench_now_ns();
    if (r == 0 && ps->memory) {
        ps->rss1 = bench_rss_kib();
        ps->heap1 = mallinfo2().uordblks;
    }
    if (r == 0)
        r = sb_emit(e, ps->recs, ps->k);
    if (r == 0)
        r = sb_wait(e, ps->sum, 2 * ps->k);
    ps->t[2] = bench_now_ns();
    return r;
}

/* Creation by difference of the two passes; memory from the first
 * pipeline. @return 0 or -1. */
static int sb_twopass(weir_runtime *rt, const sb_cfg *cfg, weir_exec_mode m, const sb_rec *perm,
                      uint64_t k, double *create_us, double *rss_b, double *heap_b)
{
    const uint64_t rounds = (10000 + k - 1) / k;
    double diff = 0;
    for (uint64_t round = 0; round < rounds; round++) {
        sb_sum s = {0, 0};
        sb_pass ps = {perm, k, &s, round == 0, {0, 0, 0}, 0, 0, 0, 0};
        weir_term *t[3] = {weir_blocking_source("src", sizeof(sb_rec), sb_pass_fn, &ps),
                           sb_spawn(cfg), weir_sink("sum", sizeof(double), sb_sink, &s)};
        weir_pipeline_config pc = sb_pcfg(cfg, m);
        weir_pipeline *p = NULL;
        if (weir_pipeline_create(rt, weir_seq(3, t), &pc, &p) < 0) {
            fprintf(stderr, "weir-bench: spawn: create: %s\n", weir_last_error());
            return -1;
        }
        if (weir_pipeline_run(p) < 0) {
            fprintf(stderr, "weir-bench: spawn/%s: %s\n", weir_exec_mode_name(m),
                    weir_pipeline_error(p));
            weir_pipeline_destroy(p);
            return -1;
        }
        weir_pipeline_destroy(p);
        diff += (double)(ps.t[1] - ps.t[0]) - (double)(ps.t[2] - ps.t[1]);
        if (round == 0) {
            *rss_b = ((double)ps.rss1 - (double)ps.rss0) * 1024.0 / (double)k;
            *heap_b = ((double)ps.heap1 - (double)ps.heap0) / (double)k;
        }
    }
    *create_us = diff / 1000.0 / (double)(rounds * k);
    return 0;
}

/* The factory alone: constructors and destroy, one thread, in its CPU
 * time. */
static double sb_factory_us(void)
{
    const unsigned n = 20000;
    uint64_t t0 = sb_thread_cpu_ns();
    for (unsigned i = 0; i < n; i++)
        weir_term_destroy(sb_make(NULL, i));
    return (double)(sb_thread_cpu_ns() - t0) / 1000.0 / n;
}

/* ---------------------------------------------------------------- output */

typedef struct sb_row {
    const char *variant;
    unsigned workers;
    uint64_t keys, items, median, minv, spawned;
    unsigned runs;
    double cpu_ms, cpu_vs_k10, tail_ms, vs_k10, create_us, create_cpu_us, create2_us, factory_us,
        rss_b, heap_b;
} sb_row;

static void sb_num(const bench_opts *o, const char *key, double v, int prec)
{
    if (o->json && isfinite(v))
        printf(",\"%s\":%.*f", key, prec, v);
    else if (o->json)
        printf(",\"%s\":null", key);
    else if (isfinite(v))
        printf("  %s=%.*f", key, prec, v);
}

static void sb_print(const bench_opts *o, const sb_row *r)
{
    double ips = (double)r->items * 1e9 / (double)r->median;
    if (o->json)
        printf("{\"bench\":\"spawn\",\"variant\":\"%s\",\"workers\":%u,\"keys\":%" PRIu64
               ",\"items\":%" PRIu64 ",\"median_ns\":%" PRIu64 ",\"min_ns\":%" PRIu64
               ",\"runs\":%u,\"items_per_s\":%.0f,\"spawned\":%" PRIu64,
               r->variant, r->workers, r->keys, r->items, r->median, r->minv, r->runs, ips,
               r->spawned);
    else
        printf("%-6s %-8s %7u %7" PRIu64 " %11.3f %11.3f %12.0f", "spawn", r->variant, r->workers,
               r->keys, (double)r->median / 1e6, (double)r->minv / 1e6, ips);
    sb_num(o, "vs_k10", r->vs_k10, 3);
    sb_num(o, "cpu_ms", r->cpu_ms, 1);
    sb_num(o, "cpu_vs_k10", r->cpu_vs_k10, 3);
    sb_num(o, "tail_ms", r->tail_ms, 2);
    sb_num(o, "create_us", r->create_us, 3);
    sb_num(o, "create_cpu_us", r->create_cpu_us, 3);
    sb_num(o, "creates_per_s", r->create_cpu_us > 0 ? 1e6 / r->create_cpu_us : NAN, 0);
    sb_num(o, "create2_us", r->create2_us, 3);
    sb_num(o, "factory_us", r->factory_us, 3);
    sb_num(o, "rss_b", r->rss_b, 0);
    sb_num(o, "heap_b", r->heap_b, 0);
    printf(o->json ? "}\n" : "\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------ main */

static int sb_parse(const bench_opts *o, int argc, char **argv, sb_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->keys[0] = 10;
    cfg->keys[1] = 1000;
    cfg->keys[2] = 100000;
    cfg->nkeys = 3;
    cfg->items = o->has_n ? o->n : 1000000;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        uint64_t u;
        int m;
        if ((m = bench_opt_value(argc, argv, &i, "--keys", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", val);
            cfg->nkeys = 0;
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (cfg->nkeys == SB_MAXK || !bench_parse_u64(tok, &u) || u < 1 ||
                    u > UINT64_C(100000000))
                    return bench_usage_error("--keys '%s': up to %d counts in 1..1e8", val,
                                             SB_MAXK);
                cfg->keys[cfg->nkeys++] = u;
            }
            if (!cfg->nkeys)
                return bench_usage_error("--keys: empty list");
        } else if ((m = bench_opt_value(argc, argv, &i, "--items", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u < 1 || u > UINT64_C(10000000000))
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--items '%s'", val);
            cfg->items = u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--shards", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u < 1 || u > WEIR_KEYED_MAX_SHARDS)
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--shards '%s'", val);
            cfg->shards = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--batch", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u < 1 || u > (1u << 20))
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--batch '%s'", val);
            cfg->batch = (unsigned)u;
        } else {
            return bench_usage_error("spawn: unknown option or argument '%s'", argv[i]);
        }
    }
    return 0;
}

enum { SV_SERIAL, SV_POOL, SV_THREADS, SV_N };
static const char *const sv_names[SV_N] = {"serial", "pool", "threads"};

int bench_spawn(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        puts("Usage: weir-bench spawn [--keys K1,K2,..] [--items N] [--shards S] [--batch B]\n"
             "  records of K keys (uniform) through weir_spawn: per key a sub-pipeline\n"
             "  map -> running mean made at its first record; the means, in input order,\n"
             "  summed by a sink. Variants: serial (a table per key), pool, threads.\n"
             "  Defaults: K = 10,1000,100000, N = 1M (the same for every K), shards 16,\n"
             "  --runs 3. Extra: vs_k10 (items/s against K = 10), cpu_ms and cpu_vs_k10\n"
             "  (process CPU time of a run, and its ratio), tail_ms (the end of the\n"
             "  input: every sub-pipeline ends), create_us / create_cpu_us (factory +\n"
             "  compile, from the factory's entry to the first record's map call, wall\n"
             "  and thread CPU time), creates_per_s (1e6 / create_cpu_us),\n"
             "  create2_us (first pass of K new keys minus a second pass\n"
             "  of the same records, per key), factory_us (constructors alone), rss_b and\n"
             "  heap_b (bytes per live sub-pipeline: statm and mallinfo2 with K live).");
        return 0;
    }
    sb_cfg cfg;
    int rc = sb_parse(o, argc, argv, &cfg);
    if (rc == 0)
        rc = bench_check_variants(o, sv_names, SV_N);
    if (rc != 0)
        return rc;
    const unsigned runs = o->has_runs ? o->runs : 3;
    const unsigned nr = runs < 64 ? runs : 64;
    const uint64_t n = cfg.items;
    sb_rec *recs = malloc(n * sizeof *recs);
    uint64_t maxk = 0;
    for (size_t i = 0; i < cfg.nkeys; i++)
        maxk = cfg.keys[i] > maxk ? cfg.keys[i] : maxk;
    sb_rec *perm = malloc(maxk * sizeof *perm);
    if (!recs || !perm) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    weir_runtime *rt = NULL;
    if ((bench_variant_selected(o, "pool") || bench_variant_selected(o, "threads")) &&
        bench_runtime_create(o, &rt) < 0)
        return BENCH_EXIT_FAIL;
    const unsigned workers = rt ? weir_runtime_workers(rt) : 1;
    const double factory_us = sb_factory_us();
    bench_note(o, "spawn items=%" PRIu64 " shards=%u runs=%u workers=%u cpus=%u", n,
               cfg.shards ? cfg.shards : 16, runs, workers, bench_online_cpus());
    if (!o->json)
        printf("%-6s %-8s %7s %7s %11s %11s %12s  %s\n", "bench", "variant", "workers", "keys",
               "median_ms", "min_ms", "items_per_s", "extra");
    int status = 0;
    double k10[SV_N] = {NAN, NAN, NAN}, k10cpu[SV_N] = {NAN, NAN, NAN};
    for (size_t ki = 0; ki < cfg.nkeys; ki++) {
        const uint64_t k = cfg.keys[ki];
        uint64_t x = 0x9e3779b97f4a7c15ULL ^ k;
        for (uint64_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            recs[i] = (sb_rec){x % k, i};
        }
        /* the differential run's K keys, once each, shuffled */
        for (uint64_t i = 0; i < k; i++)
            perm[i] = (sb_rec){i, i};
        for (uint64_t i = k; i > 1; i--) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint64_t j = x % i;
            sb_rec tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        uint64_t ts[64];
        double want = sb_serial(recs, n, k);
        for (int v = 0; v < SV_N; v++) {
            if (!bench_variant_selected(o, sv_names[v]))
                continue;
            const weir_exec_mode m = v == SV_THREADS ? WEIR_EXEC_THREADS : WEIR_EXEC_POOL;
            sb_row row = {.variant = sv_names[v],
                          .workers = v == SV_SERIAL ? 1 : workers,
                          .keys = k,
                          .items = n,
                          .runs = nr,
                          .cpu_ms = NAN,
                          .cpu_vs_k10 = NAN,
                          .tail_ms = NAN,
                          .vs_k10 = NAN,
                          .create_us = NAN,
                          .create_cpu_us = NAN,
                          .create2_us = NAN,
                          .factory_us = NAN,
                          .rss_b = NAN,
                          .heap_b = NAN};
            bool fail = false;
            uint64_t cns = 0, ccpu = 0, cn = 0, tails[64], cpus[64];
            for (unsigned r = 0; r < o->warmup + nr && !fail; r++) {
                uint64_t ns = 0, cpu = 0, tail = 0, spawned = 0;
                if (v == SV_SERIAL) {
                    uint64_t c0 = bench_cpu_ns(), t0 = bench_now_ns();
                    volatile double got = sb_serial(recs, n, k);
                    ns = bench_now_ns() - t0;
                    cpu = bench_cpu_ns() - c0;
                    fail = got != want;
                } else {
                    atomic_store(&sb_create_ns, 0);
                    atomic_store(&sb_create_cpu_ns, 0);
                    atomic_store(&sb_creates, 0);
                    fail = sb_run(rt, &cfg, m, recs, n, want, &ns, &cpu, &tail, &spawned) != 0;
                    row.spawned = spawned;
                }
                if (r >= o->warmup) {
                    ts[r - o->warmup] = ns;
                    tails[r - o->warmup] = tail;
                    cpus[r - o->warmup] = cpu;
                    cns += atomic_load(&sb_create_ns);
                    ccpu += atomic_load(&sb_create_cpu_ns);
                    cn += atomic_load(&sb_creates);
                }
            }
            if (fail) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            row.minv = bench_min(ts, nr);
            row.median = bench_median(ts, nr);
            if (k == 10)
                k10[v] = (double)row.median;
            row.vs_k10 = isfinite(k10[v]) ? k10[v] / (double)row.median : NAN;
            row.cpu_ms = (double)bench_median(cpus, nr) / 1e6;
            if (k == 10)
                k10cpu[v] = row.cpu_ms;
            row.cpu_vs_k10 = isfinite(k10cpu[v]) ? k10cpu[v] / row.cpu_ms : NAN;
            if (v != SV_SERIAL) {
                row.tail_ms = (double)bench_median(tails, nr) / 1e6;
                row.create_us = cn ? (double)cns / 1000.0 / (double)cn : NAN;
                row.create_cpu_us = cn ? (double)ccpu / 1000.0 / (double)cn : NAN;
                row.factory_us = factory_us;
                double rss = NAN, heap = NAN;
                if (sb_twopass(rt, &cfg, m, perm, k, &row.create2_us, &rss, &heap) != 0) {
                    status = BENCH_EXIT_FAIL;
                    continue;
                }
                if (k >= 1000) {
                    row.rss_b = rss;
                    row.heap_b = heap;
                }
            }
            sb_print(o, &row);
        }
    }
    weir_runtime_destroy(rt);
    free(perm);
    free(recs);
    return status;
}
