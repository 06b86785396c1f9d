/*
 * Stress test of the runtime's lifetime (plain main(), runnable under TSan):
 * pipelines destroyed before, after and concurrently with their runtime.
 *
 * Each round creates a runtime and 1..4 pipelines on it (each attached to
 * it), in random modes, each left in one of three states: created (never
 * started), joined (a finite source run to its end, exact count checked) or
 * running (a pool pipeline with an endless source). Then, in a random order:
 *   runtime first    destroy the runtime; each running pipeline's join
 *                    returns -ESHUTDOWN; the statistics say the runtime was
 *                    destroyed; destroy the pipelines (the last detach frees
 *                    the runtime's handle);
 *   concurrent       destroy the runtime on this thread while another thread
 *                    destroys the pipelines that are not running (their
 *                    detaches race with destroy's drop of the owner's
 *                    reference); then the running ones, as above;
 *   pipelines first  the old order (a running one is cancelled by destroy).
 * Every round ends with weir's live-block count back where it started: the
 * handle was freed, once (a double free or a use after free is for the
 * sanitizers to report). Prints one summary line; exits 1 on a broken
 * invariant.
 *
 *   stress_lifetime [--seconds S] [--workers W] [--seed X]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stress_common.h"
#include "weir.h"

/* runtime/internal.h: blocks allocated through weir and not yet freed
 * (declared here: runtime/ and terms/ both have an internal.h). */
long weir__alloc_live(void);

enum { MAXP = 4, N = 2000 };
enum { CREATED, JOINED, RUNNING };
enum { RUNTIME_FIRST, CONCURRENT, PIPELINES_FIRST };

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "stress_lifetime: ");                                                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int count_fn(void *state, const void *in)
{
    (void)in;
    /* relaxed: a counter the main thread reads after join (or only for
     * "not zero any more" while the pipeline runs) */
    atomic_fetch_add_explicit((_Atomic uint64_t *)state, 1, memory_order_relaxed);
    return 0;
}

typedef struct one {
    weir_pipeline *p;
    int state;
    _Atomic uint64_t n;
} one;

typedef struct batch {
    one *ps;
    int np;
} batch;

/* Destroy the pipelines that are not running (the concurrent order). */
static void *destroy_idle(void *arg)
{
    batch *b = arg;
    for (int i = 0; i < b->np; i++)
        if (b->ps[i].state != RUNNING) {
            weir_pipeline_destroy(b->ps[i].p);
            b->ps[i].p = NULL;
        }
    return NULL;
}

static void end_running(one *o, FILE *devnull)
{
    int r = weir_pipeline_join(o->p);
    CHECK(r == -ESHUTDOWN, "running pipeline: join gave %d (%s), want -ESHUTDOWN", r,
          weir_pipeline_error(o->p));
    weir_pipeline_print_stats(o->p, devnull);
    weir_pipeline_destroy(o->p);
    o->p = NULL;
}

static void one_round(unsigned workers, FILE *devnull, uint64_t *pipelines, uint64_t *orders)
{
    const long base = weir__alloc_live();
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    weir_runtime *rt = NULL;
    if (weir_runtime_create(&cfg, &rt) != 0) {
        CHECK(0, "runtime: %s", weir_last_error());
        return;
    }
    static const weir_exec_mode modes[3] = {WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};
    one ps[MAXP];
    int np = 1 + (int)(rnd() % MAXP);
    for (int i = 0; i < np; i++) {
        one *o = &ps[i];
        o->state = (int)(rnd() % 3);
        atomic_init(&o->n, 0);
        /* Running pipelines run on the pool: that is what destroy ends
         * (-ESHUTDOWN); a threads-mode pipeline does not need the runtime. */
        weir_exec_mode m = o->state == RUNNING ? WEIR_EXEC_POOL : modes[rnd() % 3];
        weir_term *src =
            o->state == RUNNING ? weir_counter_source("src", 0) : weir_range_source("src", 0, N, 1);
        weir_term *t = weir_seq(3, (weir_term *[]){src, weir_id("id", 8),
                                                   weir_sink("sink", 8, count_fn, (void *)&o->n)});
        weir_pipeline_config pc;
        weir_pipeline_config_init(&pc);
        pc.mode = m;
        pc.print_stats = false;
        pc.batch = 1 + (unsigned)(rnd() % 64);
        pc.capacity = 1 + (unsigned)(rnd() % 128);
        int r = weir_pipeline_create(rt, t, &pc, &o->p);
        if (r != 0) {
            CHECK(0, "create: %d (%s)", r, weir_last_error());
            weir_term_destroy(t);
            o->p = NULL;
            o->state = CREATED;
            continue;
        }
        if (o->state == JOINED) {
            r = weir_pipeline_run(o->p);
            CHECK(r == 0, "run (%s): %d (%s)", weir_exec_mode_name(m), r,
                  weir_pipeline_error(o->p));
            CHECK(atomic_load(&o->n) == N, "run (%s): %llu records, want %d",
                  weir_exec_mode_name(m), (unsigned long long)atomic_load(&o->n), N);
        } else if (o->state == RUNNING) {
            r = weir_pipeline_start(o->p);
            CHECK(r == 0, "start: %d (%s)", r, weir_last_error());
            /* relaxed: waiting only for the value to move */
            while (r == 0 && atomic_load_explicit(&o->n, memory_order_relaxed) == 0)
                sched_yield();
        }
    }
    (*pipelines) += (uint64_t)np;

    int order = (int)(rnd() % 3);
    orders[order]++;
    if (order == PIPELINES_FIRST) {
        for (int i = 0; i < np; i++)
            weir_pipeline_destroy(ps[i].p);
        weir_runtime_destroy(rt);
    } else if (order == RUNTIME_FIRST) {
        weir_runtime_destroy(rt);
        for (int i = 0; i < np; i++) {
            if (ps[i].state == RUNNING) {
                end_running(&ps[i], devnull);
            } else {
                weir_pipeline_print_stats(ps[i].p, devnull);
                weir_pipeline_destroy(ps[i].p);
            }
        }
    } else {
        batch b = {ps, np};
        pthread_t t;
        if (pthread_create(&t, NULL, destroy_idle, &b) != 0) {
            CHECK(0, "pthread_create failed");
            destroy_idle(&b);
            weir_runtime_destroy(rt);
        } else {
            weir_runtime_destroy(rt);
            pthread_join(t, NULL);
        }
        for (int i = 0; i < np; i++)
            if (ps[i].state == RUNNING)
                end_running(&ps[i], devnull);
    }
    long live = weir__alloc_live();
    CHECK(live == base, "order %d: %ld blocks left after the round (the runtime's handle?)", order,
          live - base);
}

int main(int argc, char **argv)
{
    stress_opts o;
    int r = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed X]");
    if (r)
        return r;
    rng = o.seed | 1;
    unsigned workers = o.workers ? o.workers : 2;
    FILE *devnull = fopen("/dev/null", "w");
    if (!devnull) {
        perror("stress_lifetime: /dev/null");
        return 1;
    }
    double end = stress_now() + o.seconds;
    uint64_t rounds = 0, pipelines = 0, orders[3] = {0, 0, 0};
    while (stress_now() < end && failures == 0) {
        one_round(1 + (unsigned)(rnd() % workers), devnull, &pipelines, orders);
        rounds++;
    }
    fclose(devnull);
    printf("stress_lifetime: %llu runtimes, %llu pipelines (runtime first %llu, concurrent %llu, "
           "pipelines first %llu), %d failures (seed %lu, up to %u workers)\n",
           (unsigned long long)rounds, (unsigned long long)pipelines,
           (unsigned long long)orders[RUNTIME_FIRST], (unsigned long long)orders[CONCURRENT],
           (unsigned long long)orders[PIPELINES_FIRST], failures, o.seed, workers);
    return failures ? 1 : 0;
}
