/*
 * weir-bench — shared helpers: parsing, clocks, process counters, output and
 * the generic variant runner (see bench.h).
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "weir.h"

/* task.h counts spawns only when built with WEIR_COUNT_SPAWNS=1 (the counter
 * costs fib ~20 %); without it the "spawns" counter is reported as null. Headers
 * older than that switch always counted. */
#if !defined(WEIR_COUNT_SPAWNS) || WEIR_COUNT_SPAWNS
#define BENCH_SPAWNS_COUNTED 1
#else
#define BENCH_SPAWNS_COUNTED 0
#endif

/* ---- parsing -------------------------------------------------------------- */

bool bench_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false; /* also rejects "", "-1", "+1" and leading blanks */
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    uint64_t mult = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mult = UINT64_C(1000);
        end++;
        break;
    case 'm':
    case 'M':
        mult = UINT64_C(1000000);
        end++;
        break;
    case 'g':
    case 'G':
        mult = UINT64_C(1000000000);
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0')
        return false;
    if (v > UINT64_MAX / mult)
        return false;
    *out = (uint64_t)v * mult;
    return true;
}

bool bench_parse_double(const char *s, double *out)
{
    if (s == NULL || ((*s < '0' || *s > '9') && *s != '.'))
        return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

int bench_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0)
        return 0;
    if (a[len] == '=') {
        *val = a + len + 1;
        return 1;
    }
    if (a[len] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        bench_usage_error("option %s needs a value", name);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

int bench_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("weir-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'weir-bench --help'.\n", stderr);
    return BENCH_EXIT_USAGE;
}

int bench_no_extra_args(int argc, char **argv)
{
    if (argc > 1)
        return bench_usage_error("%s: unknown option or argument '%s'", argv[0], argv[1]);
    return 0;
}

int bench_check_variants(const bench_opts *o, const char *const *known, size_t nknown)
{
    for (unsigned i = 0; i < o->nvariants; i++) {
        bool ok = false;
        for (size_t k = 0; k < nknown && !ok; k++)
            ok = strcmp(o->variants[i], known[k]) == 0;
        if (!ok) {
            fprintf(stderr, "weir-bench: %s: unknown variant '%s' (known:", o->cmd, o->variants[i]);
            for (size_t k = 0; k < nknown; k++)
                fprintf(stderr, "%s%s", k ? "," : " ", known[k]);
            fputs(")\nTry 'weir-bench --help'.\n", stderr);
            return BENCH_EXIT_USAGE;
        }
    }
    return 0;
}

bool bench_variant_selected(const bench_opts *o, const char *name)
{
    if (o->nvariants == 0)
        return true;
    for (unsigned i = 0; i < o->nvariants; i++)
        if (strcmp(o->variants[i], name) == 0)
            return true;
    return false;
}

/* ---- measurement ---------------------------------------------------------- */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    uint64_t us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                  (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    return us * 1000u;
}

uint64_t bench_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long long size = 0, resident = 0;
    int got = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (got != 2)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096) / 1024u;
}

unsigned bench_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    char line[256];
    unsigned threads = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "Threads:", 8) == 0) {
            threads = (unsigned)strtoul(line + 8, NULL, 10);
            break;
        }
    }
    fclose(f);
    return threads;
}

unsigned bench_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

void bench_sleep(double seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double whole = floor(seconds);
    until.tv_sec += (time_t)whole;
    until.tv_nsec += (long)((seconds - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        ;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

uint64_t bench_median(uint64_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    if (n % 2)
        return v[n / 2];
    return v[n / 2 - 1] + (v[n / 2] - v[n / 2 - 1]) / 2;
}

uint64_t bench_min(const uint64_t *v, size_t n)
{
    uint64_t m = n ? v[0] : 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] < m)
            m = v[i];
    return m;
}

unsigned bench_default_workers(const bench_opts *o)
{
    if (o->workers != 0)
        return o->workers;
    weir_config *cfg = malloc(sizeof *cfg);
    unsigned w = 0;
    if (cfg != NULL) {
        weir_config_init(cfg);
        if (weir_config_from_env(cfg) == 0)
            w = cfg->workers;
        weir_config_deinit(cfg);
        free(cfg);
    }
    return w != 0 ? w : bench_online_cpus();
}

int bench_runtime_create(const bench_opts *o, weir_runtime **rt)
{
    weir_config *cfg = malloc(sizeof *cfg); /* ~16 KiB: the explicit place list */
    if (cfg == NULL) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return -ENOMEM;
    }
    weir_config_init(cfg);
    int err = weir_config_from_env(cfg);
    if (err < 0) {
        fprintf(stderr, "weir-bench: %s\n", weir_last_error());
    } else {
        if (o->workers != 0)
            cfg->workers = o->workers;
        err = weir_runtime_create(cfg, rt);
        if (err < 0)
            fprintf(stderr, "weir-bench: weir_runtime_create: %s: %s\n", weir_strerror(err),
                    weir_last_error());
    }
    weir_config_deinit(cfg);
    free(cfg);
    return err;
}

/* ---- output --------------------------------------------------------------- */

void bench_row_init(bench_row *r, const char *bench, const char *variant, unsigned workers,
                    uint64_t n)
{
    memset(r, 0, sizeof *r);
    r->bench = bench;
    r->variant = variant;
    r->workers = workers;
    r->n = n;
    r->ratio = NAN;
}

void bench_row_extra(bench_row *r, const char *key, double value, bool integer)
{
    if (r->nextra >= BENCH_MAX_EXTRA)
        return;
    r->extra[r->nextra].key = key;
    r->extra[r->nextra].value = value;
    r->extra[r->nextra].integer = integer;
    r->nextra++;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_number(FILE *f, double v, bool integer)
{
    if (!isfinite(v))
        fputs("null", f);
    else if (integer)
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.6g", v);
}

static void print_json(const bench_row *r)
{
    FILE *f = stdout;
    fputs("{\"bench\":", f);
    json_string(f, r->bench);
    fputs(",\"variant\":", f);
    json_string(f, r->variant);
    fprintf(f,
            ",\"workers\":%u,\"n\":%" PRIu64 ",\"runs\":%u,\"median_ns\":%" PRIu64
            ",\"min_ns\":%" PRIu64 ",\"ratio_vs_serial\":",
            r->workers, r->n, r->runs, r->median_ns, r->min_ns);
    json_number(f, r->ratio, false);
    if (r->has_result)
        fprintf(f, ",\"result\":%" PRIu64, r->result);
    if (r->has_stats) {
        const weir_worker_stats *s = &r->stats;
        fprintf(f,
                ",\"steal_attempts\":%" PRIu64 ",\"steals\":%" PRIu64 ",\"tasks_stolen\":%" PRIu64
                ",\"steal_empty\":%" PRIu64 ",\"steal_contended\":%" PRIu64
                ",\"leapfrogs\":%" PRIu64 ",\"publishes\":%" PRIu64 ",\"parks\":%" PRIu64
                ",\"wakeups\":%" PRIu64 ",\"tasks_run\":%" PRIu64 ",\"injected\":%" PRIu64,
                s->steal_attempts, s->steals, s->tasks_stolen, s->steal_empty, s->steal_contended,
                s->leapfrogs, s->publishes, s->parks, s->wakeups, s->tasks_run, s->injected);
        if (BENCH_SPAWNS_COUNTED)
            fprintf(f, ",\"spawns\":%" PRIu64, s->spawns);
        else
            fputs(",\"spawns\":null", f);
    }
    for (unsigned i = 0; i < r->nextra; i++) {
        fputc(',', f);
        json_string(f, r->extra[i].key);
        fputc(':', f);
        json_number(f, r->extra[i].value, r->extra[i].integer);
    }
    fputs("}\n", f);
}

static bool g_header_done;

static void print_table(const bench_row *r)
{
    FILE *f = stdout;
    if (!g_header_done) {
        fprintf(f, "%-8s %-10s %7s %11s %11s %11s %9s %10s  %s\n", "bench", "variant", "workers",
                "n", "median_ms", "min_ms", "vs_serial", "steals", "extra");
        g_header_done = true;
    }
    char ratio[32] = "-", steals[32] = "-";
    if (isfinite(r->ratio))
        snprintf(ratio, sizeof ratio, "%.2fx", r->ratio);
    if (r->has_stats)
        snprintf(steals, sizeof steals, "%" PRIu64, r->stats.steals);
    fprintf(f, "%-8s %-10s %7u %11" PRIu64 " %11.3f %11.3f %9s %10s ", r->bench, r->variant,
            r->workers, r->n, (double)r->median_ns / 1e6, (double)r->min_ns / 1e6, ratio, steals);
    for (unsigned i = 0; i < r->nextra; i++) {
        if (r->extra[i].integer || !isfinite(r->extra[i].value))
            fprintf(f, " %s=%.0f", r->extra[i].key, r->extra[i].value);
        else
            fprintf(f, " %s=%.4g", r->extra[i].key, r->extra[i].value);
    }
    if (r->has_stats && r->stats.leapfrogs)
        fprintf(f, " leapfrogs=%" PRIu64, r->stats.leapfrogs);
    if (r->has_stats && r->stats.parks)
        fprintf(f, " parks=%" PRIu64, r->stats.parks);
    fputc('\n', f);
}

void bench_print_row(const bench_opts *o, const bench_row *r)
{
    if (o->json)
        print_json(r);
    else
        print_table(r);
    fflush(stdout);
}

void bench_note(const bench_opts *o, const char *fmt, ...)
{
    if (o->json)
        return;
    va_list ap;
    fputs("# ", stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* ---- the generic variant runner ------------------------------------------- */

static uint64_t run_once(const bench_variant *v, bench_ctx *c)
{
    if (v->prepare)
        v->prepare(c);
    return v->run(c);
}

static bool check(const bench_spec *s, const bench_variant *v, uint64_t got, bool have_ref,
                  uint64_t ref)
{
    if (!have_ref || got == ref)
        return true;
    fprintf(stderr, "weir-bench: %s/%s: wrong result %" PRIu64 " (baseline %s: %" PRIu64 ")\n",
            s->bench, v->name, got, s->variants[0].name, ref);
    return false;
}

int bench_run(const bench_opts *o, const bench_spec *s, bench_ctx *c)
{
    const char *known[BENCH_MAX_VARIANTS];
    size_t nknown = s->nvariants < BENCH_MAX_VARIANTS ? s->nvariants : BENCH_MAX_VARIANTS;
    for (size_t i = 0; i < nknown; i++)
        known[i] = s->variants[i].name;
    int rc = bench_check_variants(o, known, nknown);
    if (rc != 0)
        return rc;

    bool any = false;
    for (size_t i = 0; i < s->nvariants; i++) {
        const bench_variant *v = &s->variants[i];
        if (!bench_variant_selected(o, v->name))
            continue;
        if (v->run == NULL) {
            if (o->nvariants != 0)
                return bench_usage_error("%s: variant '%s' is not built in (%s)", s->bench, v->name,
                                         v->missing ? v->missing : "disabled");
            continue;
        }
        any = true;
    }
    if (!any)
        return bench_usage_error("%s: no variant to run", s->bench);

    c->rt = NULL;
    c->workers = bench_default_workers(o);
    unsigned runs = o->runs ? o->runs : 1;
    bench_note(o, "%s n=%" PRIu64 " workers=%u runs=%u warmup=%u cpus=%u", s->bench, c->n,
               c->workers, runs, o->warmup, bench_online_cpus());

    uint64_t *t = calloc(runs, sizeof *t);
    if (t == NULL) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }

    int status = BENCH_EXIT_OK;
    bool have_ref = false;
    uint64_t ref = 0;
    double base_median = NAN;
    for (size_t i = 0; i < s->nvariants; i++) {
        const bench_variant *v = &s->variants[i];
        if (!bench_variant_selected(o, v->name) || v->run == NULL) {
            if (v->run == NULL && o->nvariants == 0)
                bench_note(o, "%s/%s skipped: %s", s->bench, v->name,
                           v->missing ? v->missing : "not built");
            if (i == 0 && v->run != NULL) {
                /* The baseline was not asked for: one untimed run gives the
                 * reference result the other variants are checked against. */
                ref = run_once(v, c);
                have_ref = true;
            }
            continue;
        }
        /* The runtime lives only while its variant runs, so that its workers
         * (spinning for a while after start and after work) never compete
         * with the baseline or the peers for the cores. */
        if (v->kind == BENCH_WEIR) {
            if (bench_runtime_create(o, &c->rt) < 0) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            c->workers = weir_runtime_workers(c->rt);
        }
        if (v->setup != NULL && v->setup(c) != 0) {
            status = BENCH_EXIT_FAIL;
            weir_runtime_destroy(c->rt);
            c->rt = NULL;
            continue;
        }
        bool ok = true;
        uint64_t result = 0;
        for (unsigned w = 0; w < o->warmup && ok; w++) {
            result = run_once(v, c);
            if (i == 0 && !have_ref) {
                ref = result;
                have_ref = true;
            }
            ok = check(s, v, result, have_ref, ref);
        }
        if (v->kind == BENCH_WEIR)
            weir_runtime_stats_reset(c->rt);
        unsigned done = 0;
        uint64_t cpu_sum = 0, wall_sum = 0;
        for (; done < runs && ok; done++) {
            if (v->prepare)
                v->prepare(c);
            uint64_t c0 = bench_cpu_ns();
            uint64_t t0 = bench_now_ns();
            result = v->run(c);
            t[done] = bench_now_ns() - t0;
            cpu_sum += bench_cpu_ns() - c0;
            wall_sum += t[done];
            if (i == 0 && !have_ref) {
                ref = result;
                have_ref = true;
            }
            ok = check(s, v, result, have_ref, ref);
        }
        if (v->teardown != NULL)
            v->teardown(c);
        if (!ok)
            status = BENCH_EXIT_FAIL;

        bench_row row;
        bench_row_init(&row, s->bench, v->name, v->kind == BENCH_BASELINE ? 1 : c->workers, c->n);
        row.runs = done;
        row.min_ns = bench_min(t, done);
        row.median_ns = bench_median(t, done);
        row.has_result = true;
        row.result = result;
        if (v->kind == BENCH_WEIR) {
            row.has_stats = true;
            weir_runtime_stats_total(c->rt, &row.stats);
        }
        if (i == 0 && done > 0)
            base_median = (double)row.median_ns;
        if (isfinite(base_median) && base_median > 0 && done > 0)
            row.ratio = (double)row.median_ns / base_median;
        /* Process CPU time over wall time of the timed runs, in percent: about
         * 100 * workers when every worker computes, more if a waiting thread
         * spins beside them. Left out below 10 ms in total, where the
         * accounting of getrusage is too coarse to mean anything. */
        if (wall_sum >= 10000000u)
            bench_row_extra(&row, "cpu_pct", 100.0 * (double)cpu_sum / (double)wall_sum, false);
        if (s->rate_name != NULL && row.median_ns > 0) {
            double items = s->rate_of_result ? (double)result : (double)c->n;
            bench_row_extra(&row, s->rate_name, items * 1e9 / (double)row.median_ns, true);
        }
        bench_print_row(o, &row);
        weir_runtime_destroy(c->rt);
        c->rt = NULL;
    }
    free(t);
    return status;
}
