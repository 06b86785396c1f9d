/*
 * weir-bench delay: the sleeping-term case of issue 12. A term that waits
 * must not hold a worker: a 20 000-record pipeline (range source -> map ->
 * sink) on a 2-worker runtime, timed alone and while another pipeline on
 * the same runtime holds records in a weir_delay.
 *
 * Variants (one invocation, on one runtime):
 *   alone  the measured pipeline, nothing else on the runtime
 *   delay  the same while a periodic source (a record every --period-us,
 *          default 1000) -> weir_delay(--delay-ms, default 1000) -> sink
 *          runs beside it, in steady state (started --delay-ms + 200 ms
 *          before the first timed run: it holds about delay / period
 *          records and releases one a period)
 *   sleep  the same beside a periodic source broadcast to one branch per
 *          worker, each a function that sleeps --sleep-us (default 1000)
 *          per record -> sink: what a user who waits in callbacks gets, for
 *          comparison. A sleeping callback holds its worker; with one
 *          sleeping term the other worker carries the measured pipeline
 *          (1.03x with 500 ms sleeps at 2 workers), so the branches hold
 *          them all, as in the 300-590 ms.
 *
 * Each timed run creates the measured pipeline, runs it (start + join:
 * only that is timed) and destroys it; its sink checks the sum. The runs
 * come in --rounds (default 5) of: --runs alone, the delayed pipeline
 * started, --runs beside it, stopped; then --runs alone once more. A
 * round's ratio is its delay median over the median of the alone runs on
 * either side of it (drift cancels); the delay row's ratio is the median
 * of the rounds' (a round the box disturbed is left out; ratio_min and
 * ratio_max show the spread). Target for delay: <= 1.05. The delay row
 * also gives the delay's lateness: sink time - source time - delay of
 * every record released before a stop (median, p99, max in us). The sleep
 * row's ratio is over alone's median of all runs.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir.h"

#include "bench.h"

enum { DV_ALONE, DV_DELAY, DV_SLEEP, DV_N };
static const char *const dv_names[DV_N] = {"alone", "delay", "sleep"};

#define DL_TARGET 1.05

typedef struct dl_cfg {
    uint64_t n;
    uint64_t delay_ns, period_ns, sleep_ns;
    unsigned runs, warmup, rounds;
} dl_cfg;

/* ------------------------------------------------ the measured pipeline */

static void dl_map(void *state, const void *in, void *out)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v = 2 * v + 1;
    memcpy(out, &v, sizeof v);
}

static int dl_sum(void *state, const void *in)
{
    int64_t v;
    memcpy(&v, in, sizeof v);
    *(uint64_t *)state += (uint64_t)v;
    return 0;
}

/* One timed run. @return 0, or -1 (a message printed). */
static int dl_once(weir_runtime *rt, uint64_t n, uint64_t *ns)
{
    uint64_t sum = 0;
    weir_term *t = WEIR_SEQ(weir_range_source("src", 0, (int64_t)n, 1),
                            weir_map("map", 8, 8, dl_map, NULL), weir_sink("sum", 8, dl_sum, &sum));
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.print_stats = false;
    weir_pipeline *p;
    int r = weir_pipeline_create(rt, t, &c, &p);
    if (r < 0) {
        fprintf(stderr, "weir-bench delay: create: %s\n", weir_last_error());
        weir_term_destroy(t);
        return -1;
    }
    uint64_t t0 = bench_now_ns();
    r = weir_pipeline_run(p);
    *ns = bench_now_ns() - t0;
    if (r < 0)
        fprintf(stderr, "weir-bench delay: run: %s\n", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    if (r == 0 && sum != n * n) {
        fprintf(stderr, "weir-bench delay: wrong sum %" PRIu64 " (want %" PRIu64 ")\n", sum, n * n);
        r = -1;
    }
    return r < 0 ? -1 : 0;
}

/* `warmup` untimed and `runs` timed runs into ts[0..runs). */
static int dl_series(weir_runtime *rt, const dl_cfg *cfg, unsigned runs, uint64_t *ts)
{
    uint64_t ns;
    for (unsigned i = 0; i < cfg->warmup; i++)
        if (dl_once(rt, cfg->n, &ns) < 0)
            return -1;
    for (unsigned i = 0; i < runs; i++)
        if (dl_once(rt, cfg->n, &ts[i]) < 0)
            return -1;
    return 0;
}

/* ---------------------------------------------- the pipelines beside it */

/* The delayed pipeline's sink: when each record came, and how long after
 * its source made it (sorted out after the stop, which releases the held
 * records at once: those are not lateness). */
typedef struct dl_late {
    uint64_t *held, *at; /* per record: sink time - source time, sink time */
    size_t n, cap;
} dl_late;

static int dl_late_sink(void *state, const void *in)
{
    dl_late *l = state;
    weir_periodic_rec r;
    memcpy(&r, in, sizeof r);
    uint64_t now = weir_now_ns();
    if (l->n < l->cap) {
        l->held[l->n] = now - r.now_ns;
        l->at[l->n] = now;
        l->n++;
    }
    return 0;
}

static int dl_sleep_fn(void *state, const void *in, weir_emit *e)
{
    uint64_t ns = *(const uint64_t *)state;
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL); /* what a callback must not do: it holds the worker */
    return weir_emit_record(e, in);
}

static int dl_drop(void *state, const void *in)
{
    (void)state;
    (void)in;
    return 0;
}

static weir_pipeline *dl_start(weir_runtime *rt, weir_term *t)
{
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.print_stats = false;
    weir_pipeline *p = NULL;
    if (weir_pipeline_create(rt, t, &c, &p) < 0) {
        fprintf(stderr, "weir-bench delay: create: %s\n", weir_last_error());
        weir_term_destroy(t);
        return NULL;
    }
    if (weir_pipeline_start(p) < 0) {
        fprintf(stderr, "weir-bench delay: start: %s\n", weir_last_error());
        weir_pipeline_destroy(p);
        return NULL;
    }
    return p;
}

static int dl_stop(weir_pipeline *p)
{
    weir_pipeline_stop(p);
    int r = weir_pipeline_join(p);
    if (r < 0)
        fprintf(stderr, "weir-bench delay: the pipeline beside: %s\n", weir_pipeline_error(p));
    weir_pipeline_destroy(p);
    return r < 0 ? -1 : 0;
}

/* ----------------------------------------------------------------- main */

static int dl_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v[0..n), sorted in place. */
static uint64_t dl_quantile(uint64_t *v, size_t n, double q)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, dl_cmp);
    size_t i = (size_t)ceil(q * (double)n);
    return v[i ? i - 1 : 0];
}

/* The median of v[0..n), v left as it was (tmp: room for n). */
static uint64_t dl_median_of(const uint64_t *v, size_t n, uint64_t *tmp)
{
    memcpy(tmp, v, n * sizeof *v);
    return bench_median(tmp, n);
}

static int dl_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int dl_parse(const bench_opts *o, int argc, char **argv, dl_cfg *cfg)
{
    cfg->n = o->has_n ? o->n : 20000;
    cfg->delay_ns = 1000000000u;
    cfg->period_ns = 1000000u;
    cfg->sleep_ns = 1000000u;
    cfg->runs = o->has_runs ? o->runs : 31;
    cfg->warmup = o->warmup;
    cfg->rounds = 5;
    for (int i = 1; i < argc; i++) {
        const char *val;
        uint64_t u;
        int m;
        if ((m = bench_opt_value(argc, argv, &i, "--delay-ms", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0 || u > 60000)
                return bench_usage_error("--delay-ms: 1..60000");
            cfg->delay_ns = u * 1000000u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--period-us", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u < 10 || u > 1000000)
                return bench_usage_error("--period-us: 10..1000000");
            cfg->period_ns = u * 1000u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--rounds", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0 || u > 100)
                return bench_usage_error("--rounds: 1..100");
            cfg->rounds = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--sleep-us", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0 || u > 1000000)
                return bench_usage_error("--sleep-us: 1..1000000");
            cfg->sleep_ns = u * 1000u;
        } else {
            return bench_usage_error("delay: unknown option or argument '%s'", argv[i]);
        }
    }
    if (cfg->n == 0 || cfg->n > 3000000000u)
        return bench_usage_error("--n: 1..3G records");
    if (cfg->runs > 10000)
        return bench_usage_error("--runs: at most 10000 here");
    return 0;
}

int bench_delay(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        puts("Usage: weir-bench delay [--n N] [--workers W] [--runs R] [--rounds K]\n"
             "                        [--delay-ms D] [--period-us P] [--sleep-us S]\n"
             "  A pipeline of N records (default 20000: range source -> map -> sink), timed\n"
             "  alone and beside another pipeline on the same runtime. Variants:\n"
             "    alone  nothing beside it (timed before and after each round)\n"
             "    delay  beside periodic source (a record every P us, default 1000) ->\n"
             "           weir_delay(D ms, default 1000) -> sink, in steady state\n"
             "    sleep  beside periodic source -> one branch per worker, each a callback\n"
             "           sleeping S us a record (default 1000): every worker held\n"
             "  K rounds (default 5) of R runs alone and R runs beside the delay, then R\n"
             "  alone: a round's ratio = its delay median / the alone runs around it; the\n"
             "  delay row's ratio is the median of the rounds' (target <= 1.05). Extra for\n"
             "  delay: rounds, ratio_min, ratio_max, lat_med_us, lat_p99_us, lat_max_us\n"
             "  (sink time - source time - D of the records released before a stop),\n"
             "  held (records the delay held when timing began), target_met.\n"
             "  --runs defaults to 31 (sleep: 5). Workers default to 2.");
        return 0;
    }
    dl_cfg cfg;
    int rc = dl_parse(o, argc, argv, &cfg);
    if (rc == 0)
        rc = bench_check_variants(o, dv_names, DV_N);
    if (rc != 0)
        return rc;
    bench_opts ro = *o;
    if (!ro.workers)
        ro.workers = 2;
    weir_runtime *rt;
    if (bench_runtime_create(&ro, &rt) < 0)
        return BENCH_EXIT_FAIL;
    const unsigned workers = weir_runtime_workers(rt);
    const unsigned R = cfg.runs ? cfg.runs : 1;
    const size_t RK = (size_t)R * (cfg.rounds + 1);
    uint64_t *alone = calloc(RK, sizeof *alone), *with = calloc(RK, sizeof *with);
    uint64_t *tmp = calloc(RK, sizeof *tmp);
    double *ratios = calloc(cfg.rounds, sizeof *ratios);
    dl_late lat = {NULL, NULL, 0, 0};
    uint64_t early = 0;
    /* the delayed pipeline runs for about delay + 200 ms + R runs a round */
    lat.cap = (size_t)((cfg.delay_ns + 200000000u) / cfg.period_ns) + 64 * R + 4096;
    lat.held = calloc(lat.cap, sizeof *lat.held);
    lat.at = calloc(lat.cap, sizeof *lat.at);
    uint64_t *samp = calloc(lat.cap * cfg.rounds, sizeof *samp);
    size_t nsamp = 0;
    int status = BENCH_EXIT_FAIL;
    if (!alone || !with || !tmp || !ratios || !lat.held || !lat.at || !samp) {
        fprintf(stderr, "weir-bench delay: out of memory\n");
        goto out;
    }
    bench_note(o,
               "delay n=%" PRIu64 " workers=%u runs=%u rounds=%u warmup=%u delay_ms=%" PRIu64
               " period_us=%" PRIu64 " sleep_us=%" PRIu64 " cpus=%u",
               cfg.n, workers, R, cfg.rounds, cfg.warmup, cfg.delay_ns / 1000000u,
               cfg.period_ns / 1000u, cfg.sleep_ns / 1000u, bench_online_cpus());

    /* rounds of: alone, delay; then alone once more. Each round's ratio
     * takes the alone runs on either side of it, so drift cancels, and the
     * median over the rounds leaves out a round that the box disturbed. */
    const bool want_delay = bench_variant_selected(o, "delay");
    const unsigned K = want_delay ? cfg.rounds : 0;
    uint64_t held = 0;
    if (dl_series(rt, &cfg, R, alone) < 0)
        goto out;
    for (unsigned k = 0; k < K; k++) {
        lat.n = 0;
        weir_pipeline *d = dl_start(
            rt, WEIR_SEQ(weir_periodic_source("tick", cfg.period_ns, 0),
                         weir_delay("delay", sizeof(weir_periodic_rec), cfg.delay_ns),
                         weir_sink("late", sizeof(weir_periodic_rec), dl_late_sink, &lat)));
        if (!d)
            goto out;
        bench_sleep((double)(cfg.delay_ns + 200000000u) / 1e9);
        int ti = weir_pipeline_find_term(d, "delay");
        weir_term_stats ts;
        if (k == 0 && ti >= 0 && weir_pipeline_term_stats(d, (unsigned)ti, &ts) == 0)
            held = ts.records_in - ts.records_out;
        int r = dl_series(rt, &cfg, R, with + (size_t)k * R);
        uint64_t stop_at = weir_now_ns();
        if (dl_stop(d) < 0 || r < 0)
            goto out;
        /* lateness of the records released before the stop (the stop
         * releases the others at once) */
        for (size_t i = 0; i < lat.n; i++) {
            if (lat.at[i] >= stop_at)
                continue;
            if (lat.held[i] < cfg.delay_ns)
                early++;
            else
                samp[nsamp++] = lat.held[i] - cfg.delay_ns;
        }
        if (dl_series(rt, &cfg, R, alone + (size_t)(k + 1) * R) < 0)
            goto out;
        uint64_t a = dl_median_of(alone + (size_t)k * R, 2 * R, tmp);
        uint64_t w = dl_median_of(with + (size_t)k * R, R, tmp);
        ratios[k] = (double)w / (double)a;
    }
    const size_t NA = (size_t)(K + 1) * R, NW = (size_t)K * R;
    uint64_t base = dl_median_of(alone, NA, tmp);

    bench_row row;
    if (bench_variant_selected(o, "alone")) {
        bench_row_init(&row, "delay", "alone", workers, cfg.n);
        row.runs = (unsigned)NA;
        row.median_ns = base;
        row.min_ns = bench_min(alone, NA);
        row.ratio = 1.0;
        bench_print_row(o, &row);
    }
    if (want_delay) {
        qsort(ratios, K, sizeof *ratios, dl_cmp_double);
        double ratio = K % 2 ? ratios[K / 2] : (ratios[K / 2 - 1] + ratios[K / 2]) / 2;
        bench_row_init(&row, "delay", "delay", workers, cfg.n);
        row.runs = (unsigned)NW;
        row.median_ns = dl_median_of(with, NW, tmp);
        row.min_ns = bench_min(with, NW);
        row.ratio = ratio;
        bench_row_extra(&row, "rounds", K, true);
        bench_row_extra(&row, "ratio_min", ratios[0], false);
        bench_row_extra(&row, "ratio_max", ratios[K - 1], false);
        bench_row_extra(&row, "lat_med_us", (double)dl_quantile(samp, nsamp, 0.5) / 1e3, false);
        bench_row_extra(&row, "lat_p99_us", (double)dl_quantile(samp, nsamp, 0.99) / 1e3, false);
        bench_row_extra(&row, "lat_max_us", (double)dl_quantile(samp, nsamp, 1.0) / 1e3, false);
        bench_row_extra(&row, "held", (double)held, true);
        bench_row_extra(&row, "target_met", ratio <= DL_TARGET, true);
        bench_print_row(o, &row);
        if (early) {
            fprintf(stderr, "weir-bench delay: %" PRIu64 " records released early\n", early);
            goto out;
        }
    }

    /* beside a sleeping callback (a worker held): a few runs, they are slow */
    if (bench_variant_selected(o, "sleep")) {
        const unsigned S = R < 5 ? R : 5;
        weir_term *br[64];
        const unsigned nb = workers < 64 ? workers : 64;
        for (unsigned i = 0; i < nb; i++) {
            char name[32];
            snprintf(name, sizeof name, "sleeper%u", i);
            br[i] = weir_seq2(weir_function(name, sizeof(weir_periodic_rec),
                                            sizeof(weir_periodic_rec), dl_sleep_fn, &cfg.sleep_ns),
                              weir_sink(NULL, sizeof(weir_periodic_rec), dl_drop, NULL));
        }
        weir_pipeline *s = dl_start(
            rt, weir_seq2(weir_periodic_source("tick", cfg.period_ns, 0), weir_par(nb, br)));
        if (!s)
            goto out;
        bench_sleep(0.1);
        dl_cfg one = cfg;
        one.warmup = 0;
        int r = dl_series(rt, &one, S, with);
        if (dl_stop(s) < 0 || r < 0)
            goto out;
        uint64_t med = dl_median_of(with, S, tmp);
        bench_row_init(&row, "delay", "sleep", workers, cfg.n);
        row.runs = S;
        row.median_ns = med;
        row.min_ns = bench_min(with, S);
        row.ratio = (double)med / (double)base;
        bench_print_row(o, &row);
    }
    status = BENCH_EXIT_OK;
out:
    weir_runtime_destroy(rt);
    free(alone);
    free(with);
    free(tmp);
    free(ratios);
    free(samp);
    free(lat.held);
    free(lat.at);
    return status;
}
