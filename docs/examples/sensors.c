/*
 * sensors — running statistics over a stream of sensor readings, computed
 * twice: with a parallel branch per sensor (par), then with keyed shards
 * (weir_keyed), the form that scales with the number of sensors.
 *
 *   readings  a pull source: R readings from each of S sensors, interleaved
 *             (reading k comes from sensor k % S); each sensor has its own
 *             level and noise, and about one reading in 150 is a spike
 *
 * 1. The par form, a branch per sensor and an outlier filter beside them:
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
 * 2. The keyed form, the same figures from a second pipeline:
 *
 *   readings * keyed("per-sensor", SHARDS, key = sensor id,
 *                    shard i = sink stats_i, WEIR_ORDERED)
 *
 *   stats_i   sink with state: a table indexed by sensor id of Welford
 *             accumulators (count, mean, M2 of all readings) and of the
 *             outlier test (the inliers' count, mean and M2, and the
 *             outliers counted); shard i owns table i
 *
 * weir routes each reading once, by its key, to one shard: a sensor's
 * readings all go to the same shard, in input order, and a shard runs one
 * callback at a time, so the per-sensor state needs no lock and Welford's
 * update sees exactly the sequence a plain loop sees (the figures are
 * bit-identical to it, not just close). It scales where the par form does
 * not: the par form has S + 1 branches that each read every record (S
 * filters each throwing away (S - 1)/S of the stream, work S x R x S), the
 * keyed form one routing step per record (work R x S) and SHARDS shards, as
 * many as there are workers to run them, whatever the number of sensors.
 *
 * The program checks itself: it recomputes every figure with a plain loop
 * over the same readings and exits 1 if either pipeline disagrees (the par
 * figures within 1e-9, the keyed ones exactly; every sensor must live in
 * exactly one shard).
 *
 * Usage: sensors [SENSORS [READINGS [SHARDS]]]   (defaults 4, 50000 per
 *   sensor and 0: the runtime's worker count)
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

/* The outlier test of one reading against its sensor's inliers so far `w`:
 * true for an outlier; an inlier is folded into `w`. */
static bool outlier_step(welford *w, double x)
{
    if (w->n >= WARMUP) {
        double sd = sqrt(w->m2 / (double)(w->n - 1));
        if (fabs(x - w->mean) > OUTLIER_SIGMA * sd)
            return true;
    }
    welford_add(w, x);
    return false;
}

/* Keep (true) the readings that are outliers; fold the others in. */
static bool is_outlier(void *state, const void *in)
{
    outlier_state *st = state;
    const reading *r = in;
    return outlier_step(&st->s[r->sensor], r->value);
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

/* ---- the keyed form: a shard's table, indexed by sensor id --------------- */

typedef struct sensor_stats {
    welford all;     /* every reading: count, mean, M2 */
    welford inliers; /* the outlier test's state */
    uint64_t outliers;
} sensor_stats;

typedef struct shard_table {
    sensor_stats s[MAX_SENSORS]; /* only this shard's sensors are touched */
} shard_table;

#define MAX_SHARDS 64

/* weir_keyed's key: the sensor id (weir mixes it to pick the shard). */
static uint64_t sensor_key(void *arg, const void *rec)
{
    (void)arg;
    const reading *r = rec;
    return r->sensor;
}

/* Shard i's sink: its sensors' readings, one at a time, each sensor's in
 * input order. */
static int shard_update(void *state, const void *in)
{
    shard_table *t = state;
    const reading *r = in;
    sensor_stats *st = &t->s[r->sensor];
    welford_add(&st->all, r->value);
    st->outliers += outlier_step(&st->inliers, r->value);
    return 0;
}

/* weir_keyed's factory: shard i updates tables[i]. */
static weir_term *make_shard(void *arg, unsigned i)
{
    shard_table *tables = arg;
    return weir_sink("stats", sizeof(reading), shard_update, &tables[i]);
}

/* The shard that holds sensor i (the one whose table saw it), -1 if none or
 * more than one did. */
static int shard_of(const shard_table *tables, unsigned shards, unsigned i)
{
    int found = -1;
    for (unsigned j = 0; j < shards; j++)
        if (tables[j].s[i].all.n != 0) {
            if (found >= 0)
                return -1;
            found = (int)j;
        }
    return found;
}

static double std_of(const welford *w)
{
    return w->n > 1 ? sqrt(w->m2 / (double)(w->n - 1)) : 0.0;
}

/* ---- the check: the same figures from a plain loop ------------------------ */

static bool close_to(double a, double b)
{
    return fabs(a - b) <= 1e-9 * (1.0 + fabs(b));
}

static bool same_welford(const welford *a, const welford *b)
{
    return a->n == b->n && a->mean == b->mean && a->m2 == b->m2;
}

static int check(unsigned sensors, uint64_t per_sensor, const weir_running *last,
                 const alert_state *alerts, const shard_table *tables, unsigned shards)
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
    int bad = 0;
    for (unsigned i = 0; i < sensors; i++) {
        double sd = std_of(&w[i]);
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
        /* Keyed: one shard holds the sensor, its figures are bit-identical
         * to the plain loop's (the same Welford steps in the same order). */
        int j = shard_of(tables, shards, i);
        const sensor_stats *k = j >= 0 ? &tables[j].s[i] : NULL;
        if (k == NULL || !same_welford(&k->all, &w[i]) || !same_welford(&k->inliers, &ref->s[i]) ||
            k->outliers != outliers[i]) {
            fprintf(stderr,
                    "sensors: MISMATCH keyed sensor %u (shard %d): n=%llu mean=%a m2=%a "
                    "outliers=%llu, plain loop n=%llu mean=%a m2=%a outliers=%llu\n",
                    i, j, k ? (unsigned long long)k->all.n : 0ull, k ? k->all.mean : 0.0,
                    k ? k->all.m2 : 0.0, k ? (unsigned long long)k->outliers : 0ull,
                    (unsigned long long)w[i].n, w[i].mean, w[i].m2,
                    (unsigned long long)outliers[i]);
            bad++;
        }
    }
    free(ref);
    return bad;
}

/* Create and run a pipeline of `t` (taken); 0 or a negative errno, with a
 * message. */
static int run(weir_runtime *rt, weir_term *t)
{
    weir_pipeline *p = NULL;
    int err = weir_pipeline_create(rt, t, NULL, &p); /* NULL: default config + WEIR_EXEC */
    if (err < 0) {
        fprintf(stderr, "sensors: %s (%s)\n", weir_terms_last_error(), weir_strerror(err));
        weir_term_destroy(t);
        return err;
    }
    err = weir_pipeline_run(p); /* start + join */
    if (err < 0)
        fprintf(stderr, "sensors: %s (%s)\n", weir_pipeline_error(p), weir_strerror(err));
    weir_pipeline_destroy(p);
    return err;
}

int main(int argc, char **argv)
{
    long sensors = argc > 1 ? strtol(argv[1], NULL, 10) : 4;
    long long per_sensor = argc > 2 ? strtoll(argv[2], NULL, 10) : 50000;
    long shards = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    if (argc > 4 || sensors < 1 || sensors > MAX_SENSORS || per_sensor < 1 || shards < 0 ||
        shards > MAX_SHARDS) {
        fprintf(stderr,
                "usage: sensors [SENSORS (1..%d) [READINGS per sensor (>= 1) "
                "[SHARDS (0..%d, 0: one per worker)]]]\n",
                MAX_SENSORS, MAX_SHARDS);
        return 2;
    }
    unsigned S = (unsigned)sensors;

    weir_runtime *rt;
    if (weir_runtime_create(NULL, &rt) < 0) {
        fprintf(stderr, "sensors: %s\n", weir_last_error());
        return 1;
    }
    if (shards == 0)
        shards = weir_runtime_workers(rt);
    if (shards < 1)
        shards = 1;
    if (shards > MAX_SHARDS)
        shards = MAX_SHARDS;
    unsigned K = (unsigned)shards;

    /* Term state lives here, owned by main; the terms only point at it. */
    source_state src = {0, (uint64_t)per_sensor * S, S};
    unsigned ids[MAX_SENSORS];
    weir_running last[MAX_SENSORS];
    memset(last, 0, sizeof last);
    outlier_state *ost = calloc(1, sizeof *ost);
    alert_state alerts;
    memset(&alerts, 0, sizeof alerts);
    shard_table *tables = calloc(K, sizeof *tables);
    if (ost == NULL || tables == NULL) {
        fprintf(stderr, "sensors: out of memory\n");
        weir_runtime_destroy(rt);
        free(ost);
        free(tables);
        return 1;
    }

    /* 1. The par form: a branch per sensor, and the outlier filter. */
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
    int err = run(rt, weir_seq2(weir_source("readings", sizeof(reading), produce, &src),
                                weir_par(S + 1, branches)));

    /* 2. The keyed form: the same readings again, routed by sensor id to K
     *    shards, each with its own table. */
    source_state src2 = {0, (uint64_t)per_sensor * S, S};
    if (err == 0)
        err = run(rt, weir_seq2(weir_source("readings", sizeof(reading), produce, &src2),
                                weir_keyed("per-sensor", K, sensor_key, NULL, make_shard, tables,
                                           WEIR_ORDERED)));
    weir_runtime_destroy(rt);
    free(ost);
    if (err < 0) {
        free(tables);
        return 1;
    }

    printf("%u sensors x %lld readings\n", S, per_sensor);
    printf("sensor  readings       mean        std  outliers\n");
    for (unsigned i = 0; i < S; i++)
        printf("%6u  %8llu  %9.3f  %9.3f  %8llu\n", i, (unsigned long long)last[i].n, last[i].mean,
               last[i].std, (unsigned long long)alerts.count[i]);
    printf("total outliers: %llu\n", (unsigned long long)alerts.total);

    printf("keyed by sensor id, %u shards:\n", K);
    printf("sensor  shard  readings       mean        std  outliers\n");
    uint64_t keyed_outliers = 0;
    for (unsigned i = 0; i < S; i++) {
        int j = shard_of(tables, K, i);
        if (j < 0) {
            printf("%6u  %5s\n", i, "?");
            continue;
        }
        const sensor_stats *k = &tables[j].s[i];
        printf("%6u  %5d  %8llu  %9.3f  %9.3f  %8llu\n", i, j, (unsigned long long)k->all.n,
               k->all.mean, std_of(&k->all), (unsigned long long)k->outliers);
        keyed_outliers += k->outliers;
    }
    printf("total outliers: %llu\n", (unsigned long long)keyed_outliers);

    int bad = check(S, (uint64_t)per_sensor, last, &alerts, tables, K);
    free(tables);
    if (bad != 0) {
        fprintf(stderr, "sensors: %s\n", bad < 0 ? "out of memory" : "a pipeline disagrees");
        return 1;
    }
    printf("checked against a plain loop: ok (par within 1e-9, keyed bit-identical)\n");
    return 0;
}
