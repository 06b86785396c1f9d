/*
 * sensors — running statistics over a stream of sensor readings, with a
 * parallel branch per sensor and an outlier filter beside them.
 *
 *   readings  a pull source: R readings from each of S sensors, interleaved
 *             (reading k comes from sensor k % S); each sensor has its own
 *             level and noise, and about one reading in 150 is a spike
 *
 *   readings * ( sensor0 * value0 * stats0 * last0
 *              | ...
 *              | sensorS-1 * ... * lastS-1
 *              | outliers * alerts )
 *
 *   sensorI   filter: keeps the readings of sensor I
 *   valueI    map: reading -> double
 *   statsI    weir_running_stats(): double -> weir_running (Welford: count,
 *             mean, sample standard deviation so far)
 *   lastI     sink: keeps the latest weir_running, i.e. the final statistics
 *   outliers  filter with state: a reading further than 5 standard
 *             deviations from its sensor's mean so far (once the sensor has
 *             30 readings) is an outlier; the others update that sensor's
 *             mean and deviation
 *   alerts    sink: counts outliers per sensor, prints the first few
 *
 * The source's stream is broadcast: every branch sees every reading, in
 * order, and the readings are written once. The filter `outliers` and each
 * sink keep state with no lock: weir runs one callback of a term at a time.
 * The compiler fuses each branch's filter, map, stats and sink into one task.
 *
 * The program checks itself: it recomputes every figure with a plain loop
 * over the same readings and exits 1 if the pipeline disagrees.
 *
 * Usage: sensors [SENSORS [READINGS]]   (defaults 4 and 50000 per sensor)
 *   WEIR_EXEC=threads|hybrid|pool picks the execution mode, WEIR_STATS=1
 *   prints the term and stream tables.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir.h>

#define MAX_SENSORS   64
#define WARMUP        30 /* readings of a sensor before outliers are flagged */
#define OUTLIER_SIGMA 5.0
#define SHOW_ALERTS   3 /* alerts printed as they happen */

typedef struct reading {
    uint32_t sensor;
    uint32_t seq; /* the sensor's reading number, 0-based */
    double value;
} reading;

/* ---- the synthetic source ------------------------------------------------- */

static uint64_t mix(uint64_t x) /* splitmix64's finaliser */
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Reading k of the whole stream, the same every time (no libm, so the
 * values are the same bits on every machine). */
static reading make_reading(uint64_t k, unsigned sensors)
{
    reading r;
    r.sensor = (uint32_t)(k % sensors);
    r.seq = (uint32_t)(k / sensors);
    uint64_t h = mix(k + UINT64_C(0x9e3779b97f4a7c15));
    double level = 20.0 + 5.0 * r.sensor;
    double noise = 0.5 + 0.25 * r.sensor;
    /* The sum of two uniforms in [-1, 1): a triangular, bell-ish noise. */
    double u1 = (double)(h >> 40) / (double)(UINT64_C(1) << 24) * 2.0 - 1.0;
    double u2 = (double)((h >> 16) & 0xffffff) / (double)(UINT64_C(1) << 24) * 2.0 - 1.0;
    r.value = level + noise * (u1 + u2);
    if ((h & 0xffff) % 150 == 7) /* a spike, up or down */
        r.value += ((h >> 8) & 1 ? 1.0 : -1.0) * noise * 12.0;
    return r;
}

typedef struct source_state {
    uint64_t next, total;
    unsigned sensors;
} source_state;

/* Pull source: fill up to `max` readings per call, flag the end. */
static int produce(void *state, void *out, size_t max, bool *end)
{
    source_state *s = state;
    reading *r = out;
    size_t k = 0;
    while (k < max && s->next < s->total)
        r[k++] = make_reading(s->next++, s->sensors);
    *end = s->next == s->total;
    return (int)k;
}

/* ---- a branch per sensor -------------------------------------------------- */

static bool is_sensor(void *state, const void *in)
{
    const unsigned *id = state;
    const reading *r = in;
    return r->sensor == *id;
}

static void value_of(void *state, const void *in, void *out)
{
    const reading *r = in;
    memcpy(out, &r->value, sizeof r->value);
}

static int keep_last(void *state, const void *in)
{
    memcpy(state, in, sizeof(weir_running));
    return 0;
}

/* ---- the outlier filter --------------------------------------------------- */

typedef struct welford {
    uint64_t n;
    double mean, m2;
} welford;

typedef struct outlier_state {
    welford s[MAX_SENSORS];
} outlier_state;

static void welford_add(welford *w, double x)
{
    w->n++;
    double d = x - w->mean;
    w->mean += d / (double)w->n;
    w->m2 += d * (x - w->mean);
}

/* Keep (true) the readings that are outliers; fold the others in. */
static bool is_outlier(void *state, const void *in)
{
    outlier_state *st = state;
    const reading *r = in;
    welford *w = &st->s[r->sensor];
    if (w->n >= WARMUP) {
        double sd = sqrt(w->m2 / (double)(w->n - 1));
        if (fabs(r->value - w->mean) > OUTLIER_SIGMA * sd)
            return true;
    }
    welford_add(w, r->value);
    return false;
}

typedef struct alert_state {
    uint64_t count[MAX_SENSORS];
    uint64_t total;
} alert_state;

static int alert(void *state, const void *in)
{
    alert_state *a = state;
    const reading *r = in;
    if (a->total++ < SHOW_ALERTS)
        printf("alert: sensor %u reading %u = %.3f\n", r->sensor, r->seq, r->value);
    a->count[r->sensor]++;
    return 0;
}

/* ---- the check: the same figures from a plain loop ------------------------ */

static bool close_to(double a, double b)
{
    return fabs(a - b) <= 1e-9 * (1.0 + fabs(b));
}

static int check(unsigned sensors, uint64_t per_sensor, const weir_running *last,
                 const alert_state *alerts)
{
    welford w[MAX_SENSORS] = {{0}};
    outlier_state *ref = calloc(1, sizeof *ref);
    uint64_t outliers[MAX_SENSORS] = {0};
    if (ref == NULL)
        return -1;
    for (uint64_t k = 0; k < per_sensor * sensors; k++) {
        reading r = make_reading(k, sensors);
        welford_add(&w[r.sensor], r.value);
        outliers[r.sensor] += is_outlier(ref, &r);
    }
    free(ref);
    int bad = 0;
    for (unsigned i = 0; i < sensors; i++) {
        double sd = w[i].n > 1 ? sqrt(w[i].m2 / (double)(w[i].n - 1)) : 0.0;
        if (last[i].n != w[i].n || !close_to(last[i].mean, w[i].mean) ||
            !close_to(last[i].std, sd) || alerts->count[i] != outliers[i]) {
            fprintf(stderr,
                    "sensors: MISMATCH sensor %u: pipeline n=%llu mean=%.9g std=%.9g "
                    "outliers=%llu, plain loop n=%llu mean=%.9g std=%.9g outliers=%llu\n",
                    i, (unsigned long long)last[i].n, last[i].mean, last[i].std,
                    (unsigned long long)alerts->count[i], (unsigned long long)w[i].n, w[i].mean, sd,
                    (unsigned long long)outliers[i]);
            bad++;
        }
    }
    return bad;
}

int main(int argc, char **argv)
{
    long sensors = argc > 1 ? strtol(argv[1], NULL, 10) : 4;
    long long per_sensor = argc > 2 ? strtoll(argv[2], NULL, 10) : 50000;
    if (argc > 3 || sensors < 1 || sensors > MAX_SENSORS || per_sensor < 1) {
        fprintf(stderr, "usage: sensors [SENSORS (1..%d) [READINGS per sensor (>= 1)]]\n",
                MAX_SENSORS);
        return 2;
    }
    unsigned S = (unsigned)sensors;

    weir_runtime *rt;
    if (weir_runtime_create(NULL, &rt) < 0) {
        fprintf(stderr, "sensors: %s\n", weir_last_error());
        return 1;
    }

    /* Term state lives here, owned by main; the terms only point at it. */
    source_state src = {0, (uint64_t)per_sensor * S, S};
    unsigned ids[MAX_SENSORS];
    weir_running last[MAX_SENSORS];
    memset(last, 0, sizeof last);
    outlier_state *ost = calloc(1, sizeof *ost);
    alert_state alerts;
    memset(&alerts, 0, sizeof alerts);

    weir_term *branches[MAX_SENSORS + 1];
    for (unsigned i = 0; i < S; i++) {
        char f[32], v[32], s[32], l[32];
        snprintf(f, sizeof f, "sensor%u", i);
        snprintf(v, sizeof v, "value%u", i);
        snprintf(s, sizeof s, "stats%u", i);
        snprintf(l, sizeof l, "last%u", i);
        ids[i] = i;
        branches[i] = WEIR_SEQ(weir_filter(f, sizeof(reading), is_sensor, &ids[i]),
                               weir_map(v, sizeof(reading), sizeof(double), value_of, NULL),
                               weir_running_stats(s),
                               weir_sink(l, sizeof(weir_running), keep_last, &last[i]));
    }
    branches[S] = weir_seq2(weir_filter("outliers", sizeof(reading), is_outlier, ost),
                            weir_sink("alerts", sizeof(reading), alert, &alerts));
    weir_term *t = weir_seq2(weir_source("readings", sizeof(reading), produce, &src),
                             weir_par(S + 1, branches));

    weir_pipeline *p = NULL;
    int err = ost == NULL ? -ENOMEM : weir_pipeline_create(rt, t, NULL, &p);
    if (err < 0) {
        fprintf(stderr, "sensors: %s (%s)\n", weir_terms_last_error(), weir_strerror(err));
        weir_term_destroy(t);
    } else {
        err = weir_pipeline_run(p);
        if (err < 0)
            fprintf(stderr, "sensors: %s (%s)\n", weir_pipeline_error(p), weir_strerror(err));
        weir_pipeline_destroy(p);
    }
    weir_runtime_destroy(rt);
    free(ost);
    if (err < 0)
        return 1;

    printf("%u sensors x %lld readings\n", S, per_sensor);
    printf("sensor  readings       mean        std  outliers\n");
    for (unsigned i = 0; i < S; i++)
        printf("%6u  %8llu  %9.3f  %9.3f  %8llu\n", i, (unsigned long long)last[i].n, last[i].mean,
               last[i].std, (unsigned long long)alerts.count[i]);
    printf("total outliers: %llu\n", (unsigned long long)alerts.total);

    int bad = check(S, (uint64_t)per_sensor, last, &alerts);
    if (bad != 0) {
        fprintf(stderr, "sensors: %s\n", bad < 0 ? "out of memory" : "the pipeline disagrees");
        return 1;
    }
    printf("checked against a plain loop: ok\n");
    return 0;
}
