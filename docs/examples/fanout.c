/*
 * fanout — the benchmark behind LogicSponge's threading analysis, on weir:
 * one source broadcast to N branches, each `multiply(i+1) -> collect`, every
 * sink appending to one shared, locked collector.
 *
 *   source * ( mul1 * sink1 | mul2 * sink2 | ... | mulN * sinkN )
 *
 * Each N runs twice: on a pool of W workers (WEIR_EXEC_POOL, every term a
 * batched task) and with one OS thread per term (WEIR_EXEC_THREADS, the
 * model LogicSponge uses and the seed measured). The table gives the
 * throughput of each (records collected / wall time from building the
 * pipeline to join), their ratio, and the threads alive while each ran
 * (sampled once right after start, as the seed did; the pool's are its
 * workers).
 *
 * Every run is checked: n x N records collected, their values summing to
 * (1 + ... + N) x (0 + ... + n-1); a mismatch is exit status 1.
 *
 * Usage: fanout [--items n] [--terms N1,N2,...] [--runs R] [--workers W]
 *   defaults: n = 2000, N = 20,200,2000, R = 3 timed runs after one untimed
 *   warm-up (the table shows the median), W = WEIR_WORKERS or one per core.
 * For more (hybrid mode, RSS, steal counters, JSON): weir-bench fanout --help.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weir.h>

#define MAX_SWEEP 16

typedef struct item {
    int64_t id;
    int64_t value;
} item;

static int multiply(void *m, const void *in, weir_emit *e)
{
    item r;
    memcpy(&r, in, sizeof r);
    r.value *= (int64_t)(intptr_t)m;
    return weir_emit_record(e, &r);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Threads of this process, from /proc/self/status (0 if unreadable). */
static unsigned live_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned n = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "Threads:", 8) == 0)
            n = (unsigned)strtoul(line + 8, NULL, 10);
    if (f != NULL)
        fclose(f);
    return n;
}

typedef struct result {
    double items_per_s;
    unsigned threads; /* beyond the main thread */
} result;

/* One run: build, compile, start, sample, join, check. Returns 0 or 1. */
static int run(weir_runtime *rt, weir_exec_mode mode, const item *items, size_t n, size_t N,
               weir_collector *out, result *res)
{
    weir_pipeline_config cfg;
    weir_pipeline_config_init(&cfg);
    cfg.mode = mode;
    weir_collector_clear(out);

    uint64_t t0 = now_ns();
    weir_term **br = malloc(N * sizeof *br);
    if (br == NULL)
        return 1;
    for (size_t i = 0; i < N; i++) {
        char mul[32], sink[32];
        snprintf(mul, sizeof mul, "mul%zu", i + 1);
        snprintf(sink, sizeof sink, "sink%zu", i + 1);
        br[i] = weir_seq2(
            weir_function(mul, sizeof(item), sizeof(item), multiply, (void *)(intptr_t)(i + 1)),
            weir_collect(sink, out));
    }
    weir_term *t = weir_seq2(weir_array_source("source", items, n, sizeof(item)), weir_par(N, br));
    free(br);

    weir_pipeline *p;
    int err = weir_pipeline_create(rt, t, &cfg, &p);
    if (err < 0) {
        fprintf(stderr, "fanout: %s (%s)\n", weir_terms_last_error(), weir_strerror(err));
        weir_term_destroy(t);
        return 1;
    }
    err = weir_pipeline_start(p);
    unsigned threads = live_threads();
    if (err == 0 || err == -EAGAIN)
        err = weir_pipeline_join(p);
    uint64_t ns = now_ns() - t0;
    if (err < 0)
        fprintf(stderr, "fanout: %s N=%zu: %s (%s)\n", weir_exec_mode_name(mode), N,
                weir_pipeline_error(p), weir_strerror(err));
    weir_pipeline_destroy(p);
    if (err < 0)
        return 1;

    /* The check: n x N records, values summing to (1+..+N)(0+..+n-1). */
    uint64_t sum = 0;
    const item *rec = out->data;
    for (size_t i = 0; i < out->count; i++)
        sum += (uint64_t)rec[i].value;
    uint64_t want = (uint64_t)N * (N + 1) / 2 * ((uint64_t)n * (n - 1) / 2);
    if (out->count != n * N || sum != want) {
        fprintf(stderr,
                "fanout: %s N=%zu: WRONG RESULT: %zu records (want %zu), sum %" PRIu64
                " (want %" PRIu64 ")\n",
                weir_exec_mode_name(mode), N, out->count, n * N, sum, want);
        return 1;
    }
    res->items_per_s = (double)n * (double)N * 1e9 / (double)ns;
    res->threads = threads > 0 ? threads - 1 : 0;
    return 0;
}

static int cmp_result(const void *a, const void *b)
{
    double x = ((const result *)a)->items_per_s, y = ((const result *)b)->items_per_s;
    return (x > y) - (x < y);
}

/* One untimed warm-up run (first-touch page faults, thread caches), then
 * the median of `runs` runs by throughput. */
static int measure(weir_runtime *rt, weir_exec_mode mode, const item *items, size_t n, size_t N,
                   unsigned runs, weir_collector *out, result *res)
{
    result r[16];
    if (run(rt, mode, items, n, N, out, &r[0]) != 0)
        return 1;
    for (unsigned i = 0; i < runs; i++)
        if (run(rt, mode, items, n, N, out, &r[i]) != 0)
            return 1;
    qsort(r, runs, sizeof r[0], cmp_result);
    *res = r[runs / 2];
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: fanout [--items n] [--terms N1,N2,...] [--runs R (1..15)] "
                    "[--workers W]\n");
    return 2;
}

int main(int argc, char **argv)
{
    size_t n = 2000;
    size_t sweep[MAX_SWEEP] = {20, 200, 2000};
    size_t nsweep = 3;
    unsigned runs = 3, workers = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL)
            return usage();
        i++;
        if (strcmp(opt, "--items") == 0) {
            n = (size_t)strtoull(val, NULL, 10);
        } else if (strcmp(opt, "--runs") == 0) {
            runs = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(opt, "--workers") == 0) {
            workers = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(opt, "--terms") == 0) {
            nsweep = 0;
            for (const char *s = val; *s && nsweep < MAX_SWEEP;
                 s += strcspn(s, ","), s += *s == ',')
                sweep[nsweep++] = (size_t)strtoull(s, NULL, 10);
        } else {
            return usage();
        }
    }
    if (n < 1 || runs < 1 || runs > 15 || nsweep == 0)
        return usage();
    for (size_t k = 0; k < nsweep; k++)
        if (sweep[k] < 1)
            return usage();

    item *items = malloc(n * sizeof *items);
    weir_collector out;
    if (items == NULL || weir_collector_init(&out, sizeof(item)) != 0) {
        fprintf(stderr, "fanout: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        items[i] = (item){(int64_t)i, (int64_t)i};

    /* The pool runs first, then the runtime goes away, so that its (idle,
     * parked) workers are not counted among the threads of threads mode. */
    weir_config cfg;
    weir_config_init(&cfg);
    int err = weir_config_from_env(&cfg);
    if (workers != 0)
        cfg.workers = workers;
    weir_runtime *rt = NULL;
    if (err == 0)
        err = weir_runtime_create(&cfg, &rt);
    weir_config_deinit(&cfg);
    if (err < 0) {
        fprintf(stderr, "fanout: %s\n", weir_last_error());
        return 1;
    }
    unsigned w = weir_runtime_workers(rt);

    result pool[MAX_SWEEP], threads[MAX_SWEEP];
    int bad = 0;
    for (size_t k = 0; k < nsweep && !bad; k++)
        bad = measure(rt, WEIR_EXEC_POOL, items, n, sweep[k], runs, &out, &pool[k]);
    weir_runtime_destroy(rt);
    for (size_t k = 0; k < nsweep && !bad; k++)
        bad = measure(NULL, WEIR_EXEC_THREADS, items, n, sweep[k], runs, &out, &threads[k]);
    weir_collector_deinit(&out);
    free(items);
    if (bad)
        return 1;

    printf("fan-out: source * (multiply(i) * collect) x N, n = %zu items, all sinks into one "
           "locked collector\n",
           n);
    printf("pool: %u workers (WEIR_EXEC_POOL); threads: one OS thread per term "
           "(WEIR_EXEC_THREADS)%s\n\n",
           w, runs > 1 ? "; median of the runs" : "");
    printf("%6s  %14s  %15s  %12s  %18s  %26s\n", "N", "pool items/s", "threads items/s",
           "pool/threads", "pool threads-alive", "threads-mode threads-alive");
    for (size_t k = 0; k < nsweep; k++)
        printf("%6zu  %14.0f  %15.0f  %11.1fx  %18u  %26u\n", sweep[k], pool[k].items_per_s,
               threads[k].items_per_s, pool[k].items_per_s / threads[k].items_per_s,
               pool[k].threads, threads[k].threads);
    if (nsweep > 1) {
        size_t last = nsweep - 1;
        printf("\nfrom N = %zu to N = %zu the pool keeps %.0f %% of its throughput, "
               "one thread per term %.0f %%\n",
               sweep[0], sweep[last], 100.0 * pool[last].items_per_s / pool[0].items_per_s,
               100.0 * threads[last].items_per_s / threads[0].items_per_s);
    }
    printf("every run checked: n x N records, values summing to (1+..+N)(0+..+n-1)\n");
    return 0;
}
