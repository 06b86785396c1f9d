/*
 * Soak (issue 8): create and destroy many pipelines and runtimes, and check
 * that the process does not grow. Plain main(), runnable under TSan.
 *
 * The run creates `--runtimes M` runtimes (1..W workers, one after the
 * other) and `--pipelines N` pipelines spread over them, in every mode, each
 * ending one of several ways: run to its end (exact count checked), stopped
 * (every record produced delivered), cancelled, destroyed while running,
 * destroyed without a start, or left to the runtime's destroy first (join
 * -ESHUTDOWN, or 0 for a threads-mode pipeline that needs no runtime). After
 * every runtime (nothing of weir alive) it samples
 *
 *   RSS              /proc/self/statm (resident pages)
 *   descriptors      entries of /proc/self/fd
 *   threads          entries of /proc/self/task
 *   weir blocks      weir__alloc_live(), the allocator hook's live count
 *
 * Weir blocks must be back exactly where they were before the first runtime,
 * descriptors and threads exactly where they were after it (a sanitizer
 * starts a thread of its own the first time); RSS may move with the C library's caches, so it
 * is compared after a warm-up (the first tenth of the runtimes): its growth
 * over the rest must stay under 8 MiB, and under 2 MiB between the middle
 * and the end (a leak grows linearly, a cache does not). Under a sanitizer
 * RSS is only reported.
 *
 *   stress_soak [--pipelines N] [--runtimes M] [--workers W] [--seed X] [--seconds S]
 *
 * Defaults: 1500 pipelines on 150 runtimes (meson runs 600 on 60: about 1 s,
 * 4 s under TSan); the full soak is --pipelines 10000 --runtimes 1000.
 * --seconds, when given, bounds the run (the checks apply to what ran).
 * Prints one summary line; exits 1 on a broken invariant.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
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

/* A sanitizer's shadow memory, history and quarantine grow RSS on their own:
 * RSS is reported but not checked there (descriptors, threads and weir
 * blocks are). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
static const bool under_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
static const bool under_sanitizer = true;
#else
static const bool under_sanitizer = false;
#endif
#else
static const bool under_sanitizer = false;
#endif

static int failures;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "stress_soak: ");                                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        failures++;                                                                                \
    } while (0)

static uint64_t rng;
static unsigned rndn(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

typedef struct sample {
    long rss_kib, fds, threads, blocks;
} sample;

static long count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* the DIR's own descriptor */
}

static sample take_sample(void)
{
    sample s = {-1, -1, -1, weir__alloc_live()};
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size, resident;
        if (fscanf(f, "%ld %ld", &size, &resident) == 2)
            s.rss_kib = resident * (sysconf(_SC_PAGESIZE) / 1024);
        fclose(f);
    }
    s.fds = count_dir("/proc/self/fd");
    s.threads = count_dir("/proc/self/task");
    return s;
}

typedef struct soak_pipe {
    weir_pipeline *p;
    weir_exec_mode mode;
    bool finite;
    int64_t n;
    int end; /* how it ends, see below */
    _Atomic uint64_t produced, consumed;
} soak_pipe;

enum { E_RUN, E_STOP, E_CANCEL, E_DESTROY_RUNNING, E_NEVER_STARTED, E_RUNTIME_FIRST, NENDS };
static uint64_t ends[NENDS];

static int src_pull(void *state, void *out, size_t max, bool *end)
{
    soak_pipe *q = state;
    /* relaxed: the source's own counter, read after join */
    uint64_t done = atomic_load_explicit(&q->produced, memory_order_relaxed);
    size_t k = max;
    if (q->finite && (int64_t)(done + k) > q->n)
        k = (size_t)(q->n - (int64_t)done);
    int64_t *o = out;
    for (size_t i = 0; i < k; i++)
        o[i] = (int64_t)(done + i);
    atomic_store_explicit(&q->produced, done + k, memory_order_relaxed);
    *end = q->finite && (int64_t)(done + k) == q->n;
    return (int)k;
}

static void twice(void *state, const void *in, void *out)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v *= 2;
    memcpy(out, &v, sizeof v);
}

static uint64_t soak_key(void *arg, const void *rec)
{
    (void)arg;
    int64_t v;
    memcpy(&v, rec, sizeof v);
    return (uint64_t)v;
}

static weir_term *soak_shard(void *arg, unsigned i)
{
    (void)arg;
    (void)i;
    return weir_map("twice", 8, 8, twice, NULL);
}

static int sink_fn(void *state, const void *in)
{
    (void)in;
    /* relaxed: read after join */
    atomic_fetch_add_explicit(&((soak_pipe *)state)->consumed, 1, memory_order_relaxed);
    return 0;
}

static void finish(soak_pipe *q, int r)
{
    uint64_t prod = atomic_load(&q->produced), cons = atomic_load(&q->consumed);
    switch (q->end) {
    case E_RUN:
        if (r != 0 || cons != (uint64_t)q->n)
            FAIL("run: join %d (%s), %" PRIu64 " of %" PRId64 " records", r,
                 weir_pipeline_error(q->p), cons, q->n);
        break;
    case E_STOP:
        if (r != 0 || cons != prod)
            FAIL("stop: join %d (%s), %" PRIu64 " of %" PRIu64 " records", r,
                 weir_pipeline_error(q->p), cons, prod);
        break;
    case E_CANCEL:
        if ((r != -ECANCELED && r != 0) || cons > prod)
            FAIL("cancel: join %d (%s), %" PRIu64 " of %" PRIu64 " records", r,
                 weir_pipeline_error(q->p), cons, prod);
        break;
    case E_RUNTIME_FIRST:
        /* a pool stage sees the runtime go; a threads-mode pipeline runs on
         * until stopped */
        if (q->mode == WEIR_EXEC_THREADS ? r != 0 || cons != prod : r != -ESHUTDOWN)
            FAIL("runtime first (%s): join %d (%s), %" PRIu64 " of %" PRIu64 " records",
                 weir_exec_mode_name(q->mode), r, weir_pipeline_error(q->p), cons, prod);
        break;
    }
}

/* Start and end one pipeline as its `end` says; the destroy comes later
 * (for E_DESTROY_RUNNING: now). */
static void soak_one(soak_pipe *q, uint64_t *records)
{
    if (q->end == E_NEVER_STARTED)
        return;
    int r = weir_pipeline_start(q->p);
    if (r != 0) {
        FAIL("start (%s): %d (%s)", weir_exec_mode_name(q->mode), r, weir_last_error());
        return;
    }
    if (q->end != E_RUN) {
        /* let it produce a little */
        while (atomic_load_explicit(&q->produced, memory_order_relaxed) == 0)
            sched_yield();
    }
    if (q->end == E_STOP)
        weir_pipeline_stop(q->p);
    else if (q->end == E_CANCEL)
        weir_pipeline_cancel(q->p);
    if (q->end == E_RUN || q->end == E_STOP || q->end == E_CANCEL) {
        finish(q, weir_pipeline_join(q->p));
        *records += atomic_load(&q->consumed);
    } else if (q->end == E_DESTROY_RUNNING) {
        weir_pipeline_destroy(q->p); /* cancels and joins */
        q->p = NULL;
    }
}

/* One runtime and `np` pipelines on it. */
static void one_runtime(unsigned workers, unsigned np, uint64_t *records)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    weir_runtime *rt = NULL;
    if (weir_runtime_create(&cfg, &rt) != 0) {
        FAIL("runtime (%u workers): %s", workers, weir_last_error());
        return;
    }
    static const weir_exec_mode modes[3] = {WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};
    soak_pipe *qs = calloc(np, sizeof *qs);
    if (!qs) {
        fprintf(stderr, "stress_soak: out of memory\n");
        exit(2);
    }
    unsigned runtime_first = 0;
    for (unsigned i = 0; i < np; i++) {
        soak_pipe *q = &qs[i];
        q->end = (int)rndn(NENDS);
        /* at most two endless pipelines left running for the runtime's
         * destroy: more would only burn the CPU */
        if (q->end == E_RUNTIME_FIRST && runtime_first == 2)
            q->end = E_RUN;
        if (q->end == E_RUNTIME_FIRST)
            runtime_first++;
        q->finite = q->end == E_RUN;
        q->n = (int64_t)rndn(2000);
        weir_exec_mode m = q->mode = modes[rndn(3)];
        /* the middle term plain, as weir_parallel replicas (width 0..2) or
         * as weir_keyed shards (1..3): replica threads, shard jobs and slots
         * must come and go with their pipelines too */
        unsigned form = rndn(4);
        weir_term *mid = form == 3 ? weir_keyed("twice", 1 + rndn(3), soak_key, NULL, soak_shard,
                                                NULL, WEIR_ORDERED)
                                   : weir_map("twice", 8, 8, twice, NULL);
        if (form == 1 || form == 2)
            mid = weir_parallel(mid, rndn(3));
        weir_term *t = weir_seq(3, (weir_term *[]){weir_source("src", 8, src_pull, q), mid,
                                                   weir_sink("sink", 8, sink_fn, q)});
        weir_pipeline_config pc;
        weir_pipeline_config_init(&pc);
        pc.mode = m;
        pc.print_stats = false;
        pc.batch = 1 + rndn(128);
        pc.capacity = 1 + rndn(256);
        int r = weir_pipeline_create(rt, t, &pc, &q->p);
        if (r != 0) {
            FAIL("create: %d (%s)", r, weir_last_error());
            weir_term_destroy(t);
            q->p = NULL;
            continue;
        }
        ends[q->end]++;
    }
    /* One at a time, so that endless sources do not run on while the next
     * ones are made; the runtime-first ones last, all running together. */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < np; i++) {
            soak_pipe *q = &qs[i];
            if (q->p && (q->end == E_RUNTIME_FIRST) == (pass == 1))
                soak_one(q, records);
        }
    if (runtime_first)
        weir_runtime_destroy(rt);
    for (unsigned i = 0; i < np; i++) {
        soak_pipe *q = &qs[i];
        if (!q->p)
            continue;
        if (q->end == E_RUNTIME_FIRST) {
            /* the threads mode runs on without the runtime: stop it */
            int r = weir_pipeline_join_for(q->p, 0);
            if (r == -ETIMEDOUT) {
                weir_pipeline_stop(q->p);
                r = weir_pipeline_join(q->p);
            }
            finish(q, r);
            *records += atomic_load(&q->consumed);
        }
        weir_pipeline_destroy(q->p);
    }
    if (!runtime_first)
        weir_runtime_destroy(rt);
    free(qs);
}

/* Take --pipelines and --runtimes out of argv; the rest is stress_parse's. */
static int take_counts(int *argc, char **argv, long *np, long *nr)
{
    int k = 1;
    for (int i = 1; i < *argc; i++) {
        long *dst = !strcmp(argv[i], "--pipelines") ? np : !strcmp(argv[i], "--runtimes") ? nr : 0;
        if (!dst) {
            argv[k++] = argv[i];
            continue;
        }
        char *end = NULL;
        if (i + 1 >= *argc)
            return -1;
        *dst = strtol(argv[++i], &end, 10);
        if (*end || *dst < 1 || *dst > 100000000)
            return -1;
    }
    *argc = k;
    return 0;
}

int main(int argc, char **argv)
{
    static const char usage[] =
        "[--pipelines N] [--runtimes M] [--workers W] [--seed X] [--seconds S]";
    long npipes = 1500, nrts = 150;
    bool timed = false;
    for (int i = 1; i < argc; i++)
        timed |= !strcmp(argv[i], "--seconds");
    if (take_counts(&argc, argv, &npipes, &nrts) < 0) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        return 2;
    }
    stress_opts o;
    int pr = stress_parse(argc, argv, &o, usage);
    if (pr)
        return pr;
    rng = (uint64_t)o.seed * 0x9E3779B97F4A7C15ull | 1;
    unsigned wmax = o.workers ? o.workers : 4;
    const long warm = nrts / 10 > 0 ? nrts / 10 : 1;

    const sample s0 = take_sample();
    sample base = s0, mid = s0, last = s0, ref = s0;
    long max_rss = 0, ran = 0, pipes = 0;
    uint64_t records = 0;
    double t0 = stress_now(), end = t0 + o.seconds;
    for (long k = 0; k < nrts && failures == 0; k++) {
        if (timed && stress_now() > end)
            break;
        /* spread the pipelines evenly over the runtimes */
        long np = (npipes * (k + 1)) / nrts - (npipes * k) / nrts;
        one_runtime(1 + rndn(wmax), (unsigned)np, &records);
        ran++;
        pipes += np;
        last = take_sample();
        if (k == 0)
            ref = last; /* after the C library's (and a sanitizer's) first threads */
        if (last.fds != ref.fds || last.threads != ref.threads || last.blocks != s0.blocks)
            FAIL("after runtime %ld: %ld descriptors, %ld threads, %ld weir blocks (want %ld, %ld, "
                 "%ld)",
                 k, last.fds, last.threads, last.blocks, ref.fds, ref.threads, s0.blocks);
        if (k + 1 == warm)
            base = last;
        if (k + 1 == warm + (nrts - warm) / 2)
            mid = last;
        if (k + 1 > warm && last.rss_kib > max_rss)
            max_rss = last.rss_kib;
    }
    if (ran > warm && !under_sanitizer) {
        if (max_rss - base.rss_kib > 8 * 1024)
            FAIL("RSS grew from %ld KiB (after the warm-up) to %ld KiB", base.rss_kib, max_rss);
        if (ran == nrts && last.rss_kib - mid.rss_kib > 2 * 1024)
            FAIL("RSS grew from %ld KiB (half way) to %ld KiB (the end)", mid.rss_kib,
                 last.rss_kib);
    }
    printf("stress_soak: %ld runtimes, %ld pipelines (run %" PRIu64 ", stop %" PRIu64
           ", cancel %" PRIu64 ", destroyed running %" PRIu64 ", never started %" PRIu64
           ", runtime first %" PRIu64 "), %" PRIu64 " records in %.1f s; RSS %ld KiB at start, "
           "%ld after warm-up, %ld max, %ld at end; descriptors %ld -> %ld, threads %ld -> %ld, "
           "weir blocks %ld -> %ld%s; %d failures (seed %lu, up to %u workers)\n",
           ran, pipes, ends[E_RUN], ends[E_STOP], ends[E_CANCEL], ends[E_DESTROY_RUNNING],
           ends[E_NEVER_STARTED], ends[E_RUNTIME_FIRST], records, stress_now() - t0, s0.rss_kib,
           base.rss_kib, max_rss, last.rss_kib, s0.fds, last.fds, s0.threads, last.threads,
           s0.blocks, last.blocks, under_sanitizer ? " (RSS not checked: sanitizer)" : "", failures,
           o.seed, wmax);
    return failures ? 1 : 0;
}
