/*
 * A known program for the trace test (check_trace.py): two pipelines and a
 * fork-join root on a 2-worker runtime.
 *
 *   numbers (range source) -> double (function) -> odd (filter) -> total (sink)
 *   ticks (blocking source, its own thread) -> twice (function) -> sink (sink)
 *   fib(20) as a fork-join root
 *
 * Usage: trace_pipeline [PATH]. With PATH, the program traces itself with
 * weir_trace_start(PATH) / weir_trace_stop(); without, it relies on
 * WEIR_TRACE (written when the runtime is destroyed). Exit status 0 when
 * every result is right.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <weir.h>

WEIR_TASK_1(long, fib, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fib, n - 1);
    long b = WEIR_CALL(fib, n - 2);
    long a = WEIR_SYNC(fib);
    return a + b;
}

static int twice(void *st, const void *in, weir_emit *e)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v *= 2;
    return weir_emit_record(e, &v);
}

static bool odd_half(void *st, const void *in)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    return (v / 2) % 2 != 0;
}

static int ticks(void *st, weir_emit *e)
{
    (void)st;
    for (int64_t i = 0; i < 5000; i++) {
        int r = weir_emit_record(e, &i);
        if (r < 0)
            return r;
    }
    return 0;
}

static int count(void *st, const void *in)
{
    (void)in;
    (*(int64_t *)st)++;
    return 0;
}

static int run(weir_runtime *rt, weir_term *t)
{
    weir_pipeline *p;
    int err = weir_pipeline_create(rt, t, NULL, &p);
    if (err < 0) {
        fprintf(stderr, "trace_pipeline: %s\n", weir_terms_last_error());
        weir_term_destroy(t);
        return err;
    }
    err = weir_pipeline_run(p);
    weir_pipeline_destroy(p);
    return err;
}

int main(int argc, char **argv)
{
    if (argc > 1 && weir_trace_start(argv[1]) != 0) {
        fprintf(stderr, "trace_pipeline: %s\n", weir_last_error());
        return 1;
    }
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 2;
    weir_runtime *rt;
    if (weir_runtime_create(&cfg, &rt) != 0) {
        fprintf(stderr, "trace_pipeline: %s\n", weir_last_error());
        return 1;
    }
    int rc = 0;
    int64_t m = 0;
    weir_term *a = weir_seq(4, (weir_term *const[]){
                                   weir_range_source("numbers", 0, 100000, 1),
                                   weir_function("double", 8, 8, twice, NULL),
                                   weir_filter("odd", 8, odd_half, NULL),
                                   weir_sink("total", 8, count, &m),
                               });
    if (run(rt, a) < 0 || m != 50000)
        rc = 1;
    int64_t n = 0;
    weir_term *b = weir_seq(3, (weir_term *const[]){
                                   weir_blocking_source("ticks", 8, ticks, NULL),
                                   weir_function("twice", 8, 8, twice, NULL),
                                   weir_sink("sink", 8, count, &n),
                               });
    if (run(rt, b) < 0 || n != 5000)
        rc = 1;
    if (fib_run(rt, 20) != 6765)
        rc = 1;
    if (argc > 1 && weir_trace_stop() != 0) {
        fprintf(stderr, "trace_pipeline: %s\n", weir_last_error());
        rc = 1;
    }
    weir_runtime_destroy(rt);
    return rc;
}
