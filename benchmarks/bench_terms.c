/*
 * weir-bench — the term-layer benchmarks.
 *
 *   fanout  the seed's benchmark: a source of n records {id, value} broadcast
 *           to N branches, branch i = multiply(i+1) -> sink, every sink
 *           appending to one shared collector under one lock. Throughput,
 *           live threads and resident-memory growth per execution mode.
 *   chain   the per-record cost of source -> S trivial terms (x + 1 on an
 *           int64) -> sink, by batch size, against the same S functions
 *           called in a plain loop, and against oneTBB's parallel_pipeline
 *           and flow::graph (bench_terms_tbb.cpp) when oneTBB is built in;
 *           and the same chain on variable-size records (WEIR_VARSIZE, 8 to
 *           256 bytes, x + 1 on the first 8), against its own plain loop.
 *
 * Both time their runs themselves (rather than through bench_run()) because
 * their rows carry per-run extras (threads, RSS, batch) and their variants
 * are swept over a second axis (N, B). The conventions of bench_run() are
 * kept: warm-up runs first, the median and minimum of the timed runs, the
 * runtime alive only while a variant that needs it runs, its counters reset
 * after the warm-up and summed over the timed runs, every result checked
 * (a wrong one is exit status 1).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

#include "bench.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- shared helpers ------------------------------------------------------- */

#define LIST_MAX 64

/* Parse a comma-separated list of integers in [lo, hi] ("20,200,2k"). */
static int parse_u64_list(const char *opt, const char *text, uint64_t lo, uint64_t hi,
                          uint64_t *out, size_t *count)
{
    char buf[512];
    if (strlen(text) >= sizeof buf)
        return bench_usage_error("%s: list too long", opt);
    strcpy(buf, text);
    *count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (!bench_parse_u64(tok, &v))
            return bench_usage_error("%s '%s': '%s' is not a non-negative integer", opt, text, tok);
        if (v < lo || v > hi)
            return bench_usage_error("%s '%s': %" PRIu64 " out of range [%" PRIu64 ", %" PRIu64 "]",
                                     opt, text, v, lo, hi);
        if (*count >= LIST_MAX)
            return bench_usage_error("%s '%s': more than %d values", opt, text, LIST_MAX);
        out[(*count)++] = v;
    }
    if (*count == 0)
        return bench_usage_error("%s '%s': empty list", opt, text);
    return 0;
}

static int parse_one_u64(const char *opt, const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!bench_parse_u64(text, out))
        return bench_usage_error("%s '%s': not a non-negative integer", opt, text);
    if (*out < lo || *out > hi)
        return bench_usage_error("%s %s: out of range [%" PRIu64 ", %" PRIu64 "]", opt, text, lo,
                                 hi);
    return 0;
}

/* k * (k + 1) / 2 modulo 2^64 (exact whenever it fits). */
static uint64_t tri(uint64_t k)
{
    return (k % 2 == 0) ? (k / 2) * (k + 1) : k * ((k + 1) / 2);
}

/* Give freed memory back to the kernel so that the next run's RSS growth is
 * its own and not hidden by pages the previous run left in malloc's free
 * lists. Outside every timed region. */
static void release_free_memory(void)
{
    malloc_trim(0);
}

/* Wait for a pipeline, at most `timeout_ns`. A pipeline that does not finish
 * in time is cancelled; one that does not even finish after the cancel is
 * reported and the process exits (it cannot be destroyed safely). */
static int join_or_die(weir_pipeline *p, const char *what, uint64_t timeout_ns)
{
    int rc = weir_pipeline_join_for(p, timeout_ns);
    if (rc != -ETIMEDOUT)
        return rc;
    fprintf(stderr, "weir-bench: %s: not finished after %.1f s: cancelling\n", what,
            (double)timeout_ns / 1e9);
    weir_pipeline_print_stats(p, stderr);
    weir_pipeline_cancel(p);
    rc = weir_pipeline_join_for(p, UINT64_C(10000000000));
    if (rc == -ETIMEDOUT) {
        fprintf(stderr, "weir-bench: %s: still not finished 10 s after cancel: giving up\n", what);
        fflush(NULL);
        _Exit(BENCH_EXIT_FAIL);
    }
    return -ETIMEDOUT;
}

static void report_pipeline_error(const char *what, int rc, const weir_pipeline *p)
{
    const char *detail = p != NULL ? weir_pipeline_error(p) : "";
    if (detail[0] == '\0')
        detail = weir_terms_last_error();
    fprintf(stderr, "weir-bench: %s: %s%s%s\n", what, weir_strerror(rc), detail[0] ? ": " : "",
            detail);
}

/* ==== fanout ================================================================ */

typedef struct fo_item {
    int64_t id;
    int64_t value;
} fo_item;

enum { FO_DIRECT, FO_THREADS, FO_POOL, FO_POOL_NOLOCK, FO_HYBRID, FO_NMODES };

/* Canonical order: the modes that need the runtime come last and together,
 * so the runtime is created once per N and never runs beside the others. */
static const char *const fo_mode_names[FO_NMODES] = {"direct", "threads", "pool", "pool-nolock",
                                                     "hybrid"};

static bool fo_uses_runtime(int m)
{
    return m == FO_POOL || m == FO_POOL_NOLOCK || m == FO_HYBRID;
}

/* The lock-free variant's sink state: one per branch, each on its own cache
 * line so that branches running on different workers never share one. */
typedef struct fo_branch {
    alignas(64) uint64_t count;
    uint64_t sum;
    uint64_t idsum;
    bool bad;
} fo_branch;

/* The direct baseline's output: a growable array under one mutex, the same
 * discipline as weir_collector (and as the seed's shared list). */
typedef struct fo_list {
    pthread_mutex_t mu;
    fo_item *data;
    size_t count, cap;
} fo_list;

typedef struct fo_cfg {
    uint64_t terms[LIST_MAX];
    size_t nterms;
    uint64_t items;
    bool mode[FO_NMODES];
    unsigned batch, capacity; /* 0 = the pipeline default */
    bool no_timing;
    uint64_t timeout_ns;
} fo_cfg;

typedef struct fo_ctx {
    const bench_opts *o;
    const fo_cfg *cfg;
    weir_runtime *rt;
    fo_item *items;
    size_t n;
    size_t N;
    weir_collector coll; /* pool, threads, hybrid */
    fo_branch *branches; /* pool-nolock: [N] */
    fo_list list;        /* direct */
} fo_ctx;

/* What one timed run measured. */
typedef struct fo_sample {
    uint64_t ns;
    unsigned threads;          /* live threads beyond the main one at the sample */
    unsigned pipeline_threads; /* OS threads the pipeline itself started */
    double rss_delta;          /* bytes, may be negative */
} fo_sample;

static int fo_multiply(void *m, const void *in, weir_emit *e)
{
    fo_item r;
    memcpy(&r, in, sizeof r);
    r.value *= (int64_t)(intptr_t)m;
    return weir_emit_record(e, &r);
}

static int fo_count_sink(void *state, const void *in)
{
    fo_branch *b = state;
    fo_item r;
    memcpy(&r, in, sizeof r);
    b->count++;
    b->sum += (uint64_t)r.value;
    b->idsum += (uint64_t)r.id;
    return 0;
}

/* source * (mul1 * sink1 | ... | mulN * sinkN). NULL children (constructor
 * failures) are reported by weir_pipeline_create(). */
static weir_term *fo_build(fo_ctx *c, bool nolock)
{
    weir_term **br = malloc(c->N * sizeof *br);
    if (br == NULL)
        return NULL;
    for (size_t i = 0; i < c->N; i++) {
        char mul[32], sink[32];
        snprintf(mul, sizeof mul, "mul%zu", i + 1);
        snprintf(sink, sizeof sink, "sink%zu", i + 1);
        weir_term *f = weir_function(mul, sizeof(fo_item), sizeof(fo_item), fo_multiply,
                                     (void *)(intptr_t)(i + 1));
        weir_term *s = nolock ? weir_sink(sink, sizeof(fo_item), fo_count_sink, &c->branches[i])
                              : weir_collect(sink, &c->coll);
        br[i] = weir_seq2(f, s);
    }
    weir_term *par = weir_par(c->N, br);
    free(br);
    return weir_seq2(weir_array_source("src", c->items, c->n, sizeof(fo_item)), par);
}

/* Check every record of the run. Expected: n * N records; value = id * m for
 * some multiplier m in 1..N; sum of values = (1 + ... + N) * (0 + ... + n-1)
 * and sum of ids = N * (0 + ... + n-1), both modulo 2^64. */
static bool fo_verify(const fo_ctx *c, const char *mode, const fo_item *recs, size_t count,
                      const fo_branch *br)
{
    uint64_t n = c->n, N = c->N;
    uint64_t want_count = n * N, want_sum = tri(N) * tri(n - 1), want_ids = N * tri(n - 1);
    uint64_t got_count = 0, sum = 0, ids = 0, bad = 0;
    if (br != NULL) {
        for (size_t i = 0; i < N; i++) {
            got_count += br[i].count;
            sum += br[i].sum;
            ids += br[i].idsum;
            if (br[i].count != n || br[i].sum != (i + 1) * tri(n - 1))
                bad++;
        }
    } else {
        got_count = count;
        for (size_t i = 0; i < count; i++) {
            int64_t id = recs[i].id, v = recs[i].value;
            sum += (uint64_t)v;
            ids += (uint64_t)id;
            bool ok = id == 0 ? v == 0
                              : (id > 0 && v % id == 0 && v / id >= 1 && (uint64_t)(v / id) <= N);
            bad += !ok;
        }
    }
    if (got_count == want_count && sum == want_sum && ids == want_ids && bad == 0)
        return true;
    fprintf(stderr,
            "weir-bench: fanout/%s N=%" PRIu64 " n=%" PRIu64 ": WRONG RESULT: %" PRIu64
            " records (want %" PRIu64 "), value sum %" PRIu64 " (want %" PRIu64 "), id sum %" PRIu64
            " (want %" PRIu64 "), %" PRIu64 " bad %s\n",
            mode, N, n, got_count, want_count, sum, want_sum, ids, want_ids, bad,
            br != NULL ? "branches" : "records");
    return false;
}

/* The direct baseline: the same records, multipliers and locked appends in a
 * plain loop on the calling thread. */
static int fo_run_direct(fo_ctx *c, fo_sample *s)
{
    uint64_t rss0 = bench_rss_kib();
    c->list.count = 0;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c->n; i++) {
        for (size_t b = 0; b < c->N; b++) {
            fo_item r = c->items[i];
            r.value *= (int64_t)(b + 1);
            pthread_mutex_lock(&c->list.mu);
            if (c->list.count == c->list.cap) {
                size_t cap = c->list.cap ? 2 * c->list.cap : 1024;
                fo_item *d = realloc(c->list.data, cap * sizeof *d);
                if (d == NULL) {
                    pthread_mutex_unlock(&c->list.mu);
                    fprintf(stderr, "weir-bench: fanout/direct: out of memory\n");
                    return BENCH_EXIT_FAIL;
                }
                c->list.data = d;
                c->list.cap = cap;
            }
            c->list.data[c->list.count++] = r;
            pthread_mutex_unlock(&c->list.mu);
        }
    }
    s->ns = bench_now_ns() - t0;
    unsigned th = bench_threads();
    s->threads = th > 0 ? th - 1 : 0;
    s->pipeline_threads = 0;
    s->rss_delta = ((double)bench_rss_kib() - (double)rss0) * 1024.0;
    return fo_verify(c, "direct", c->list.data, c->list.count, NULL) ? 0 : BENCH_EXIT_FAIL;
}

/* One run of a pipeline mode. Timed from just before the term tree is built
 * to just after join (compile, thread start-up and thread exit included, as
 * in the seed); threads and RSS are sampled once, right after start. */
static int fo_run_pipeline(fo_ctx *c, int mode, fo_sample *s)
{
    bool nolock = mode == FO_POOL_NOLOCK;
    const char *name = fo_mode_names[mode];
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.mode = mode == FO_THREADS ? WEIR_EXEC_THREADS
                                 : (mode == FO_HYBRID ? WEIR_EXEC_HYBRID : WEIR_EXEC_POOL);
    if (c->cfg->batch)
        pc.batch = c->cfg->batch;
    if (c->cfg->capacity)
        pc.capacity = c->cfg->capacity;
    if (c->cfg->no_timing)
        pc.timing = false;
    if (nolock)
        memset(c->branches, 0, c->N * sizeof *c->branches);
    weir_collector_clear(&c->coll);

    char what[64];
    snprintf(what, sizeof what, "fanout/%s N=%zu", name, c->N);
    uint64_t rss0 = bench_rss_kib();

    uint64_t t0 = bench_now_ns();
    weir_term *t = fo_build(c, nolock);
    weir_pipeline *p = NULL;
    int rc = weir_pipeline_create(mode == FO_THREADS ? NULL : c->rt, t, &pc, &p);
    if (rc < 0) {
        report_pipeline_error(what, rc, NULL);
        weir_term_destroy(t);
        return BENCH_EXIT_FAIL;
    }
    rc = weir_pipeline_start(p);
    unsigned th = bench_threads();
    uint64_t rss1 = bench_rss_kib();
    if (rc == 0 || rc == -EAGAIN)
        rc = join_or_die(p, what, c->cfg->timeout_ns);
    uint64_t t1 = bench_now_ns();

    weir_pipeline_stats ps;
    weir_pipeline_stats_get(p, &ps);
    if (rc < 0)
        report_pipeline_error(what, rc, p);
    weir_pipeline_destroy(p);

    s->ns = t1 - t0;
    s->threads = th > 0 ? th - 1 : 0;
    s->pipeline_threads = ps.threads;
    s->rss_delta = ((double)rss1 - (double)rss0) * 1024.0;
    if (rc < 0)
        return BENCH_EXIT_FAIL;
    bool ok = nolock ? fo_verify(c, name, NULL, 0, c->branches)
                     : fo_verify(c, name, c->coll.data, c->coll.count, NULL);
    return ok ? 0 : BENCH_EXIT_FAIL;
}

static int fo_run(fo_ctx *c, int mode, fo_sample *s)
{
    int rc = mode == FO_DIRECT ? fo_run_direct(c, s) : fo_run_pipeline(c, mode, s);
    release_free_memory();
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs one mode at one N: warm-up, timed runs, one row. */
static int fo_mode(fo_ctx *c, int mode, bench_row *row, double *items_per_s)
{
    const bench_opts *o = c->o;
    unsigned runs = o->has_runs ? o->runs : 3;
    uint64_t *t = calloc(runs, sizeof *t);
    double *rss = calloc(runs, sizeof *rss);
    if (t == NULL || rss == NULL) {
        free(t);
        free(rss);
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    int rc = 0;
    fo_sample s;
    for (unsigned w = 0; w < o->warmup && rc == 0; w++)
        rc = fo_run(c, mode, &s);
    if (c->rt != NULL)
        weir_runtime_stats_reset(c->rt);
    unsigned done = 0, threads = 0, pthreads = 0;
    uint64_t cpu = 0, wall = 0;
    for (; done < runs && rc == 0; done++) {
        uint64_t c0 = bench_cpu_ns();
        rc = fo_run(c, mode, &s);
        cpu += bench_cpu_ns() - c0;
        wall += s.ns;
        t[done] = s.ns;
        rss[done] = s.rss_delta;
        if (s.threads > threads)
            threads = s.threads;
        if (s.pipeline_threads > pthreads)
            pthreads = s.pipeline_threads;
    }
    unsigned workers =
        mode == FO_DIRECT ? 1 : (c->rt && mode != FO_THREADS ? weir_runtime_workers(c->rt) : 0);
    bench_row_init(row, "fanout", fo_mode_names[mode], workers, c->n);
    row->runs = done;
    if (done > 0) {
        row->median_ns = bench_median(t, done);
        row->min_ns = bench_min(t, done);
        qsort(rss, done, sizeof *rss, cmp_double);
        double rss_med = done % 2 ? rss[done / 2] : (rss[done / 2 - 1] + rss[done / 2]) / 2;
        double records = (double)c->n * (double)c->N;
        *items_per_s = row->median_ns ? records * 1e9 / (double)row->median_ns : NAN;
        row->has_result = true;
        row->result = (uint64_t)c->n * c->N;
        bench_row_extra(row, "terms", (double)c->N, true);
        bench_row_extra(row, "items_per_s", *items_per_s, true);
        bench_row_extra(row, "threads", threads, true);
        bench_row_extra(row, "pipeline_threads", pthreads, true);
        bench_row_extra(row, "rss_delta_bytes", rss_med, true);
        bench_row_extra(row, "rss_per_branch_bytes", rss_med / (double)c->N, true);
        if (wall >= 10000000u)
            bench_row_extra(row, "cpu_pct", 100.0 * (double)cpu / (double)wall, false);
    }
    if (c->rt != NULL && fo_uses_runtime(mode)) {
        row->has_stats = true;
        weir_runtime_stats_total(c->rt, &row->stats);
    }
    free(t);
    free(rss);
    return rc;
}

static void fo_help(void)
{
    printf("fanout: the seed's benchmark. A source of n records {int64 id, value} (id = value\n"
           "= 0..n-1) broadcast to N branches; branch i is multiply(i+1) -> sink; every sink\n"
           "appends to one shared weir_collector under one lock, as the seed's Dump did.\n"
           "\n"
           "Options:\n"
           "  --terms LIST     branch counts N to sweep, e.g. 20,200,2000 (default 20,200)\n"
           "  --items n        records from the source (default 500, the seed's n; also --n).\n"
           "                   Larger n (2000+) gives steadier throughput: with n = 500 the\n"
           "                   fixed cost of building and starting the pipeline dominates.\n"
           "  --mode LIST      execution modes (default direct,pool,threads,hybrid; also\n"
           "                   --variants):\n"
           "                   direct       baseline: the same multiplies and locked appends in\n"
           "                                a plain loop on the calling thread\n"
           "                   threads      WEIR_EXEC_THREADS: one OS thread per term, blocking\n"
           "                                bounded queues (the seed's model, in C); no runtime\n"
           "                   pool         WEIR_EXEC_POOL: every term a batched task on the\n"
           "                                runtime's workers\n"
           "                   pool-nolock  pool, but each sink counts and sums into its own\n"
           "                                state instead of the shared locked collector\n"
           "                   hybrid       WEIR_EXEC_HYBRID: the source on its own thread,\n"
           "                                the rest on the pool\n"
           "                   Modes run in the order above whatever the list says; the\n"
           "                   runtime (--workers) lives only while pool/pool-nolock/hybrid run.\n"
           "  --batch B        records per activation (default: the pipeline default, 256)\n"
           "  --capacity C     records per stream (default: the pipeline default, 1024)\n"
           "  --no-timing      weir_pipeline_config.timing = false (no clock reads per\n"
           "                   activation; the per-term ns statistics stay 0)\n"
           "  --timeout S      seconds before a run that has not finished is cancelled and\n"
           "                   reported as a failure (default 300)\n"
           "  --runs R         timed runs per mode and N (default 3 here); --warmup K as usual\n"
           "\n"
           "Each run is timed from just before the term tree is built to just after\n"
           "weir_pipeline_join (compile, start, thread start-up and exit included, as in the\n"
           "seed; weir_pipeline_destroy is not). One row per mode and N:\n"
           "  n                  records from the source; result = records collected (n x N)\n"
           "  median_ns, min_ns  of the timed runs; vs_serial = median / direct's median\n"
           "  workers            runtime workers (1 for direct, 0 for threads: no runtime)\n"
           "  terms              N\n"
           "  items_per_s        n x N / median wall time\n"
           "  threads            threads alive beyond the main thread, read from\n"
           "                     /proc/self/status once right after weir_pipeline_start (as the\n"
           "                     seed sampled); the runtime's workers count. Max over the runs.\n"
           "  pipeline_threads   OS threads the pipeline started (weir_pipeline_stats.threads)\n"
           "  rss_delta_bytes    resident memory growth from just before the build to the same\n"
           "                     sample point (median of the runs); rss_per_branch_bytes = / N.\n"
           "                     The collector is cleared, not freed, between runs, so from the\n"
           "                     first timed run on its memory (the benchmark's output, 16 bytes\n"
           "                     a record) is resident before the baseline and does not count;\n"
           "                     malloc_trim(0) runs after every run so freed pipeline memory\n"
           "                     does not hide the next run's growth.\n"
           "  cpu_pct            process CPU / wall time of the timed runs\n"
           "  steal counters     weir_runtime_stats_total() over the timed runs (runtime modes)\n"
           "Every run is verified: the collector (or the per-branch counts) must hold exactly\n"
           "n x N records, every value a multiple 1..N of its id, and the sums of values and\n"
           "ids must equal (1+..+N)(0+..+n-1) and N(0+..+n-1); a mismatch, a pipeline error or\n"
           "a timeout is exit status 1. After a sweep of several N, a '#' line gives each\n"
           "mode's degradation (best - worst) / best items_per_s over the sweep, the seed's\n"
           "'46 %%' figure.\n");
}

static int fo_parse(const bench_opts *o, int argc, char **argv, fo_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->terms[0] = 20;
    cfg->terms[1] = 200;
    cfg->nterms = 2;
    cfg->items = o->has_n ? o->n : 500;
    cfg->timeout_ns = UINT64_C(300000000000);
    const char *modes = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        uint64_t u;
        int m;
        if (strcmp(argv[i], "--no-timing") == 0) {
            cfg->no_timing = true;
        } else if ((m = bench_opt_value(argc, argv, &i, "--terms", &val)) != 0) {
            if (m < 0 || parse_u64_list("--terms", val, 1, 1000000, cfg->terms, &cfg->nterms))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--items", &val)) != 0) {
            if (m < 0 || parse_one_u64("--items", val, 1, UINT64_C(1000000000), &cfg->items))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--mode", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            modes = val;
        } else if ((m = bench_opt_value(argc, argv, &i, "--batch", &val)) != 0) {
            if (m < 0 || parse_one_u64("--batch", val, 1, UINT32_MAX, &u))
                return BENCH_EXIT_USAGE;
            cfg->batch = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--capacity", &val)) != 0) {
            if (m < 0 || parse_one_u64("--capacity", val, 1, UINT32_MAX, &u))
                return BENCH_EXIT_USAGE;
            cfg->capacity = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--timeout", &val)) != 0) {
            double sec;
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_double(val, &sec) || sec <= 0 || sec > 1e6)
                return bench_usage_error("--timeout '%s': not a positive number of seconds", val);
            cfg->timeout_ns = (uint64_t)(sec * 1e9);
        } else {
            return bench_usage_error("fanout: unknown option or argument '%s'", argv[i]);
        }
    }
    if (modes != NULL && o->nvariants != 0)
        return bench_usage_error("fanout: give either --mode or --variants, not both");
    if (modes == NULL && o->nvariants == 0) {
        cfg->mode[FO_DIRECT] = cfg->mode[FO_POOL] = cfg->mode[FO_THREADS] = true;
        cfg->mode[FO_HYBRID] = true;
        return 0;
    }
    /* Both lists end up as names; --variants is already split by the driver. */
    char names[BENCH_MAX_VARIANTS][BENCH_VARIANT_LEN];
    unsigned nnames = 0;
    if (modes != NULL) {
        char buf[256];
        if (strlen(modes) >= sizeof buf)
            return bench_usage_error("--mode: list too long");
        strcpy(buf, modes);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (nnames >= BENCH_MAX_VARIANTS || strlen(tok) >= BENCH_VARIANT_LEN)
                return bench_usage_error("--mode '%s': unknown mode '%s'", modes, tok);
            strcpy(names[nnames++], tok);
        }
    } else {
        for (unsigned k = 0; k < o->nvariants; k++)
            strcpy(names[nnames++], o->variants[k]);
    }
    if (nnames == 0)
        return bench_usage_error("--mode: empty list");
    for (unsigned k = 0; k < nnames; k++) {
        int found = -1;
        for (int m = 0; m < FO_NMODES; m++)
            if (strcmp(names[k], fo_mode_names[m]) == 0)
                found = m;
        if (found < 0)
            return bench_usage_error("fanout: unknown mode '%s' (known: direct, threads, pool, "
                                     "pool-nolock, hybrid)",
                                     names[k]);
        cfg->mode[found] = true;
    }
    return 0;
}

int bench_fanout(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        fo_help();
        return 0;
    }
    fo_cfg cfg;
    int rc = fo_parse(o, argc, argv, &cfg);
    if (rc != 0)
        return rc;

    fo_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.cfg = &cfg;
    c.n = (size_t)cfg.items;
    c.items = malloc(c.n * sizeof *c.items);
    uint64_t maxN = 0;
    for (size_t k = 0; k < cfg.nterms; k++)
        if (cfg.terms[k] > maxN)
            maxN = cfg.terms[k];
    c.branches = aligned_alloc(alignof(fo_branch), (size_t)maxN * sizeof(fo_branch));
    pthread_mutex_init(&c.list.mu, NULL);
    if (c.items == NULL || c.branches == NULL || weir_collector_init(&c.coll, sizeof(fo_item))) {
        fprintf(stderr, "weir-bench: out of memory\n");
        free(c.items);
        free(c.branches);
        return BENCH_EXIT_FAIL;
    }
    for (size_t i = 0; i < c.n; i++) {
        c.items[i].id = (int64_t)i;
        c.items[i].value = (int64_t)i;
    }

    unsigned runs = o->has_runs ? o->runs : 3;
    char sweep[256] = "";
    for (size_t k = 0, len = 0; k < cfg.nterms && len < sizeof sweep; k++)
        len += (size_t)snprintf(sweep + len, sizeof sweep - len, "%s%" PRIu64, k ? "," : "",
                                cfg.terms[k]);
    bench_note(o,
               "fanout n=%zu N=%s runs=%u warmup=%u cpus=%u (items_per_s = n*N / wall time from "
               "build to join)",
               c.n, sweep, runs, o->warmup, bench_online_cpus());

    int status = 0;
    double best[FO_NMODES], worst[FO_NMODES];
    uint64_t bestN[FO_NMODES], worstN[FO_NMODES];
    unsigned swept[FO_NMODES] = {0};
    for (size_t k = 0; k < cfg.nterms; k++) {
        c.N = (size_t)cfg.terms[k];
        bench_row rows[FO_NMODES];
        double ips[FO_NMODES];
        bool have[FO_NMODES] = {false};
        for (int m = 0; m < FO_NMODES; m++) {
            if (!cfg.mode[m])
                continue;
            if (fo_uses_runtime(m) && c.rt == NULL) {
                if (bench_runtime_create(o, &c.rt) < 0) {
                    status = BENCH_EXIT_FAIL;
                    continue;
                }
            } else if (!fo_uses_runtime(m) && c.rt != NULL) {
                weir_runtime_destroy(c.rt);
                c.rt = NULL;
            }
            ips[m] = NAN;
            int r = fo_mode(&c, m, &rows[m], &ips[m]);
            if (r != 0)
                status = BENCH_EXIT_FAIL;
            have[m] = rows[m].runs > 0;
        }
        weir_runtime_destroy(c.rt);
        c.rt = NULL;
        for (int m = 0; m < FO_NMODES; m++) {
            if (!have[m])
                continue;
            if (have[FO_DIRECT] && rows[FO_DIRECT].median_ns > 0)
                rows[m].ratio = (double)rows[m].median_ns / (double)rows[FO_DIRECT].median_ns;
            if (have[FO_THREADS] && isfinite(ips[FO_THREADS]) && ips[FO_THREADS] > 0)
                bench_row_extra(&rows[m], "vs_threads", ips[m] / ips[FO_THREADS], false);
            bench_print_row(o, &rows[m]);
            if (swept[m] == 0 || ips[m] > best[m]) {
                best[m] = ips[m];
                bestN[m] = c.N;
            }
            if (swept[m] == 0 || ips[m] < worst[m]) {
                worst[m] = ips[m];
                worstN[m] = c.N;
            }
            swept[m]++;
        }
    }
    for (int m = 0; m < FO_NMODES; m++) {
        if (swept[m] < 2)
            continue;
        bench_note(o,
                   "%-11s best %.4g items/s (N=%" PRIu64 "), worst %.4g (N=%" PRIu64
                   "): degradation (best-worst)/best = %.1f %%",
                   fo_mode_names[m], best[m], bestN[m], worst[m], worstN[m],
                   100.0 * (best[m] - worst[m]) / best[m]);
    }
    weir_collector_deinit(&c.coll);
    pthread_mutex_destroy(&c.list.mu);
    free(c.list.data);
    free(c.branches);
    free(c.items);
    return status;
}

/* ==== chain ================================================================= */

#ifdef WEIR_BENCH_TERMS_TBB
/* oneTBB peers, defined in bench_terms_tbb.cpp (keep the two in sync). Each
 * returns 0, or -1 after a message on stderr. */
int bench_tbb_terms_init(unsigned workers);
void bench_tbb_terms_fini(void);
int bench_tbb_chain_pipeline(const int64_t *src, size_t n, unsigned stages, size_t batch,
                             unsigned tokens, weir_map_fn map, weir_sink_fn sink, void *sink_state);
int bench_tbb_chain_graph(const int64_t *src, size_t n, unsigned stages, weir_map_fn map,
                          weir_sink_fn sink, void *sink_state);
#endif

enum {
    CH_DIRECT,
    CH_WEIR,
    CH_TBB_PIPELINE,
    CH_TBB_GRAPH,
    CH_DIRECT_VAR,
    CH_WEIR_VAR,
    CH_NVARIANTS
};
static const char *const ch_names[CH_NVARIANTS] = {"direct",    "weir",       "tbb-pipeline",
                                                   "tbb-graph", "direct-var", "weir-var"};

typedef struct ch_sum {
    uint64_t count;
    uint64_t sum;
    uint64_t bytes; /* variable-size records: their bytes, and */
    uint64_t hash;  /* the sum of their hashes (every byte checked) */
} ch_sum;

/* The variable-size records: n records of 8..256 bytes (lengths from a fixed
 * seed), each starting with its index as an int64 (the x of x + 1), the rest
 * random bytes; one arena, 8-byte aligned starts. */
#define CV_MIN 8
#define CV_MAX 256

typedef struct ch_cfg {
    uint64_t stages;
    uint64_t batch[LIST_MAX];
    size_t nbatch;
    uint64_t items;
    unsigned capacity;
    bool function_terms; /* weir_function instead of weir_map */
    bool no_timing;
    uint64_t timeout_ns;
} ch_cfg;

typedef struct ch_ctx {
    const bench_opts *o;
    const ch_cfg *cfg;
    weir_runtime *rt;
    unsigned workers;
    int64_t *src;
    size_t n;
    /* The callbacks, read through volatile so that the direct loop calls
     * them as the pipeline does instead of inlining them. */
    weir_map_fn map;
    weir_sink_fn sink;
    /* variable-size records (direct-var, weir-var) and what their sink must
     * find: records, sum of x, bytes, sum of the records' hashes */
    weir_bytes *vrec;
    unsigned char *varena;
    unsigned char (*vbuf)[CV_MAX]; /* one output buffer per term */
    ch_sum vwant;
} ch_ctx;

static void ch_add1(void *state, const void *in, void *out)
{
    int64_t x;
    memcpy(&x, in, sizeof x);
    x += 1;
    memcpy(out, &x, sizeof x);
}

static int ch_add1_emit(void *state, const void *in, weir_emit *e)
{
    int64_t x;
    memcpy(&x, in, sizeof x);
    x += 1;
    return weir_emit_record(e, &x);
}

static int ch_sink(void *state, const void *in)
{
    ch_sum *s = state;
    int64_t x;
    memcpy(&x, in, sizeof x);
    s->count++;
    s->sum += (uint64_t)x;
    return 0;
}

/* x + 1 on the first 8 bytes of a variable-size record: the bytes go to the
 * term's own buffer (a map's output stays valid until its next call). */
static void cv_add1(void *state, const void *in, void *out)
{
    const weir_bytes *b = in;
    unsigned char *buf = state;
    memcpy(buf, b->data, b->len);
    int64_t x;
    memcpy(&x, buf, sizeof x);
    x += 1;
    memcpy(buf, &x, sizeof x);
    weir_bytes *o = out;
    o->data = buf;
    o->len = b->len;
}

static int cv_add1_emit(void *state, const void *in, weir_emit *e)
{
    weir_bytes b;
    cv_add1(state, in, &b);
    return weir_emit_bytes(e, b.data, b.len);
}

/* A record's hash, 8 bytes at a time. */
static uint64_t cv_hash(const unsigned char *p, size_t n)
{
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) * (n + 1);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 31;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * UINT64_C(0x94d049bb133111eb);
    return h ^ (h >> 29);
}

static int cv_sink(void *state, const void *in)
{
    ch_sum *s = state;
    const weir_bytes *b = in;
    int64_t x;
    memcpy(&x, b->data, sizeof x);
    s->count++;
    s->sum += (uint64_t)x;
    s->bytes += b->len;
    s->hash += cv_hash(b->data, b->len);
    return 0;
}

/* The records, and the sums their sink must find after S terms (computed
 * here without the terms: x + S, then the hash). @return 0 or -ENOMEM. */
static int cv_make(ch_ctx *c)
{
    size_t n = c->n, S = (size_t)c->cfg->stages;
    c->vrec = malloc(n * sizeof *c->vrec);
    c->varena = malloc(n * CV_MAX);
    c->vbuf = malloc(S * sizeof *c->vbuf);
    if (!c->vrec || !c->varena || !c->vbuf)
        return -ENOMEM;
    uint64_t seed = UINT64_C(0x2545f4914f6cdd1d);
    unsigned char *p = c->varena, tmp[CV_MAX];
    memset(&c->vwant, 0, sizeof c->vwant);
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t len = CV_MIN + (size_t)(seed % (CV_MAX - CV_MIN + 1));
        int64_t x = (int64_t)i;
        memcpy(p, &x, sizeof x);
        for (size_t k = 8; k < len; k++)
            p[k] = (unsigned char)(seed >> (k % 8 * 8)) ^ (unsigned char)k;
        c->vrec[i].data = p;
        c->vrec[i].len = len;
        memcpy(tmp, p, len);
        x += (int64_t)S;
        memcpy(tmp, &x, sizeof x);
        c->vwant.count++;
        c->vwant.sum += (uint64_t)x;
        c->vwant.bytes += len;
        c->vwant.hash += cv_hash(tmp, len);
        p += (len + 7) / 8 * 8;
    }
    return 0;
}

static int cv_run_direct(ch_ctx *c, ch_sum *acc, uint64_t *ns)
{
    weir_map_fn map = *(weir_map_fn volatile *)&c->map;
    weir_sink_fn sink = *(weir_sink_fn volatile *)&c->sink;
    unsigned stages = (unsigned)c->cfg->stages;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c->n; i++) {
        weir_bytes x = c->vrec[i], y;
        for (unsigned s = 0; s < stages; s++) {
            map(c->vbuf[s], &x, &y);
            x = y;
        }
        sink(acc, &x);
    }
    *ns = bench_now_ns() - t0;
    return 0;
}

static int ch_run_direct(ch_ctx *c, ch_sum *acc, uint64_t *ns)
{
    weir_map_fn map = *(weir_map_fn volatile *)&c->map;
    weir_sink_fn sink = *(weir_sink_fn volatile *)&c->sink;
    unsigned stages = (unsigned)c->cfg->stages;
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c->n; i++) {
        int64_t x = c->src[i], y;
        for (unsigned s = 0; s < stages; s++) {
            map(NULL, &x, &y);
            x = y;
        }
        sink(acc, &x);
    }
    *ns = bench_now_ns() - t0;
    return 0;
}

/* src -> f1 -> ... -> fS -> sink, timed from the build to the join; `var`:
 * on the variable-size records. */
static int ch_run_weir(ch_ctx *c, unsigned batch, bool var, ch_sum *acc, uint64_t *ns)
{
    unsigned stages = (unsigned)c->cfg->stages;
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.mode = WEIR_EXEC_POOL;
    pc.batch = batch;
    if (c->cfg->capacity)
        pc.capacity = c->cfg->capacity;
    if (c->cfg->no_timing)
        pc.timing = false;
    char what[64];
    snprintf(what, sizeof what, "chain/%s S=%u B=%u", var ? "weir-var" : "weir", stages, batch);

    uint64_t t0 = bench_now_ns();
    weir_term **t = malloc((stages + 2) * sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    /* the variable-size records: an array source of their weir_bytes */
    size_t size = var ? WEIR_VARSIZE : sizeof(int64_t);
    t[0] = var ? weir_array_source("src", c->vrec, c->n, WEIR_VARSIZE)
               : weir_array_source("src", c->src, c->n, sizeof(int64_t));
    for (unsigned s = 0; s < stages; s++) {
        char name[32];
        snprintf(name, sizeof name, "f%u", s + 1);
        void *st = var ? c->vbuf[s] : NULL;
        weir_function_fn fn = var ? cv_add1_emit : ch_add1_emit;
        t[s + 1] = c->cfg->function_terms ? weir_function(name, size, size, fn, st)
                                          : weir_map(name, size, size, var ? cv_add1 : c->map, st);
    }
    t[stages + 1] = weir_sink("sink", size, var ? cv_sink : c->sink, acc);
    weir_term *root = weir_seq(stages + 2, t);
    free(t);
    weir_pipeline *p = NULL;
    int rc = weir_pipeline_create(c->rt, root, &pc, &p);
    if (rc < 0) {
        report_pipeline_error(what, rc, NULL);
        weir_term_destroy(root);
        return rc;
    }
    rc = weir_pipeline_start(p);
    if (rc == 0 || rc == -EAGAIN)
        rc = join_or_die(p, what, c->cfg->timeout_ns);
    *ns = bench_now_ns() - t0;
    if (rc < 0)
        report_pipeline_error(what, rc, p);
    weir_pipeline_destroy(p);
    return rc;
}

static int ch_run(ch_ctx *c, int v, unsigned batch, ch_sum *acc, uint64_t *ns)
{
    memset(acc, 0, sizeof *acc);
    switch (v) {
    case CH_DIRECT:
        return ch_run_direct(c, acc, ns);
    case CH_WEIR:
        return ch_run_weir(c, batch, false, acc, ns);
    case CH_DIRECT_VAR: {
        weir_map_fn m = c->map;
        weir_sink_fn k = c->sink;
        c->map = cv_add1;
        c->sink = cv_sink;
        int rc = cv_run_direct(c, acc, ns);
        c->map = m;
        c->sink = k;
        return rc;
    }
    case CH_WEIR_VAR:
        return ch_run_weir(c, batch, true, acc, ns);
#ifdef WEIR_BENCH_TERMS_TBB
    case CH_TBB_PIPELINE: {
        uint64_t t0 = bench_now_ns();
        int rc = bench_tbb_chain_pipeline(c->src, c->n, (unsigned)c->cfg->stages, batch,
                                          4 * c->workers, c->map, c->sink, acc);
        *ns = bench_now_ns() - t0;
        return rc;
    }
    case CH_TBB_GRAPH: {
        uint64_t t0 = bench_now_ns();
        int rc =
            bench_tbb_chain_graph(c->src, c->n, (unsigned)c->cfg->stages, c->map, c->sink, acc);
        *ns = bench_now_ns() - t0;
        return rc;
    }
#endif
    default:
        return -ENOSYS;
    }
}

/* Warm-up and timed runs of one variant at one batch size; fills `row`. */
static int ch_variant(ch_ctx *c, int v, unsigned batch, bench_row *row)
{
    const bench_opts *o = c->o;
    unsigned runs = o->runs ? o->runs : 1;
    uint64_t *t = calloc(runs, sizeof *t);
    if (t == NULL) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    uint64_t S = c->cfg->stages, n = c->n;
    uint64_t want_sum = tri(n - 1) + n * S;
    int status = 0;
    unsigned done = 0;
    uint64_t cpu = 0, wall = 0;
    for (unsigned r = 0; r < o->warmup + runs && status == 0; r++) {
        if (r == o->warmup && c->rt != NULL)
            weir_runtime_stats_reset(c->rt);
        ch_sum acc;
        uint64_t ns = 0, c0 = bench_cpu_ns();
        int rc = ch_run(c, v, batch, &acc, &ns);
        uint64_t c1 = bench_cpu_ns();
        if (rc != 0) {
            status = BENCH_EXIT_FAIL;
            break;
        }
        bool var = v == CH_DIRECT_VAR || v == CH_WEIR_VAR;
        if (var && memcmp(&acc, &c->vwant, sizeof acc) != 0) {
            fprintf(stderr,
                    "weir-bench: chain/%s S=%" PRIu64 " B=%u: WRONG RESULT: %" PRIu64
                    " records, sum %" PRIu64 ", %" PRIu64 " bytes, hash %016" PRIx64
                    " (want %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %016" PRIx64 ")\n",
                    ch_names[v], S, batch, acc.count, acc.sum, acc.bytes, acc.hash, c->vwant.count,
                    c->vwant.sum, c->vwant.bytes, c->vwant.hash);
            status = BENCH_EXIT_FAIL;
            break;
        }
        if (!var && (acc.count != n || acc.sum != want_sum)) {
            fprintf(stderr,
                    "weir-bench: chain/%s S=%" PRIu64 " B=%u: WRONG RESULT: %" PRIu64
                    " records (want %" PRIu64 "), sum %" PRIu64 " (want %" PRIu64 ")\n",
                    ch_names[v], S, batch, acc.count, n, acc.sum, want_sum);
            status = BENCH_EXIT_FAIL;
            break;
        }
        if (r >= o->warmup) {
            t[done++] = ns;
            cpu += c1 - c0;
            wall += ns;
        }
    }
    unsigned workers = v == CH_DIRECT || v == CH_DIRECT_VAR ? 1 : c->workers;
    bench_row_init(row, "chain", ch_names[v], workers, n);
    row->runs = done;
    if (done > 0) {
        row->median_ns = bench_median(t, done);
        row->min_ns = bench_min(t, done);
        row->has_result = true;
        row->result = v == CH_DIRECT_VAR || v == CH_WEIR_VAR ? c->vwant.sum : want_sum;
        bench_row_extra(row, "stages", (double)S, true);
        bench_row_extra(row, "batch", batch, true);
        bench_row_extra(row, "ns_per_item", (double)row->median_ns / (double)n, false);
        bench_row_extra(row, "items_per_s", (double)n * 1e9 / (double)row->median_ns, true);
        if (v == CH_DIRECT_VAR || v == CH_WEIR_VAR)
            bench_row_extra(row, "bytes_per_item", (double)c->vwant.bytes / (double)n, false);
        if (wall >= 10000000u)
            bench_row_extra(row, "cpu_pct", 100.0 * (double)cpu / (double)wall, false);
    }
    if ((v == CH_WEIR || v == CH_WEIR_VAR) && c->rt != NULL) {
        row->has_stats = true;
        weir_runtime_stats_total(c->rt, &row->stats);
    }
    free(t);
    return status;
}

static void ch_help(void)
{
    printf("chain: the per-record cost of source -> S trivial terms (x + 1 on an int64) ->\n"
           "sink, by batch size. The source reads n int64 records 0..n-1 from an array; the\n"
           "sink adds every record to a running sum and count (checked: n records, sum =\n"
           "(0+..+n-1) + n*S). All variants call the same two callbacks through pointers:\n"
           "a weir_map_fn (x + 1) per stage and per record, a weir_sink_fn per record.\n"
           "\n"
           "Options:\n"
           "  --stages S       function terms in the chain, 1..1000 (default 3)\n"
           "  --batch LIST     batch sizes B to sweep, e.g. 1,16,256 (default 1,256)\n"
           "  --items n        records per run (default 1M; also --n)\n"
           "  --function-terms the weir stages are weir_function terms (emit per record)\n"
           "                   instead of weir_map terms; direct still calls the map function\n"
           "  --capacity C     records per stream (default: the pipeline default, 1024)\n"
           "  --no-timing      weir_pipeline_config.timing = false (no clock reads per\n"
           "                   activation)\n"
           "  --timeout S      seconds before an unfinished weir run is cancelled and reported\n"
           "                   as a failure (default 300)\n"
           "\n"
           "Variants (--variants; default all that are built):\n"
           "  direct        baseline: the S functions and the sink called in a plain loop\n"
           "                over the same array, one record at a time (no batch: one row)\n"
           "  weir          a WEIR_EXEC_POOL pipeline with batch B: src * f1 * ... * fS * sink\n"
           "                (fused into one stage by the compiler); one row per B\n"
           "  tbb-pipeline  tbb::parallel_pipeline: a serial_in_order source filter copying\n"
           "                B records into a token, S parallel filters, a serial_in_order\n"
           "                sink filter; 4 x workers live tokens; one row per B\n"
           "  tbb-graph     tbb::flow::graph: an input_node, one serial function_node per\n"
           "                term, a serial sink node, one message per record (one row; serial\n"
           "                nodes as weir runs one activation of a term at a time, and so\n"
           "                that the graph's queues hold values rather than n pending tasks)\n"
           "  direct-var    baseline of weir-var: the same loop on variable-size records\n"
           "                (8..256 bytes, lengths from a fixed seed, the index as an int64\n"
           "                in the first 8 bytes, random bytes after): each function copies\n"
           "                the record to a buffer of its own and adds 1 to the int64; the\n"
           "                sink sums the int64s and the bytes and hashes every record\n"
           "  weir-var      weir on those records: src (weir_array_source of their\n"
           "                weir_bytes) * f1 * ... * fS * sink, all WEIR_VARSIZE; one row\n"
           "                per B\n"
           "Variants run in the order direct, tbb-pipeline, weir, tbb-graph, direct-var,\n"
           "weir-var (the weir runtime lives only while weir or weir-var runs, the\n"
           "oneTBB arena of --workers threads only while the TBB variants run).\n"
           "\n"
           "Each run is timed from just before the pipeline is built to just after it has\n"
           "finished (weir: build, compile, start, join; destroy not included). Rows: n =\n"
           "records; vs_serial = median / direct's median; extras stages, batch,\n"
           "ns_per_item = median / n, items_per_s, cpu_pct, ns_over_direct = ns_per_item -\n"
           "direct's ns_per_item (weir-var: direct-var's; vs_serial too); bytes_per_item\n"
           "for the var variants; steal counters for weir. A wrong sum or count (var: also\n"
           "the bytes and the sum of the records' hashes), or a pipeline error, is exit\n"
           "status 1.\n");
}

static int ch_parse(const bench_opts *o, int argc, char **argv, ch_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->stages = 3;
    cfg->batch[0] = 1;
    cfg->batch[1] = 256;
    cfg->nbatch = 2;
    cfg->items = o->has_n ? o->n : 1000000;
    cfg->timeout_ns = UINT64_C(300000000000);
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        uint64_t u;
        int m;
        if (strcmp(argv[i], "--no-timing") == 0) {
            cfg->no_timing = true;
        } else if (strcmp(argv[i], "--function-terms") == 0) {
            cfg->function_terms = true;
        } else if ((m = bench_opt_value(argc, argv, &i, "--stages", &val)) != 0) {
            if (m < 0 || parse_one_u64("--stages", val, 1, 1000, &cfg->stages))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--batch", &val)) != 0) {
            if (m < 0 || parse_u64_list("--batch", val, 1, 1u << 20, cfg->batch, &cfg->nbatch))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--items", &val)) != 0) {
            if (m < 0 || parse_one_u64("--items", val, 1, UINT64_C(10000000000), &cfg->items))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--capacity", &val)) != 0) {
            if (m < 0 || parse_one_u64("--capacity", val, 1, UINT32_MAX, &u))
                return BENCH_EXIT_USAGE;
            cfg->capacity = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--timeout", &val)) != 0) {
            double sec;
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_double(val, &sec) || sec <= 0 || sec > 1e6)
                return bench_usage_error("--timeout '%s': not a positive number of seconds", val);
            cfg->timeout_ns = (uint64_t)(sec * 1e9);
        } else {
            return bench_usage_error("chain: unknown option or argument '%s'", argv[i]);
        }
    }
    return 0;
}

int bench_chain(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        ch_help();
        return 0;
    }
    ch_cfg cfg;
    int rc = ch_parse(o, argc, argv, &cfg);
    if (rc == 0)
        rc = bench_check_variants(o, ch_names, CH_NVARIANTS);
    if (rc != 0)
        return rc;
#ifndef WEIR_BENCH_TERMS_TBB
    for (int v = CH_TBB_PIPELINE; v <= CH_TBB_GRAPH; v++)
        if (o->nvariants != 0 && bench_variant_selected(o, ch_names[v]))
            return bench_usage_error("chain: variant '%s' is not built in (oneTBB not found, "
                                     "-Dtbb=disabled, or bench_terms_tbb.cpp absent)",
                                     ch_names[v]);
#endif

    ch_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.cfg = &cfg;
    c.n = (size_t)cfg.items;
    c.map = ch_add1;
    c.sink = ch_sink;
    c.workers = bench_default_workers(o);
    c.src = malloc(c.n * sizeof *c.src);
    if (c.src == NULL) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    for (size_t i = 0; i < c.n; i++)
        c.src[i] = (int64_t)i;
    if ((bench_variant_selected(o, ch_names[CH_DIRECT_VAR]) ||
         bench_variant_selected(o, ch_names[CH_WEIR_VAR])) &&
        cv_make(&c) != 0) {
        fprintf(stderr, "weir-bench: out of memory for %zu variable-size records\n", c.n);
        free(c.src);
        free(c.vrec);
        free(c.varena);
        free(c.vbuf);
        return BENCH_EXIT_FAIL;
    }

    bench_note(o, "chain n=%zu stages=%" PRIu64 " terms=%s runs=%u warmup=%u cpus=%u", c.n,
               cfg.stages, cfg.function_terms ? "weir_function" : "weir_map", o->runs, o->warmup,
               bench_online_cpus());
#ifndef WEIR_BENCH_TERMS_TBB
    if (o->nvariants == 0)
        bench_note(o, "chain/tbb-pipeline, chain/tbb-graph skipped: oneTBB not built in");
#endif

    int status = 0;
    double direct_ns = NAN, direct_median = NAN;
    /* tbb-pipeline before weir, so that weir's rows can say how far they are
     * from it at the same batch (ns_over_tbb) */
    static const int order[CH_NVARIANTS] = {CH_DIRECT,    CH_TBB_PIPELINE, CH_WEIR,
                                            CH_TBB_GRAPH, CH_DIRECT_VAR,   CH_WEIR_VAR};
    double var_ns = NAN, var_median = NAN; /* direct-var's */
    double tbb_ns[LIST_MAX];
    for (size_t b = 0; b < LIST_MAX; b++)
        tbb_ns[b] = NAN;
    for (int oi = 0; oi < CH_NVARIANTS; oi++) {
        const int v = order[oi];
        if (!bench_variant_selected(o, ch_names[v]))
            continue;
#ifndef WEIR_BENCH_TERMS_TBB
        if (v == CH_TBB_PIPELINE || v == CH_TBB_GRAPH)
            continue;
#endif
        if (v == CH_WEIR || v == CH_WEIR_VAR) {
            if (bench_runtime_create(o, &c.rt) < 0) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            c.workers = weir_runtime_workers(c.rt);
        }
#ifdef WEIR_BENCH_TERMS_TBB
        if (v == CH_TBB_PIPELINE || v == CH_TBB_GRAPH) {
            c.workers = bench_default_workers(o);
            if (bench_tbb_terms_init(c.workers) != 0) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
        }
#endif
        /* direct, direct-var and tbb-graph do not batch: one row each. */
        bool batched = v == CH_WEIR || v == CH_TBB_PIPELINE || v == CH_WEIR_VAR;
        size_t nb = batched ? cfg.nbatch : 1;
        for (size_t b = 0; b < nb; b++) {
            unsigned batch = batched ? (unsigned)cfg.batch[b] : 1;
            bench_row row;
            if (ch_variant(&c, v, batch, &row) != 0)
                status = BENCH_EXIT_FAIL;
            if (row.runs == 0)
                continue;
            double per = (double)row.median_ns / (double)c.n;
            if (v == CH_DIRECT) {
                direct_ns = per;
                direct_median = (double)row.median_ns;
            }
            if (v == CH_DIRECT_VAR) {
                var_ns = per;
                var_median = (double)row.median_ns;
            }
            /* the var rows against direct-var, the others against direct */
            bool var = v == CH_DIRECT_VAR || v == CH_WEIR_VAR;
            double base_median = var ? var_median : direct_median;
            double base_ns = var ? var_ns : direct_ns;
            if (isfinite(base_median) && base_median > 0)
                row.ratio = (double)row.median_ns / base_median;
            if (isfinite(base_ns))
                bench_row_extra(&row, "ns_over_direct", per - base_ns, false);
            if (v == CH_TBB_PIPELINE && b < LIST_MAX)
                tbb_ns[b] = per;
            if (v == CH_WEIR && b < LIST_MAX && isfinite(tbb_ns[b]))
                bench_row_extra(&row, "ns_over_tbb", per - tbb_ns[b], false);
            bench_print_row(o, &row);
        }
#ifdef WEIR_BENCH_TERMS_TBB
        if (v == CH_TBB_PIPELINE || v == CH_TBB_GRAPH)
            bench_tbb_terms_fini();
#endif
        if (c.rt != NULL) {
            weir_runtime_destroy(c.rt);
            c.rt = NULL;
        }
    }
    free(c.src);
    free(c.vrec);
    free(c.varena);
    free(c.vbuf);
    return status;
}

/* ==== build ================================================================= */

/* The fixed cost of a wide pipeline, phase by phase: building the term tree,
 * weir_pipeline_create (compile), start + join with a few records, destroy.
 * Two shapes of N parallel branches:
 *   merge   src * (id_1 | ... | id_N) * merge * count: N pass-all filters
 *           into one merge (the wide merge of issue 8)
 *   sources (src_1 * id_1 | ... | src_N * id_N) * merge * count: N sources
 *           and filters into one merge
 *   fanout  src * (mul_1 * sink_1 | ... | mul_N * sink_N), as in fanout,
 *           each sink counting into its own state (pool-nolock) */

enum { BU_MERGE, BU_SOURCES, BU_FANOUT, BU_NSHAPES };
static const char *const bu_shape_names[BU_NSHAPES] = {"merge", "sources", "fanout"};
enum { BU_BUILD, BU_CREATE, BU_RUN, BU_DESTROY, BU_NPHASES };

typedef struct bu_cfg {
    uint64_t branches[LIST_MAX];
    size_t nbranches;
    uint64_t items;
    bool shape[BU_NSHAPES];
    weir_exec_mode mode;
    uint64_t timeout_ns;
} bu_cfg;

typedef struct bu_ctx {
    const bu_cfg *cfg;
    weir_runtime *rt;
    uint64_t *items;
    size_t N;
    uint64_t count; /* merge shape: the one sink's count */
    fo_branch *branches;
} bu_ctx;

static bool bu_pass(void *state, const void *in)
{
    (void)state;
    (void)in;
    return true;
}

static int bu_count(void *state, const void *in)
{
    (void)in;
    (*(uint64_t *)state)++;
    return 0;
}

static int bu_mul(void *m, const void *in, weir_emit *e)
{
    uint64_t v;
    memcpy(&v, in, sizeof v);
    v *= (uint64_t)(uintptr_t)m;
    return weir_emit_record(e, &v);
}

static int bu_branch_sink(void *state, const void *in)
{
    fo_branch *b = state;
    uint64_t v;
    memcpy(&v, in, sizeof v);
    b->count++;
    b->sum += v;
    return 0;
}

static weir_term *bu_build(bu_ctx *c, int shape)
{
    weir_term **br = malloc(c->N * sizeof *br);
    if (br == NULL)
        return NULL;
    for (size_t i = 0; i < c->N; i++) {
        char a[32], b[32];
        if (shape == BU_MERGE) {
            snprintf(a, sizeof a, "f%zu", i + 1);
            br[i] = weir_filter(a, sizeof(uint64_t), bu_pass, NULL);
        } else if (shape == BU_SOURCES) {
            snprintf(a, sizeof a, "src%zu", i + 1);
            snprintf(b, sizeof b, "f%zu", i + 1);
            br[i] =
                weir_seq2(weir_array_source(a, c->items, (size_t)c->cfg->items, sizeof(uint64_t)),
                          weir_filter(b, sizeof(uint64_t), bu_pass, NULL));
        } else {
            snprintf(a, sizeof a, "mul%zu", i + 1);
            snprintf(b, sizeof b, "sink%zu", i + 1);
            br[i] = weir_seq2(weir_function(a, sizeof(uint64_t), sizeof(uint64_t), bu_mul,
                                            (void *)(uintptr_t)(i + 1)),
                              weir_sink(b, sizeof(uint64_t), bu_branch_sink, &c->branches[i]));
        }
    }
    weir_term *par = weir_par(c->N, br);
    free(br);
    if (shape == BU_SOURCES) {
        weir_term *t[3] = {par, weir_merge("merge"),
                           weir_sink("count", sizeof(uint64_t), bu_count, &c->count)};
        return weir_seq(3, t);
    }
    weir_term *src = weir_array_source("src", c->items, (size_t)c->cfg->items, sizeof(uint64_t));
    if (shape == BU_MERGE) {
        weir_term *t[4] = {src, par, weir_merge("merge"),
                           weir_sink("count", sizeof(uint64_t), bu_count, &c->count)};
        return weir_seq(4, t);
    }
    return weir_seq2(src, par);
}

static bool bu_verify(const bu_ctx *c, int shape)
{
    uint64_t n = c->cfg->items, N = c->N;
    if (shape != BU_FANOUT) {
        if (c->count == n * N)
            return true;
        fprintf(stderr,
                "weir-bench: build/%s N=%zu n=%" PRIu64 ": WRONG RESULT: %" PRIu64
                " records (want %" PRIu64 ")\n",
                bu_shape_names[shape], c->N, n, c->count, n * N);
        return false;
    }
    for (size_t i = 0; i < N; i++) {
        if (c->branches[i].count != n || c->branches[i].sum != (i + 1) * tri(n - 1)) {
            fprintf(stderr,
                    "weir-bench: build/fanout N=%zu n=%" PRIu64
                    ": WRONG RESULT in branch %zu: %" PRIu64 " records (want %" PRIu64 ")\n",
                    c->N, n, i + 1, c->branches[i].count, n);
            return false;
        }
    }
    return true;
}

/* One run: the four phases' times in ns[]. */
static int bu_run(bu_ctx *c, int shape, uint64_t ns[BU_NPHASES])
{
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.mode = c->cfg->mode;
    c->count = 0;
    if (shape == BU_FANOUT)
        memset(c->branches, 0, c->N * sizeof *c->branches);
    char what[64];
    snprintf(what, sizeof what, "build/%s N=%zu", bu_shape_names[shape], c->N);

    uint64_t t0 = bench_now_ns();
    weir_term *t = bu_build(c, shape);
    uint64_t t1 = bench_now_ns();
    weir_pipeline *p = NULL;
    int rc = weir_pipeline_create(pc.mode == WEIR_EXEC_THREADS ? NULL : c->rt, t, &pc, &p);
    uint64_t t2 = bench_now_ns();
    if (rc < 0) {
        report_pipeline_error(what, rc, NULL);
        weir_term_destroy(t);
        return BENCH_EXIT_FAIL;
    }
    rc = weir_pipeline_start(p);
    if (rc == 0 || rc == -EAGAIN)
        rc = join_or_die(p, what, c->cfg->timeout_ns);
    uint64_t t3 = bench_now_ns();
    if (rc < 0)
        report_pipeline_error(what, rc, p);
    weir_pipeline_destroy(p);
    uint64_t t4 = bench_now_ns();
    ns[BU_BUILD] = t1 - t0;
    ns[BU_CREATE] = t2 - t1;
    ns[BU_RUN] = t3 - t2;
    ns[BU_DESTROY] = t4 - t3;
    release_free_memory();
    if (rc < 0)
        return BENCH_EXIT_FAIL;
    return bu_verify(c, shape) ? 0 : BENCH_EXIT_FAIL;
}

static int bu_shape(const bench_opts *o, bu_ctx *c, int shape)
{
    unsigned runs = o->has_runs ? o->runs : 5;
    uint64_t *t[BU_NPHASES + 1];
    int rc = 0;
    for (int k = 0; k <= BU_NPHASES; k++)
        t[k] = calloc(runs ? runs : 1, sizeof *t[k]);
    for (int k = 0; k <= BU_NPHASES; k++)
        if (t[k] == NULL)
            rc = BENCH_EXIT_FAIL;
    uint64_t ns[BU_NPHASES];
    for (unsigned w = 0; w < o->warmup && rc == 0; w++)
        rc = bu_run(c, shape, ns);
    unsigned done = 0;
    for (; done < runs && rc == 0; done++) {
        rc = bu_run(c, shape, ns);
        uint64_t total = 0;
        for (int k = 0; k < BU_NPHASES; k++) {
            t[k][done] = ns[k];
            total += ns[k];
        }
        t[BU_NPHASES][done] = total;
    }
    if (done > 0 && rc == 0) {
        bench_row row;
        unsigned workers =
            c->rt && c->cfg->mode != WEIR_EXEC_THREADS ? weir_runtime_workers(c->rt) : 0;
        char variant[32];
        snprintf(variant, sizeof variant, "%s/%s", bu_shape_names[shape],
                 weir_exec_mode_name(c->cfg->mode));
        bench_row_init(&row, "build", variant, workers, c->cfg->items);
        row.runs = done;
        row.median_ns = bench_median(t[BU_NPHASES], done);
        row.min_ns = bench_min(t[BU_NPHASES], done);
        row.has_result = true;
        row.result = shape != BU_FANOUT ? c->count : (uint64_t)c->cfg->items * c->N;
        static const char *const keys[BU_NPHASES] = {"build_ms", "create_ms", "run_ms",
                                                     "destroy_ms"};
        bench_row_extra(&row, "branches", (double)c->N, true);
        for (int k = 0; k < BU_NPHASES; k++)
            bench_row_extra(&row, keys[k], (double)bench_median(t[k], done) / 1e6, false);
        bench_row_extra(&row, "us_per_branch", (double)row.median_ns / 1e3 / (double)c->N, false);
        bench_print_row(o, &row);
    }
    for (int k = 0; k <= BU_NPHASES; k++)
        free(t[k]);
    return rc;
}

static void bu_help(void)
{
    printf("build: the fixed cost of a pipeline of N parallel branches, phase by phase.\n"
           "\n"
           "Shapes (--shape, default merge,sources,fanout):\n"
           "  merge    src * (id_1 | ... | id_N) * merge * count: N pass-all filters into\n"
           "           one merge and one counting sink\n"
           "  sources  (src_1 * id_1 | ... | src_N * id_N) * merge * count: N sources,\n"
           "           each followed by a pass-all filter, into one merge\n"
           "  fanout   src * (mul_1 * sink_1 | ... | mul_N * sink_N), each sink counting\n"
           "           into its own state (fanout's pool-nolock)\n"
           "\n"
           "Options:\n"
           "  --branches LIST  branch counts N, e.g. 2000,100k (default 100k)\n"
           "  --items n        records from the source (default 1)\n"
           "  --mode M         pool, threads or hybrid (default pool; threads starts one\n"
           "                   OS thread per stage)\n"
           "  --timeout S      seconds before a run is cancelled and failed (default 300)\n"
           "  --runs R         timed runs (default 5 here); --warmup K as usual\n"
           "\n"
           "One row per shape and N; median_ms / min_ms are the whole run (build to\n"
           "destroy), and the extras the medians of each phase:\n"
           "  build_ms     constructing the term tree (names, weir_par, weir_seq)\n"
           "  create_ms    weir_pipeline_create: the compile (stages, streams)\n"
           "  run_ms       weir_pipeline_start + weir_pipeline_join\n"
           "  destroy_ms   weir_pipeline_destroy\n"
           "  us_per_branch  median_ms / N, in microseconds\n"
           "Every run is verified (merge: n x N records counted; fanout: n records and\n"
           "their sum in every branch); a mismatch is exit status 1.\n");
}

int bench_build(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        bu_help();
        return 0;
    }
    bu_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.branches[0] = 100000;
    cfg.nbranches = 1;
    cfg.items = o->has_n ? o->n : 1;
    cfg.mode = WEIR_EXEC_POOL;
    cfg.timeout_ns = UINT64_C(300000000000);
    const char *shapes = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int m;
        if ((m = bench_opt_value(argc, argv, &i, "--branches", &val)) != 0) {
            if (m < 0 ||
                parse_u64_list("--branches", val, 1, 10000000, cfg.branches, &cfg.nbranches))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--items", &val)) != 0) {
            if (m < 0 || parse_one_u64("--items", val, 1, UINT64_C(1000000000), &cfg.items))
                return BENCH_EXIT_USAGE;
        } else if ((m = bench_opt_value(argc, argv, &i, "--shape", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            shapes = val;
        } else if ((m = bench_opt_value(argc, argv, &i, "--mode", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (weir_parse_exec_mode(val, &cfg.mode) < 0)
                return bench_usage_error("build: %s", weir_terms_last_error());
        } else if ((m = bench_opt_value(argc, argv, &i, "--timeout", &val)) != 0) {
            double sec;
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_double(val, &sec) || sec <= 0 || sec > 1e6)
                return bench_usage_error("--timeout '%s': not a positive number of seconds", val);
            cfg.timeout_ns = (uint64_t)(sec * 1e9);
        } else {
            return bench_usage_error("build: unknown option or argument '%s'", argv[i]);
        }
    }
    if (shapes == NULL) {
        cfg.shape[BU_MERGE] = cfg.shape[BU_SOURCES] = cfg.shape[BU_FANOUT] = true;
    } else {
        char buf[64];
        if (strlen(shapes) >= sizeof buf)
            return bench_usage_error("--shape: list too long");
        strcpy(buf, shapes);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int found = -1;
            for (int s = 0; s < BU_NSHAPES; s++)
                if (strcmp(tok, bu_shape_names[s]) == 0)
                    found = s;
            if (found < 0)
                return bench_usage_error(
                    "build: unknown shape '%s' (known: merge, sources, fanout)", tok);
            cfg.shape[found] = true;
        }
    }

    bu_ctx c;
    memset(&c, 0, sizeof c);
    c.cfg = &cfg;
    uint64_t maxN = 0;
    for (size_t k = 0; k < cfg.nbranches; k++)
        if (cfg.branches[k] > maxN)
            maxN = cfg.branches[k];
    c.items = malloc((size_t)cfg.items * sizeof *c.items);
    c.branches = aligned_alloc(alignof(fo_branch), (size_t)maxN * sizeof(fo_branch));
    if (c.items == NULL || c.branches == NULL) {
        fprintf(stderr, "weir-bench: out of memory\n");
        free(c.items);
        free(c.branches);
        return BENCH_EXIT_FAIL;
    }
    for (uint64_t i = 0; i < cfg.items; i++)
        c.items[i] = i;
    if (cfg.mode != WEIR_EXEC_THREADS && bench_runtime_create(o, &c.rt) < 0) {
        free(c.items);
        free(c.branches);
        return BENCH_EXIT_FAIL;
    }
    bench_note(o, "build n=%" PRIu64 " mode=%s runs=%u warmup=%u cpus=%u (phases: medians)",
               cfg.items, weir_exec_mode_name(cfg.mode), o->has_runs ? o->runs : 5, o->warmup,
               bench_online_cpus());
    int status = 0;
    for (size_t k = 0; k < cfg.nbranches; k++) {
        c.N = (size_t)cfg.branches[k];
        for (int s = 0; s < BU_NSHAPES; s++)
            if (cfg.shape[s] && bu_shape(o, &c, s) != 0)
                status = BENCH_EXIT_FAIL;
    }
    weir_runtime_destroy(c.rt);
    free(c.items);
    free(c.branches);
    return status;
}
