/*
 * weir-bench timers: the cost and accuracy of runtime timers (include/weir/
 * timer.h), and the CPU an idle runtime burns with timers pending.
 *
 * Variants:
 *   heap    the serial baseline: the same n deadlines pushed into and popped
 *           from a binary heap on one thread, each popped one calling the job
 *           function directly (no clock, no waiting): the floor of ordering n
 *           timers.
 *   burst   n timers armed from the workers (one seeding job per worker, each
 *           arming its share), deadlines random in the millisecond before the
 *           start of the run, so all due at once: arm +
 *           fire + run throughput. timers_per_s = n / (last run - start);
 *           lateness here is mostly queueing (a timer waits for those before it).
 *   spread  the same n timers with deadlines spread uniformly at random over
 *           --spread-ms (default 2000) after a 500 ms lead (arming is done
 *           before the first deadline; arm_ms says how long it took):
 *           lateness = run time - deadline under a steady load.
 *   idle    10 000 timers an hour away, then --seconds S (default 2) of sleep:
 *           cpu_pct = user+sys CPU of the process (getrusage) / wall time.
 *           The timers are cancelled afterwards (each cancel must succeed).
 */
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

#include "bench.h"

#define NVARIANTS(a) (sizeof(a) / sizeof((a)[0]))

/* The deadlines of variant burst (and of the heap baseline) are spread over
 * this many ns, all before the start of the run. */
#define BURST_WINDOW UINT64_C(1000000)

typedef struct tm_run tm_run;

typedef struct tm_slot {
    weir_job job;
    weir_timer timer;
    tm_run *run;
    uint64_t index;
} tm_slot;

typedef struct tm_seed {
    weir_job job;
    tm_run *run;
    uint64_t from, to;
    uint64_t end_ns; /* when this seeder finished arming */
} tm_seed;

struct tm_run {
    weir_runtime *rt;
    tm_slot *slots;
    uint64_t *deadline; /* per timer, decided before the run */
    uint64_t *late;     /* per timer: run time - deadline */
    uint64_t n;
    _Atomic uint64_t left, arm_errors, early;
    _Atomic unsigned seeders;
    weir_latch done;
};

static uint64_t mix(uint64_t x)
{
    /* splitmix64: deterministic, well-spread deadlines */
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static void timer_job(weir_worker *w, weir_job *j)
{
    (void)w;
    tm_slot *s = (tm_slot *)(void *)j;
    tm_run *r = s->run;
    uint64_t now = weir_now_ns(), d = s->timer.deadline_ns;
    if (now < d)
        atomic_fetch_add_explicit(&r->early, 1, memory_order_relaxed);
    r->late[s->index] = now >= d ? now - d : 0;
    /* acq_rel: the last job sees every other job's `late` entry (release by
     * each decrement, acquire by the one that reaches 0), then the latch
     * carries them to the main thread. */
    if (atomic_fetch_sub_explicit(&r->left, 1, memory_order_acq_rel) == 1)
        weir_latch_set(&r->done);
}

static void seed_job(weir_worker *w, weir_job *j)
{
    (void)w;
    tm_seed *sd = (tm_seed *)(void *)j;
    tm_run *r = sd->run;
    for (uint64_t i = sd->from; i < sd->to; i++) {
        tm_slot *s = &r->slots[i];
        if (weir_submit_at(r->rt, &s->job, r->deadline[i], &s->timer) != 0)
            atomic_fetch_add_explicit(&r->arm_errors, 1, memory_order_relaxed);
    }
    sd->end_ns = weir_now_ns();
    /* release: pairs with the main thread's acquire load, which then reads
     * end_ns */
    atomic_fetch_sub_explicit(&r->seeders, 1, memory_order_release);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The serial baseline: a binary min-heap of the deadlines. */
static uint64_t heap_once(const uint64_t *deadline, uint64_t n, uint64_t *heap, tm_slot *slots,
                          tm_run *r)
{
    uint64_t len = 0, popped = 0;
    for (uint64_t i = 0; i < n; i++) {
        /* keys: deadline in the high bits would lose ties; sort (deadline, i)
         * by comparing deadlines then indices */
        uint64_t k = len++;
        heap[k] = i;
        while (k > 0) {
            uint64_t p = (k - 1) / 2;
            if (deadline[heap[p]] < deadline[heap[k]] ||
                (deadline[heap[p]] == deadline[heap[k]] && heap[p] < heap[k]))
                break;
            uint64_t x = heap[p];
            heap[p] = heap[k];
            heap[k] = x;
            k = p;
        }
    }
    while (len > 0) {
        uint64_t top = heap[0];
        heap[0] = heap[--len];
        uint64_t k = 0;
        for (;;) {
            uint64_t l = 2 * k + 1, m = k;
            if (l < len && (deadline[heap[l]] < deadline[heap[m]] ||
                            (deadline[heap[l]] == deadline[heap[m]] && heap[l] < heap[m])))
                m = l;
            if (l + 1 < len &&
                (deadline[heap[l + 1]] < deadline[heap[m]] ||
                 (deadline[heap[l + 1]] == deadline[heap[m]] && heap[l + 1] < heap[m])))
                m = l + 1;
            if (m == k)
                break;
            uint64_t x = heap[m];
            heap[m] = heap[k];
            heap[k] = x;
            k = m;
        }
        /* the timer "fires": its job function, called directly */
        slots[top].timer.deadline_ns = 0;
        timer_job(NULL, &slots[top].job);
        popped++;
    }
    (void)r;
    return popped;
}

typedef struct tm_result {
    uint64_t wall_ns, arm_ns, med_late, p99_late, max_late, early, errors;
} tm_result;

/* One run of burst (spread_ns == 0) or spread on a fresh set of timers. */
static int timers_once(weir_runtime *rt, tm_run *r, uint64_t spread_ns, uint64_t salt,
                       tm_result *out)
{
    uint64_t n = r->n;
    unsigned k = weir_runtime_workers(rt);
    tm_seed *seeds = calloc(k, sizeof *seeds);
    if (!seeds)
        return BENCH_EXIT_FAIL;
    for (uint64_t i = 0; i < n; i++) {
        weir_job_init(&r->slots[i].job, timer_job, NULL, 0);
        weir_timer_init(&r->slots[i].timer);
        r->slots[i].run = r;
        r->slots[i].index = i;
    }
    atomic_store(&r->left, n);
    atomic_store(&r->early, 0);
    atomic_store(&r->arm_errors, 0);
    atomic_store(&r->seeders, k);
    weir_latch_init(&r->done);
    r->rt = rt;
    uint64_t t0 = weir_now_ns();
    uint64_t lead = spread_ns ? UINT64_C(500000000) : 0;
    /* burst: random deadlines in the millisecond before the start (all due,
     * in an order the heap has to sort); spread: after the lead */
    for (uint64_t i = 0; i < n; i++)
        r->deadline[i] = spread_ns ? t0 + lead + mix(i ^ salt) % spread_ns
                                   : t0 - BURST_WINDOW + mix(i ^ salt) % BURST_WINDOW;
    t0 = weir_now_ns();
    for (unsigned s = 0; s < k; s++) {
        weir_job_init(&seeds[s].job, seed_job, NULL, 0);
        seeds[s].run = r;
        seeds[s].from = n * s / k;
        seeds[s].to = n * (s + 1) / k;
        if (weir_submit(rt, &seeds[s].job) != 0) {
            fprintf(stderr, "weir-bench: timers: %s\n", weir_last_error());
            free(seeds);
            return BENCH_EXIT_FAIL;
        }
    }
    uint64_t budget = UINT64_C(120000000000) + lead + spread_ns;
    if (!weir_latch_wait_for(&r->done, budget)) {
        fprintf(stderr, "weir-bench: timers: only %" PRIu64 " of %" PRIu64 " fired in time\n",
                n - atomic_load(&r->left), n);
        fflush(NULL);
        _Exit(BENCH_EXIT_FAIL); /* jobs in flight: nothing can be freed */
    }
    uint64_t t1 = weir_now_ns();
    /* the seeders have armed every timer, but may not have returned yet */
    while (atomic_load_explicit(&r->seeders, memory_order_acquire) != 0)
        bench_sleep(0.0001);
    uint64_t armed = t0;
    for (unsigned s = 0; s < k; s++)
        armed = seeds[s].end_ns > armed ? seeds[s].end_ns : armed;
    free(seeds);
    out->wall_ns = t1 - t0;
    out->arm_ns = armed - t0;
    out->early = atomic_load(&r->early);
    out->errors = atomic_load(&r->arm_errors);
    qsort(r->late, n, sizeof *r->late, cmp_u64);
    out->med_late = r->late[(n - 1) / 2];
    out->p99_late = r->late[(n - 1) * 99 / 100];
    out->max_late = r->late[n - 1];
    return out->errors || out->early ? BENCH_EXIT_FAIL : BENCH_EXIT_OK;
}

static int idle_once(weir_runtime *rt, double seconds, uint64_t *wall, uint64_t *cpu)
{
    const uint64_t n = 10000;
    tm_slot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return BENCH_EXIT_FAIL;
    uint64_t far = weir_now_ns() + UINT64_C(3600000000000);
    for (uint64_t i = 0; i < n; i++) {
        weir_job_init(&slots[i].job, timer_job, NULL, 0);
        weir_timer_init(&slots[i].timer);
        if (weir_submit_at(rt, &slots[i].job, far + i * 1000, &slots[i].timer) != 0) {
            fprintf(stderr, "weir-bench: timers: %s\n", weir_last_error());
            free(slots);
            return BENCH_EXIT_FAIL;
        }
    }
    bench_sleep(0.05); /* let the workers go from arming to parked */
    uint64_t c0 = bench_cpu_ns(), t0 = bench_now_ns();
    bench_sleep(seconds);
    uint64_t c1 = bench_cpu_ns(), t1 = bench_now_ns();
    *wall = t1 - t0;
    *cpu = c1 - c0;
    int status = BENCH_EXIT_OK;
    for (uint64_t i = 0; i < n; i++)
        if (weir_timer_cancel(rt, &slots[i].timer) != 0) {
            fprintf(stderr, "weir-bench: timers: cancel %" PRIu64 ": %s\n", i, weir_last_error());
            status = BENCH_EXIT_FAIL;
        }
    free(slots);
    return status;
}

static uint64_t median_of(uint64_t *v, unsigned n)
{
    return bench_median(v, n);
}

int bench_timers(const bench_opts *o, int argc, char **argv)
{
    static const char *const names[] = {"heap", "burst", "spread", "idle"};
    uint64_t spread_ms = 2000;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int m = bench_opt_value(argc, argv, &i, "--spread-ms", &val);
        if (m < 0)
            return BENCH_EXIT_USAGE;
        if (m == 0)
            return bench_usage_error("timers: unknown option '%s'", argv[i]);
        if (!bench_parse_u64(val, &spread_ms) || spread_ms < 1 || spread_ms > 3600000)
            return bench_usage_error("timers: --spread-ms '%s': expected 1..3600000", val);
    }
    int rc = bench_check_variants(o, names, NVARIANTS(names));
    if (rc)
        return rc;
    uint64_t n = o->has_n ? o->n : 1000000;
    if (n < 1 || n > 50000000)
        return bench_usage_error("timers: --n %" PRIu64 " out of range [1, 50000000]", n);
    unsigned runs = o->has_runs ? o->runs : 3;
    double seconds = o->has_seconds ? o->seconds : 2.0;
    if (!(seconds > 0 && seconds <= 3600))
        return bench_usage_error("timers: --seconds %g out of range (0, 3600]", seconds);

    tm_run r;
    memset(&r, 0, sizeof r);
    r.n = n;
    r.slots = calloc(n, sizeof *r.slots);
    r.deadline = calloc(n, sizeof *r.deadline);
    r.late = calloc(n, sizeof *r.late);
    uint64_t *heap = calloc(n, sizeof *heap);
    uint64_t *wall = calloc(runs, sizeof *wall), *aux = calloc(runs, sizeof *aux);
    uint64_t *med = calloc(runs, sizeof *med), *p99 = calloc(runs, sizeof *p99);
    uint64_t *mx = calloc(runs, sizeof *mx);
    int status = BENCH_EXIT_OK;
    if (!r.slots || !r.deadline || !r.late || !heap || !wall || !aux || !med || !p99 || !mx) {
        fprintf(stderr, "weir-bench: timers: out of memory for %" PRIu64 " timers\n", n);
        status = BENCH_EXIT_FAIL;
        goto out;
    }
    bench_note(o, "timers n=%" PRIu64 " runs=%u spread_ms=%" PRIu64 " idle_seconds=%g", n, runs,
               spread_ms, seconds);

    double heap_median = NAN;
    if (bench_variant_selected(o, "heap")) {
        for (uint64_t i = 0; i < n; i++) {
            weir_job_init(&r.slots[i].job, timer_job, NULL, 0);
            r.slots[i].run = &r;
            r.slots[i].index = i;
        }
        for (unsigned k = 0; k < runs; k++) {
            for (uint64_t i = 0; i < n; i++)
                r.deadline[i] = mix(i ^ k) % BURST_WINDOW; /* burst's distribution */
            atomic_store(&r.left, n + 1);                  /* the latch is not used here */
            uint64_t t0 = bench_now_ns();
            uint64_t popped = heap_once(r.deadline, n, heap, r.slots, &r);
            wall[k] = bench_now_ns() - t0;
            if (popped != n) {
                status = BENCH_EXIT_FAIL;
                goto out;
            }
        }
        bench_row row;
        bench_row_init(&row, "timers", "heap", 1, n);
        row.runs = runs;
        row.min_ns = bench_min(wall, runs);
        row.median_ns = median_of(wall, runs);
        heap_median = (double)row.median_ns;
        row.ratio = 1.0;
        bench_row_extra(&row, "timers_per_s", (double)n * 1e9 / (double)row.median_ns, false);
        bench_print_row(o, &row);
    }

    for (int v = 1; v <= 2 && status == BENCH_EXIT_OK; v++) {
        if (!bench_variant_selected(o, names[v]))
            continue;
        weir_runtime *rt = NULL;
        if (bench_runtime_create(o, &rt) < 0) {
            status = BENCH_EXIT_FAIL;
            break;
        }
        unsigned workers = weir_runtime_workers(rt);
        uint64_t spread_ns = v == 2 ? spread_ms * UINT64_C(1000000) : 0;
        uint64_t early = 0;
        tm_result res = {0};
        for (unsigned k = 0; k < runs + o->warmup && status == BENCH_EXIT_OK; k++) {
            if (k == o->warmup)
                weir_runtime_stats_reset(rt);
            status = timers_once(rt, &r, spread_ns, k, &res);
            early += res.early;
            if (k >= o->warmup) {
                unsigned j = k - o->warmup;
                wall[j] = res.wall_ns;
                aux[j] = res.arm_ns;
                med[j] = res.med_late;
                p99[j] = res.p99_late;
                mx[j] = res.max_late;
            }
        }
        if (status != BENCH_EXIT_OK) {
            fprintf(stderr, "weir-bench: timers: %" PRIu64 " arm errors, %" PRIu64 " early\n",
                    res.errors, res.early);
            weir_runtime_destroy(rt);
            break;
        }
        bench_row row;
        bench_row_init(&row, "timers", names[v], workers, n);
        row.runs = runs;
        row.min_ns = bench_min(wall, runs);
        row.median_ns = median_of(wall, runs);
        if (v == 1 && !isnan(heap_median))
            row.ratio = (double)row.median_ns / heap_median;
        row.has_stats = true;
        weir_runtime_stats_total(rt, &row.stats);
        bench_row_extra(&row, "timers_per_s", (double)n * 1e9 / (double)row.median_ns, false);
        bench_row_extra(&row, "arm_ms", (double)median_of(aux, runs) / 1e6, false);
        bench_row_extra(&row, "lat_med_us", (double)median_of(med, runs) / 1e3, false);
        bench_row_extra(&row, "lat_p99_us", (double)median_of(p99, runs) / 1e3, false);
        bench_row_extra(&row, "lat_max_us", (double)median_of(mx, runs) / 1e3, false);
        bench_row_extra(&row, "early", (double)early, true);
        bench_print_row(o, &row);
        weir_runtime_destroy(rt);
    }

    if (status == BENCH_EXIT_OK && bench_variant_selected(o, "idle")) {
        weir_runtime *rt = NULL;
        if (bench_runtime_create(o, &rt) < 0) {
            status = BENCH_EXIT_FAIL;
            goto out;
        }
        unsigned workers = weir_runtime_workers(rt);
        for (unsigned k = 0; k < runs && status == BENCH_EXIT_OK; k++)
            status = idle_once(rt, seconds, &wall[k], &aux[k]);
        if (status == BENCH_EXIT_OK) {
            bench_row row;
            bench_row_init(&row, "timers", "idle", workers, 10000);
            row.runs = runs;
            row.min_ns = bench_min(wall, runs);
            row.median_ns = median_of(wall, runs);
            double cpu_s = (double)median_of(aux, runs) / 1e9;
            double wall_s = (double)row.median_ns / 1e9;
            bench_row_extra(&row, "cpu_s", cpu_s, false);
            bench_row_extra(&row, "wall_s", wall_s, false);
            bench_row_extra(&row, "cpu_pct", 100.0 * cpu_s / wall_s, false);
            bench_print_row(o, &row);
        }
        weir_runtime_destroy(rt);
    }
out:
    free(r.slots);
    free(r.deadline);
    free(r.late);
    free(heap);
    free(wall);
    free(aux);
    free(med);
    free(p99);
    free(mx);
    return status;
}
