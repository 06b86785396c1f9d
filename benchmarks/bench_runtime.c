/*
 * weir-bench — the runtime benchmarks: fib, nqueens, uts, skynet (fork-join),
 * submit (detached jobs injected from a thread outside the runtime) and idle
 * (CPU burnt by a runtime with nothing to do). Each subcommand lists its
 * variants, the baseline first, and hands them to bench_run(); the weir
 * variants are defined here, the baselines in serial.c, the peers in
 * peer_omp.c and peer_tbb.cpp.
 */
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

#include "bench.h"
#include "kernels.h"

/* ---- peers: present or "not built" ---------------------------------------- */

#ifdef WEIR_BENCH_HAVE_OMP
#define OMP_VARIANT(fn)                                                                            \
    {                                                                                              \
        "omp", BENCH_PEER, fn, NULL, NULL, NULL, NULL                                              \
    }
#else
#define OMP_VARIANT(fn)                                                                            \
    {                                                                                              \
        "omp", BENCH_PEER, NULL, NULL, "OpenMP not found or -Dopenmp=disabled", NULL, NULL         \
    }
#endif

#ifdef WEIR_BENCH_HAVE_TBB
static int tbb_setup(bench_ctx *c)
{
    return tbb_peer_init(c->workers) == 0 ? 0 : -1;
}

static void tbb_teardown(bench_ctx *c)
{
    (void)c;
    tbb_peer_fini();
}
#define TBB_VARIANT(fn)                                                                            \
    {                                                                                              \
        "tbb", BENCH_PEER, fn, NULL, NULL, tbb_setup, tbb_teardown                                 \
    }
#else
#define TBB_VARIANT(fn)                                                                            \
    {                                                                                              \
        "tbb", BENCH_PEER, NULL, NULL, "oneTBB not found or -Dtbb=disabled", NULL, NULL            \
    }
#endif

#define WEIR_VARIANT(fn)                                                                           \
    {                                                                                              \
        "weir", BENCH_WEIR, fn, NULL, NULL, NULL, NULL                                             \
    }
#define BASE_VARIANT(name, fn)                                                                     \
    {                                                                                              \
        name, BENCH_BASELINE, fn, NULL, NULL, NULL, NULL                                           \
    }
#define NVARIANTS(a) (sizeof(a) / sizeof((a)[0]))

/* The size of one subcommand: --n if given (checked against [lo, hi]), else the
 * default. Returns 0 or BENCH_EXIT_USAGE. */
static int size_arg(const bench_opts *o, uint64_t def, uint64_t lo, uint64_t hi, uint64_t *n)
{
    *n = o->has_n ? o->n : def;
    if (*n < lo || *n > hi)
        return bench_usage_error("%s: --n %" PRIu64 " out of range [%" PRIu64 ", %" PRIu64 "]",
                                 o->cmd, *n, lo, hi);
    return 0;
}

/* ---- fib: the cost of spawn / sync ---------------------------------------- */

WEIR_TASK_1(long, fib, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fib, n - 1);
    long b = WEIR_CALL(fib, n - 2);
    long a = WEIR_SYNC(fib);
    return a + b;
}

static uint64_t fib_serial_v(bench_ctx *c)
{
    return (uint64_t)serial_fib((int)c->n);
}

static uint64_t fib_weir_v(bench_ctx *c)
{
    return (uint64_t)fib_run(c->rt, (int)c->n);
}

#ifdef WEIR_BENCH_HAVE_OMP
static uint64_t fib_omp_v(bench_ctx *c)
{
    return (uint64_t)omp_fib(c->workers, (int)c->n);
}
#endif
#ifdef WEIR_BENCH_HAVE_TBB
static uint64_t fib_tbb_v(bench_ctx *c)
{
    return (uint64_t)tbb_fib((int)c->n);
}
#endif

int bench_fib(const bench_opts *o, int argc, char **argv)
{
    static const bench_variant variants[] = {
        BASE_VARIANT("serial", fib_serial_v),
        WEIR_VARIANT(fib_weir_v),
        OMP_VARIANT(fib_omp_v),
        TBB_VARIANT(fib_tbb_v),
    };
    static const bench_spec spec = {"fib", variants, NVARIANTS(variants), NULL, false};
    int rc = bench_no_extra_args(argc, argv);
    bench_ctx c = {0};
    if (rc == 0)
        rc = size_arg(o, 30, 0, 92, &c.n);
    return rc ? rc : bench_run(o, &spec, &c);
}

/* ---- nqueens: one task per queen placement, a sync for each --------------- */

WEIR_TASK_4(uint64_t, nq, uint32_t, all, uint32_t, cols, uint32_t, ld, uint32_t, rd)
{
    if (cols == all)
        return 1;
    uint32_t avail = all & ~(cols | ld | rd);
    unsigned k = 0;
    while (avail) {
        uint32_t bit = avail & -avail;
        avail ^= bit;
        WEIR_SPAWN(nq, all, cols | bit, ((ld | bit) << 1) & all, (rd | bit) >> 1);
        k++;
    }
    uint64_t count = 0;
    while (k--)
        count += WEIR_SYNC(nq);
    return count;
}

static uint64_t nq_serial_v(bench_ctx *c)
{
    return serial_nqueens((int)c->n);
}

static uint64_t nq_weir_v(bench_ctx *c)
{
    uint32_t all = (UINT32_C(1) << c->n) - 1;
    return nq_run(c->rt, all, 0, 0, 0);
}

#ifdef WEIR_BENCH_HAVE_OMP
static uint64_t nq_omp_v(bench_ctx *c)
{
    return omp_nqueens(c->workers, (int)c->n);
}
#endif
#ifdef WEIR_BENCH_HAVE_TBB
static uint64_t nq_tbb_v(bench_ctx *c)
{
    return tbb_nqueens((int)c->n);
}
#endif

int bench_nqueens(const bench_opts *o, int argc, char **argv)
{
    static const bench_variant variants[] = {
        BASE_VARIANT("serial", nq_serial_v),
        WEIR_VARIANT(nq_weir_v),
        OMP_VARIANT(nq_omp_v),
        TBB_VARIANT(nq_tbb_v),
    };
    static const bench_spec spec = {"nqueens", variants, NVARIANTS(variants), NULL, false};
    bool board = false;
    int rc = bench_nqueens_shape(argc, argv, &board);
    if (rc == 0 && board)
        return bench_nqueens_board(o);
    bench_ctx c = {0};
    if (rc == 0)
        rc = size_arg(o, 10, 1, 20, &c.n);
    return rc ? rc : bench_run(o, &spec, &c);
}

/* ---- uts: an unbalanced tree (kernels.h), children split in halves --------- */

WEIR_TASK_3(uint64_t, uts, uint64_t, parent, uint32_t, lo, uint32_t, hi)
{
    if (hi - lo == 1) {
        uint64_t child = uts_child(parent, lo);
        uint32_t k = uts_nchildren(child);
        return 1 + (k ? WEIR_CALL(uts, child, 0, k) : 0);
    }
    uint32_t mid = lo + (hi - lo) / 2;
    WEIR_SPAWN(uts, parent, mid, hi);
    uint64_t b = WEIR_CALL(uts, parent, lo, mid);
    uint64_t a = WEIR_SYNC(uts);
    return a + b;
}

static uint64_t uts_serial_v(bench_ctx *c)
{
    return serial_uts((uint32_t)c->n);
}

static uint64_t uts_weir_v(bench_ctx *c)
{
    return 1 + uts_run(c->rt, UTS_ROOT_ID, 0, (uint32_t)c->n);
}

#ifdef WEIR_BENCH_HAVE_OMP
static uint64_t uts_omp_v(bench_ctx *c)
{
    return omp_uts(c->workers, (uint32_t)c->n);
}
#endif
#ifdef WEIR_BENCH_HAVE_TBB
static uint64_t uts_tbb_v(bench_ctx *c)
{
    return tbb_uts((uint32_t)c->n);
}
#endif

/** Default root branching of the UTS tree: 2 714 769 nodes. */
#define UTS_DEFAULT_N 20000

int bench_uts(const bench_opts *o, int argc, char **argv)
{
    static const bench_variant variants[] = {
        BASE_VARIANT("serial", uts_serial_v),
        WEIR_VARIANT(uts_weir_v),
        OMP_VARIANT(uts_omp_v),
        TBB_VARIANT(uts_tbb_v),
    };
    static const bench_spec spec = {"uts", variants, NVARIANTS(variants), "nodes_per_s", true};
    if (argc > 1) /* --tree T1|T3: the published trees, uts.c */
        return bench_uts_published(o, argc, argv);
    int rc = 0;
    bench_ctx c = {0};
    if (rc == 0)
        rc = size_arg(o, UTS_DEFAULT_N, 1, UINT32_MAX, &c.n);
    return rc ? rc : bench_run(o, &spec, &c);
}

/* ---- skynet: a 10-ary tree of tasks over n leaves -------------------------- */

WEIR_TASK_2(uint64_t, skynet, uint64_t, num, uint64_t, size)
{
    if (size == 1)
        return num;
    uint64_t sub = size / 10;
    for (uint64_t i = 1; i < 10; i++)
        WEIR_SPAWN(skynet, num + i * sub, sub);
    uint64_t sum = WEIR_CALL(skynet, num, sub);
    for (int i = 1; i < 10; i++)
        sum += WEIR_SYNC(skynet);
    return sum;
}

static uint64_t skynet_serial_v(bench_ctx *c)
{
    return serial_skynet(c->n);
}

static uint64_t skynet_weir_v(bench_ctx *c)
{
    return skynet_run(c->rt, 0, c->n);
}

#ifdef WEIR_BENCH_HAVE_OMP
static uint64_t skynet_omp_v(bench_ctx *c)
{
    return omp_skynet(c->workers, c->n);
}
#endif
#ifdef WEIR_BENCH_HAVE_TBB
static uint64_t skynet_tbb_v(bench_ctx *c)
{
    return tbb_skynet(c->n);
}
#endif

int bench_skynet(const bench_opts *o, int argc, char **argv)
{
    static const bench_variant variants[] = {
        BASE_VARIANT("serial", skynet_serial_v),
        WEIR_VARIANT(skynet_weir_v),
        OMP_VARIANT(skynet_omp_v),
        TBB_VARIANT(skynet_tbb_v),
    };
    static const bench_spec spec = {"skynet", variants, NVARIANTS(variants), "leaves_per_s", false};
    int rc = bench_no_extra_args(argc, argv);
    bench_ctx c = {0};
    if (rc == 0)
        rc = size_arg(o, 1000000, 1, UINT64_C(1000000000000000000), &c.n);
    if (rc == 0) {
        uint64_t p = 1;
        while (p < c.n)
            p *= 10;
        if (p != c.n)
            rc = bench_usage_error("skynet: --n %" PRIu64 " is not a power of 10", c.n);
    }
    return rc ? rc : bench_run(o, &spec, &c);
}

/* ---- submit: detached jobs injected from the main thread ------------------- */

struct submit_state {
    weir_job *jobs;
    uint64_t n;
    _Atomic uint64_t done;
    weir_latch latch;
    int error; /* first weir_submit() error of a run */
};

/* The job body, also the direct-call baseline: count, and let the last one
 * wake the submitter. */
static void submit_job(weir_worker *w, weir_job *job)
{
    (void)w;
    struct submit_state *st = job->arg;
    /* relaxed: the count itself carries no data; the latch's release/acquire
     * orders what the submitter reads after the wait. */
    if (atomic_fetch_add_explicit(&st->done, 1, memory_order_relaxed) + 1 == st->n)
        weir_latch_set(&st->latch);
}

static void submit_prepare(bench_ctx *c)
{
    struct submit_state *st = c->user;
    for (uint64_t i = 0; i < st->n; i++)
        weir_job_init(&st->jobs[i], submit_job, st, 0);
    atomic_store_explicit(&st->done, 0, memory_order_relaxed);
    weir_latch_init(&st->latch);
    st->error = 0;
}

static uint64_t submit_direct_v(bench_ctx *c)
{
    struct submit_state *st = c->user;
    for (uint64_t i = 0; i < st->n; i++)
        submit_job(NULL, &st->jobs[i]);
    return atomic_load_explicit(&st->done, memory_order_relaxed);
}

static uint64_t submit_weir_v(bench_ctx *c)
{
    struct submit_state *st = c->user;
    for (uint64_t i = 0; i < st->n; i++) {
        int err = weir_submit(c->rt, &st->jobs[i]);
        if (err < 0) {
            fprintf(stderr, "weir-bench: submit: weir_submit: %s\n", weir_strerror(err));
            /* The jobs already submitted still run; wait for them so the
             * next run does not reinitialise jobs in flight. */
            while (atomic_load_explicit(&st->done, memory_order_relaxed) < i)
                bench_sleep(0.001);
            return UINT64_MAX;
        }
    }
    /* A lost job would block here forever: give up after a minute and say so.
     * Jobs may still be in flight, so nothing can be freed: leave at once. */
    if (!weir_latch_wait_for(&st->latch, UINT64_C(60000000000))) {
        fprintf(stderr, "weir-bench: submit: only %" PRIu64 " of %" PRIu64 " jobs ran in 60 s\n",
                atomic_load_explicit(&st->done, memory_order_relaxed), st->n);
        fflush(NULL);
        _Exit(BENCH_EXIT_FAIL);
    }
    return atomic_load_explicit(&st->done, memory_order_relaxed);
}

int bench_submit(const bench_opts *o, int argc, char **argv)
{
    static const bench_variant variants[] = {
        {"direct", BENCH_BASELINE, submit_direct_v, submit_prepare, NULL, NULL, NULL},
        {"weir", BENCH_WEIR, submit_weir_v, submit_prepare, NULL, NULL, NULL},
    };
    static const bench_spec spec = {"submit", variants, NVARIANTS(variants), "tasks_per_s", false};
    int rc = bench_no_extra_args(argc, argv);
    bench_ctx c = {0};
    if (rc == 0)
        rc = size_arg(o, 1000000, 1, 100000000, &c.n);
    if (rc != 0)
        return rc;
    struct submit_state *st = calloc(1, sizeof *st);
    weir_job *jobs = calloc(c.n, sizeof *jobs);
    if (st == NULL || jobs == NULL) {
        free(st);
        free(jobs);
        fprintf(stderr, "weir-bench: submit: out of memory for %" PRIu64 " jobs\n", c.n);
        return BENCH_EXIT_FAIL;
    }
    st->jobs = jobs;
    st->n = c.n;
    c.user = st;
    rc = bench_run(o, &spec, &c);
    free(jobs);
    free(st);
    return rc;
}

/* ---- idle: CPU burnt by a runtime that has nothing to do ------------------- */

/* Variants: "none" sleeps without a runtime (the floor), "weir" sleeps right
 * after creating a runtime, "weir_after" after a burst of fork-join work (so
 * every worker has to go from stealing back to parked). Each run creates and
 * destroys its own runtime: a run measures one idle period of a fresh one. */
static int idle_once(const bench_opts *o, int kind, double seconds, uint64_t *wall, uint64_t *cpu,
                     unsigned *threads, unsigned *workers, weir_worker_stats *stats)
{
    weir_runtime *rt = NULL;
    if (kind != 0) {
        if (bench_runtime_create(o, &rt) < 0)
            return BENCH_EXIT_FAIL;
        *workers = weir_runtime_workers(rt);
        if (kind == 2) {
            long r = fib_run(rt, 27);
            if (r != 196418) {
                fprintf(stderr, "weir-bench: idle: fib(27) = %ld on weir, expected 196418\n", r);
                weir_runtime_destroy(rt);
                return BENCH_EXIT_FAIL;
            }
        }
        weir_runtime_stats_reset(rt);
    }
    *threads = bench_threads();
    uint64_t c0 = bench_cpu_ns(), t0 = bench_now_ns();
    bench_sleep(seconds);
    uint64_t c1 = bench_cpu_ns(), t1 = bench_now_ns();
    *wall = t1 - t0;
    *cpu = c1 - c0;
    if (rt != NULL) {
        weir_runtime_stats_total(rt, stats);
        weir_runtime_destroy(rt);
    }
    return 0;
}

/* Sum the counters of every run, as bench_run() reports the timed runs together. */
static void stats_add(weir_worker_stats *t, const weir_worker_stats *s)
{
    t->tasks_run += s->tasks_run;
    t->spawns += s->spawns;
    t->jobs_submitted += s->jobs_submitted;
    t->steal_attempts += s->steal_attempts;
    t->steals += s->steals;
    t->tasks_stolen += s->tasks_stolen;
    t->steal_empty += s->steal_empty;
    t->steal_contended += s->steal_contended;
    t->leapfrogs += s->leapfrogs;
    t->publishes += s->publishes;
    t->parks += s->parks;
    t->wakeups += s->wakeups;
    t->injected += s->injected;
    t->busy_ns += s->busy_ns;
    t->idle_ns += s->idle_ns;
}

int bench_idle(const bench_opts *o, int argc, char **argv)
{
    static const char *const names[] = {"none", "weir", "weir_after"};
    int rc = bench_no_extra_args(argc, argv);
    if (rc == 0)
        rc = bench_check_variants(o, names, NVARIANTS(names));
    if (rc != 0)
        return rc;
    double seconds = o->has_seconds ? o->seconds : 2.0;
    if (!(seconds > 0 && seconds <= 3600))
        return bench_usage_error("idle: --seconds %g out of range (0, 3600]", seconds);
    if (o->has_n)
        return bench_usage_error("idle: takes --seconds, not --n");
    unsigned runs = o->has_runs ? o->runs : 1;
    uint64_t *wall = calloc(runs, sizeof *wall), *cpu = calloc(runs, sizeof *cpu);
    if (wall == NULL || cpu == NULL) {
        free(wall);
        free(cpu);
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    bench_note(o, "idle seconds=%g runs=%u cpus=%u (n = sleep in ms)", seconds, runs,
               bench_online_cpus());
    int status = BENCH_EXIT_OK;
    for (int kind = 0; kind < 3 && status == BENCH_EXIT_OK; kind++) {
        if (!bench_variant_selected(o, names[kind]))
            continue;
        unsigned workers = 0, threads = 0;
        weir_worker_stats total, one;
        memset(&total, 0, sizeof total);
        unsigned done = 0;
        for (; done < runs; done++) {
            memset(&one, 0, sizeof one);
            status = idle_once(o, kind, seconds, &wall[done], &cpu[done], &threads, &workers, &one);
            if (status != BENCH_EXIT_OK)
                break;
            stats_add(&total, &one);
        }
        if (done == 0)
            break;
        bench_row row;
        bench_row_init(&row, "idle", names[kind], workers, (uint64_t)(seconds * 1000 + 0.5));
        row.runs = done;
        row.min_ns = bench_min(wall, done);
        row.median_ns = bench_median(wall, done);
        uint64_t cpu_med = bench_median(cpu, done);
        double cpu_s = (double)cpu_med / 1e9, wall_s = (double)row.median_ns / 1e9;
        bench_row_extra(&row, "cpu_s", cpu_s, false);
        bench_row_extra(&row, "wall_s", wall_s, false);
        bench_row_extra(&row, "cpu_pct", wall_s > 0 ? 100.0 * cpu_s / wall_s : NAN, false);
        bench_row_extra(&row, "threads", threads, true);
        if (kind != 0) {
            row.has_stats = true;
            row.stats = total;
        }
        bench_print_row(o, &row);
    }
    free(wall);
    free(cpu);
    return status;
}
