/*
 * A random API state machine on several threads (issue 8). Plain main(),
 * runnable under TSan.
 *
 * Each round creates a runtime (1..W workers) and 1..4 pipelines on it, in
 * random modes: src * 1..3 maps * sink, the source finite (0..300 records,
 * often 0 or a few so that a start's stages finish at once) or endless, the
 * sink sometimes stopping its own pipeline at a random record. Then 2..4
 * actor threads call, in random order on random pipelines of the round,
 * what include/weir/terms.h's thread-safety table lets run concurrently:
 * start, stop, cancel, join, join_for (random timeouts), the statistics
 * (and print_stats to /dev/null in rounds whose runtime is not destroyed
 * meanwhile), while the main thread may destroy the runtime under them
 * (include/weir/runtime.h: the pipelines' attachments keep the handle).
 * Every return code is checked against the header's documented set:
 *
 *   start     0; -EALREADY (another start won: exactly one does); -ESHUTDOWN
 *             only once the runtime's destroy has begun
 *   stop      0; -EINVAL only while no start has returned 0 yet
 *   cancel    the same
 *   join      0, -ECANCELED (only after a cancel), -ESHUTDOWN (only after the
 *             runtime's destroy began); -EINVAL only while not started;
 *             join_for also -ETIMEDOUT; every join that returns a result
 *             returns the same one
 *   stats     0 for every term index, -EINVAL past the last; counts agree
 *
 * Plain join is called only where the pipeline must end (a finite source,
 * a stop or a cancel already returned 0), join_for otherwise. When the
 * actors are done, the main thread ends and joins what still runs, and checks
 * the records exactly: a pipeline that returned 0 delivered every record its
 * source produced (all of them when nothing stopped it), one that was
 * cancelled or shut down at most those. Then the actors destroy the
 * pipelines they own concurrently with each other and, in some rounds, with
 * the runtime's destroy (the pipelines no longer run and print no
 * statistics, as the header requires), or after it (some still running:
 * destroy cancels them). Destroy is each handle's last use. Every round ends
 * with weir's live-block count back where it started. A watchdog fails the
 * run on a hang (60 s). Prints one summary line; exits 1 on a broken
 * invariant.
 *
 *   stress_api [--seconds S] [--workers W] [--seed N]
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../stress_common.h"
#include "weir.h"

/* runtime/internal.h: blocks allocated through weir and not yet freed. */
long weir__alloc_live(void);

enum { MAXP = 4, MAXA = 4, NONE = 1 };
enum { OP_START, OP_STOP, OP_CANCEL, OP_JOIN, OP_JOIN_FOR, OP_STATS, OP_PRINT, OP_NAP, NOPS };
static const char *const op_names[NOPS] = {"start", "stop",  "cancel", "join",
                                           "join_for", "stats", "print", "nap"};

static _Atomic int failures;
static _Atomic uint64_t op_counts[NOPS];
static FILE *devnull;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        flockfile(stderr);                                                                         \
        fprintf(stderr, "stress_api: round %" PRIu64 ": ", round_no);                              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        funlockfile(stderr);                                                                       \
        atomic_fetch_add(&failures, 1);                                                            \
    } while (0)

static uint64_t round_no;

static uint64_t hash(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static unsigned rndn(rng *r, unsigned n)
{
    return (unsigned)(rnd(r) % n);
}

/* One pipeline of a round. The flags are test bookkeeping between threads
 * (seq_cst, the default: off the hot path). Each is set *after* the call it
 * records returned, or *before* the call that may cause the result it
 * explains (cancel_called, rt_destroying), so that a check that reads it
 * after a result never blames a correct answer. */
typedef struct pipe_s {
    weir_pipeline *p;
    weir_exec_mode mode;
    bool finite;
    int64_t n;           /* records of a finite source */
    uint64_t stop_at;    /* the sink stops the pipeline at this record (UINT64_MAX: never) */
    unsigned nterms;
    int owner;           /* the actor that destroys it */
    uint64_t src_rng;    /* the source's (one callback at a time) */
    _Atomic uint64_t produced, consumed;
    _Atomic bool started;       /* a start returned 0 */
    _Atomic bool stop_req;      /* a stop returned 0 (or the sink is about to stop) */
    _Atomic bool cancel_called; /* a cancel is being or was called */
    _Atomic bool cancel_req;    /* a cancel returned 0 */
    _Atomic int start_wins, start_already;
    _Atomic int final; /* NONE, or the result every join returns */
} pipe_s;

typedef struct round_s {
    weir_runtime *rt;
    unsigned workers;
    int np, na;
    pipe_s ps[MAXP];
    _Atomic bool rt_destroying; /* set before weir_runtime_destroy() is called */
    bool rt_concurrent;         /* the runtime is destroyed while the actors run */
    _Atomic bool go;
} round_s;

static round_s *R;

static int src_pull(void *state, void *out, size_t max, bool *end)
{
    pipe_s *q = state;
    /* relaxed: the source's own counter; the main thread reads it after
     * join, which synchronises */
    uint64_t done = atomic_load_explicit(&q->produced, memory_order_relaxed);
    q->src_rng = hash(q->src_rng + 1);
    size_t k = 1 + (size_t)(q->src_rng % max);
    if (q->finite && (int64_t)(done + k) > q->n)
        k = (size_t)(q->n - (int64_t)done);
    int64_t *o = out;
    for (size_t i = 0; i < k; i++)
        o[i] = (int64_t)(done + i);
    atomic_store_explicit(&q->produced, done + k, memory_order_relaxed);
    *end = q->finite && (int64_t)(done + k) == q->n;
    return (int)k;
}

static void add_one(void *state, const void *in, void *out)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v += 1;
    memcpy(out, &v, sizeof v);
}

static int sink_fn(void *state, const void *in)
{
    pipe_s *q = state;
    (void)in;
    /* relaxed: read after join */
    uint64_t c = atomic_fetch_add_explicit(&q->consumed, 1, memory_order_relaxed);
    if (c == q->stop_at) {
        /* stop from a callback: allowed by the table ("callbacks too") */
        atomic_store(&q->stop_req, true);
        int r = weir_pipeline_stop(q->p);
        if (r != 0)
            FAIL("stop from the sink returned %d (%s)", r, weir_last_error());
    }
    return 0;
}

/* Record a join result; every join that returns one must return the same. */
static void check_join(pipe_s *q, int i, const char *what, int r, bool started_before)
{
    if (r == -ETIMEDOUT && strcmp(what, "join_for") == 0)
        return;
    if (r == -EINVAL) {
        if (started_before)
            FAIL("pipeline %d: %s returned -EINVAL (not started) after a start returned 0", i,
                 what);
        return;
    }
    if (r != 0 && r != -ECANCELED && r != -ESHUTDOWN) {
        FAIL("pipeline %d (%s): %s returned %d (%s), not in the documented set", i,
             weir_exec_mode_name(q->mode), what, r, weir_pipeline_error(q->p));
        return;
    }
    if (r == -ECANCELED && !atomic_load(&q->cancel_called))
        FAIL("pipeline %d: %s returned -ECANCELED but nobody cancelled", i, what);
    if (r == -ESHUTDOWN && !atomic_load(&R->rt_destroying))
        FAIL("pipeline %d: %s returned -ESHUTDOWN before the runtime's destroy", i, what);
    int exp = NONE;
    if (!atomic_compare_exchange_strong(&q->final, &exp, r) && exp != r)
        FAIL("pipeline %d: %s returned %d, an earlier join %d", i, what, r, exp);
}

static void check_stats(pipe_s *q, int i)
{
    weir_pipeline_stats st;
    weir_pipeline_stats_get(q->p, &st);
    unsigned nt = weir_pipeline_term_count(q->p);
    if (st.terms != q->nterms || nt != q->nterms)
        FAIL("pipeline %d: stats say %u / %u terms, want %u", i, st.terms, nt, q->nterms);
    for (unsigned k = 0; k <= nt; k++) {
        weir_term_stats ts;
        int r = weir_pipeline_term_stats(q->p, k, &ts);
        if (r != (k < nt ? 0 : -EINVAL))
            FAIL("pipeline %d: term_stats(%u) returned %d", i, k, r);
    }
    unsigned ns = weir_pipeline_stream_count(q->p);
    for (unsigned k = 0; k <= ns; k++) {
        weir_stream_stats ss;
        int r = weir_pipeline_stream_stats(q->p, k, &ss);
        if (r != (k < ns ? 0 : -EINVAL))
            FAIL("pipeline %d: stream_stats(%u) returned %d", i, k, r);
    }
}

static void one_op(rng *g, int op, int i)
{
    pipe_s *q = &R->ps[i];
    bool started = atomic_load(&q->started);
    int r;
    switch (op) {
    case OP_START:
        r = weir_pipeline_start(q->p);
        if (r == 0) {
            atomic_store(&q->started, true);
            if (atomic_fetch_add(&q->start_wins, 1) != 0)
                FAIL("pipeline %d: a second start returned 0", i);
        } else if (r == -EALREADY) {
            atomic_fetch_add(&q->start_already, 1);
        } else if (r == -ESHUTDOWN) {
            if (!atomic_load(&R->rt_destroying))
                FAIL("pipeline %d: start returned -ESHUTDOWN before the runtime's destroy", i);
        } else {
            FAIL("pipeline %d (%s): start returned %d (%s)", i, weir_exec_mode_name(q->mode), r,
                 weir_last_error());
        }
        break;
    case OP_STOP:
    case OP_CANCEL:
        if (op == OP_CANCEL)
            atomic_store(&q->cancel_called, true);
        r = op == OP_STOP ? weir_pipeline_stop(q->p) : weir_pipeline_cancel(q->p);
        if (r == 0)
            atomic_store(op == OP_STOP ? &q->stop_req : &q->cancel_req, true);
        else if (r != -EINVAL || started)
            FAIL("pipeline %d: %s returned %d%s", i, op_names[op], r,
                 started ? " after a start returned 0" : "");
        break;
    case OP_JOIN:
        /* only where the pipeline must end; join_for otherwise */
        if (q->finite || atomic_load(&q->stop_req) || atomic_load(&q->cancel_req)) {
            r = weir_pipeline_join(q->p);
            check_join(q, i, "join", r, started);
            break;
        }
        op = OP_JOIN_FOR;
        /* fall through */
    case OP_JOIN_FOR: {
        static const uint64_t tmo[4] = {0, 1000, 200 * 1000, 2 * 1000 * 1000};
        r = weir_pipeline_join_for(q->p, tmo[rndn(g, 4)]);
        check_join(q, i, "join_for", r, started);
        break;
    }
    case OP_STATS:
        check_stats(q, i);
        break;
    case OP_PRINT:
        /* reads the runtime's workers: not concurrently with its destroy */
        if (R->rt_concurrent)
            op = OP_STATS, check_stats(q, i);
        else
            weir_pipeline_print_stats(q->p, devnull);
        break;
    default:
        if (rndn(g, 2))
            sched_yield();
        else
            usleep(rndn(g, 300));
        break;
    }
    atomic_fetch_add_explicit(&op_counts[op], 1, memory_order_relaxed);
}

typedef struct actor {
    int id;
    rng g;
    pthread_t th;
    int phase; /* 0: random calls, 1: destroy the owned pipelines */
} actor;

static void *actor_main(void *arg)
{
    actor *a = arg;
    while (!atomic_load(&R->go))
        sched_yield();
    if (a->phase == 0) {
        static const int weights[NOPS] = {4, 1, 1, 2, 3, 2, 1, 2};
        int total = 0;
        for (int k = 0; k < NOPS; k++)
            total += weights[k];
        unsigned nops = 10 + rndn(&a->g, 40);
        for (unsigned k = 0; k < nops && atomic_load(&failures) == 0; k++) {
            int w = (int)rndn(&a->g, (unsigned)total), op = 0;
            while (w >= weights[op])
                w -= weights[op++];
            one_op(&a->g, op, (int)rndn(&a->g, (unsigned)R->np));
        }
    } else {
        for (int i = 0; i < R->np; i++)
            if (R->ps[i].owner == a->id) {
                weir_pipeline_destroy(R->ps[i].p); /* its last use */
                R->ps[i].p = NULL;
            }
    }
    return NULL;
}

static void run_actors(actor *as, int phase)
{
    atomic_store(&R->go, false);
    for (int k = 0; k < R->na; k++) {
        as[k].phase = phase;
        if (pthread_create(&as[k].th, NULL, actor_main, &as[k]) != 0) {
            fprintf(stderr, "stress_api: pthread_create failed\n");
            exit(2);
        }
    }
}

static void join_actors(actor *as)
{
    for (int k = 0; k < R->na; k++)
        pthread_join(as[k].th, NULL);
}

static void destroy_runtime(void)
{
    atomic_store(&R->rt_destroying, true);
    weir_runtime_destroy(R->rt);
}

/* After the actors: end what still runs, check the records. */
static void settle(pipe_s *q, int i, rng *g, bool may_leave_running)
{
    if (!atomic_load(&q->started)) {
        /* never started, or every start was refused (-ESHUTDOWN) */
        if (atomic_load(&q->start_already) && !atomic_load(&q->start_wins))
            FAIL("pipeline %d: a start returned -EALREADY but none returned 0", i);
        return;
    }
    if (may_leave_running && rndn(g, 3) == 0)
        return; /* destroy cancels and joins it */
    if (!q->finite && !atomic_load(&q->stop_req) && !atomic_load(&q->cancel_req)) {
        if (rndn(g, 2)) {
            atomic_store(&q->stop_req, true);
            if (weir_pipeline_stop(q->p) != 0)
                FAIL("pipeline %d: stop after the actors failed", i);
        } else {
            atomic_store(&q->cancel_called, true);
            if (weir_pipeline_cancel(q->p) != 0)
                FAIL("pipeline %d: cancel after the actors failed", i);
        }
    }
    int r = weir_pipeline_join(q->p);
    check_join(q, i, "join", r, true);
    uint64_t prod = atomic_load(&q->produced), cons = atomic_load(&q->consumed);
    if (r == 0) {
        if (cons != prod)
            FAIL("pipeline %d (%s): join 0 but the sink got %" PRIu64 " of %" PRIu64
                 " records produced",
                 i, weir_exec_mode_name(q->mode), cons, prod);
        if (q->finite && !atomic_load(&q->stop_req) && prod != (uint64_t)q->n)
            FAIL("pipeline %d (%s): join 0 without a stop but %" PRIu64 " of %" PRId64
                 " records produced",
                 i, weir_exec_mode_name(q->mode), prod, q->n);
    } else if (cons > prod) {
        FAIL("pipeline %d: the sink got %" PRIu64 " records, %" PRIu64 " produced", i, cons,
             prod);
    }
}

static _Atomic double deadline;
static _Atomic bool watchdog_quit;

static void *watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watchdog_quit)) {
        double d = atomic_load(&deadline);
        if (d > 0 && stress_now() > d) {
            fprintf(stderr, "stress_api: round %" PRIu64 " hangs (60 s): exiting\n", round_no);
            _exit(1);
        }
        usleep(100 * 1000);
    }
    return NULL;
}

static void one_round(rng *g, unsigned wmax, uint64_t *orders)
{
    const long base = weir__alloc_live();
    memset(R, 0, sizeof *R);
    R->workers = 1 + rndn(g, wmax);
    R->np = 1 + (int)rndn(g, MAXP);
    R->na = 2 + (int)rndn(g, MAXA - 1);
    R->rt_concurrent = rndn(g, 3) == 0;
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = R->workers;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    if (weir_runtime_create(&cfg, &R->rt) != 0) {
        FAIL("runtime (%u workers): %s", R->workers, weir_last_error());
        return;
    }
    static const weir_exec_mode modes[3] = {WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};
    for (int i = 0; i < R->np; i++) {
        pipe_s *q = &R->ps[i];
        q->mode = modes[rndn(g, 3)];
        q->finite = rndn(g, 3) != 0;
        static const int64_t sizes[6] = {0, 1, 3, 17, 100, 300};
        q->n = sizes[rndn(g, 6)];
        q->stop_at = rndn(g, 4) == 0 ? rndn(g, 200) : UINT64_MAX;
        q->owner = (int)rndn(g, (unsigned)R->na);
        q->src_rng = rnd(g);
        atomic_init(&q->final, NONE);
        int nmaps = 1 + (int)rndn(g, 3);
        weir_term *ts[5];
        ts[0] = weir_source("src", sizeof(int64_t), src_pull, q);
        for (int k = 0; k < nmaps; k++) {
            char name[16];
            snprintf(name, sizeof name, "m%d", k);
            ts[1 + k] = weir_map(name, sizeof(int64_t), sizeof(int64_t), add_one, NULL);
        }
        ts[1 + nmaps] = weir_sink("sink", sizeof(int64_t), sink_fn, q);
        q->nterms = (unsigned)nmaps + 2;
        weir_term *t = weir_seq((size_t)nmaps + 2, ts);
        weir_pipeline_config pc;
        weir_pipeline_config_init(&pc);
        pc.mode = q->mode;
        pc.print_stats = false;
        pc.batch = 1 + rndn(g, 64);
        pc.capacity = 1 + rndn(g, 128);
        pc.thread_stack = 64 * 1024;
        int r = weir_pipeline_create(R->rt, t, &pc, &q->p);
        if (r != 0) {
            FAIL("create: %d (%s)", r, weir_last_error());
            weir_term_destroy(t);
            R->np = i;
            break;
        }
    }
    actor as[MAXA];
    for (int k = 0; k < R->na; k++) {
        as[k].id = k;
        as[k].g.s = rnd(g) | 1;
    }
    /* phase 0: random calls; the runtime's destroy may come meanwhile */
    run_actors(as, 0);
    atomic_store(&R->go, true);
    if (R->rt_concurrent) {
        usleep(rndn(g, 2000));
        destroy_runtime();
    }
    join_actors(as);
    /* the end: the runtime first, concurrently with the pipelines' destroys,
     * or after them */
    int order = R->rt_concurrent ? 0 : 1 + (int)rndn(g, 3);
    orders[order]++;
    if (order == 1)
        destroy_runtime();
    for (int i = 0; i < R->np; i++)
        settle(&R->ps[i], i, g, R->rt_concurrent || order == 1);
    run_actors(as, 1);
    atomic_store(&R->go, true);
    if (order == 2)
        destroy_runtime(); /* concurrently: no pipeline runs, none prints */
    join_actors(as);
    if (order == 3)
        destroy_runtime();
    long live = weir__alloc_live();
    if (live != base)
        FAIL("%ld blocks left after the round (order %d)", live - base, order);
}

int main(int argc, char **argv)
{
    stress_opts o;
    int pr = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (pr)
        return pr;
    unsigned wmax = o.workers ? o.workers : 4;
    rng g = {hash((uint64_t)o.seed + 11) | 1};
    R = calloc(1, sizeof *R);
    devnull = fopen("/dev/null", "w");
    if (!R || !devnull)
        return 2;
    pthread_t wd;
    atomic_init(&deadline, 0.0);
    atomic_init(&watchdog_quit, false);
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0)
        return 2;
    /* orders: 0 runtime destroyed under the actors, 1 before the pipelines'
     * destroys, 2 concurrently with them, 3 after them */
    uint64_t orders[4] = {0, 0, 0, 0}, pipelines = 0;
    double end = stress_now() + o.seconds;
    while (atomic_load(&failures) == 0 && stress_now() < end) {
        round_no++;
        atomic_store(&deadline, stress_now() + 60);
        one_round(&g, wmax, orders);
        pipelines += (uint64_t)R->np;
    }
    atomic_store(&watchdog_quit, true);
    pthread_join(wd, NULL);
    fclose(devnull);
    free(R);
    uint64_t calls = 0;
    for (int k = 0; k < NOPS; k++)
        calls += atomic_load(&op_counts[k]);
    printf("stress_api: %" PRIu64 " rounds, %" PRIu64 " pipelines, %" PRIu64
           " calls (start %" PRIu64 ", stop %" PRIu64 ", cancel %" PRIu64 ", join %" PRIu64
           ", join_for %" PRIu64 ", stats %" PRIu64 ", print %" PRIu64
           "); runtime destroyed under the actors %" PRIu64 ", before / with / after the "
           "pipelines' destroys %" PRIu64 " / %" PRIu64 " / %" PRIu64
           ", %d failures (seed %lu, up to %u workers)\n",
           round_no, pipelines, calls, atomic_load(&op_counts[OP_START]),
           atomic_load(&op_counts[OP_STOP]), atomic_load(&op_counts[OP_CANCEL]),
           atomic_load(&op_counts[OP_JOIN]), atomic_load(&op_counts[OP_JOIN_FOR]),
           atomic_load(&op_counts[OP_STATS]), atomic_load(&op_counts[OP_PRINT]), orders[0],
           orders[1], orders[2], orders[3], atomic_load(&failures), o.seed, wmax);
    return atomic_load(&failures) ? 1 : 0;
}
