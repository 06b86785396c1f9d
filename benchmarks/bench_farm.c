/*
 * weir-bench farm / keyed: data parallelism inside a stage (weir_parallel,
 * weir_keyed) against a plain loop, the machine's limit and oneTBB.
 *
 * farm:  source -> one stage costing W ns of pure computation per record
 *        (farm_kernel.h, calibrated at start) -> a sink that checks the order
 *        and a checksum. Variants:
 *          serial          a plain loop doing the same work
 *          limit           the items split over `workers` plain pthreads, no
 *                          coordination at all: what this machine can give
 *          weir-serial     the same pipeline with the stage not marked
 *                          parallel (the cost of marking it, at 1 worker)
 *          weir-ordered    weir_parallel(map, 0): one replica per worker
 *          weir-unordered  the same, WEIR_UNORDERED
 *          tbb, tbb-batch  oneTBB parallel_pipeline: serial_in_order source
 *                          -> parallel filter -> serial_in_order sink, one
 *                          record per token, and --per-token records
 * keyed: count and running mean per key over records with --keys keys,
 *        uniform or zipf (s = 1) skew, W ns of work per record. Variants:
 *          serial   one loop, one table
 *          limit    `workers` threads owning disjoint key sets (key mod
 *                   workers), each scanning every record for its keys
 *          weir     weir_keyed(shards = workers): one sink per shard with
 *                   its own table
 *        Each key's mean is computed in the key's record order, so equal
 *        bits across variants also check per-key order.
 *
 * Speedup = serial median / variant median; efficiency = limit median at the
 * same worker count / variant median (1.0 = all this machine can give).
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "farm_kernel.h"
#include "weir.h"

#define FM_MAXW 16

typedef struct fm_cfg {
    uint64_t work_ns;
    uint64_t items;
    unsigned workers[FM_MAXW];
    size_t nworkers;
    bool order[2]; /* [0] ordered, [1] unordered wanted */
    uint64_t per_token;
    uint64_t keys;
    bool skew[2]; /* [0] uniform, [1] zipf */
    uint64_t shards;
    unsigned batch;
} fm_cfg;

static uint64_t fm_iters; /* kernel iterations per record */

/* ------------------------------------------------------------------ utils */

static int fm_list(const char *opt, const char *val, uint64_t lo, uint64_t hi, uint64_t *out,
                   size_t max, size_t *n)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", val);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t u;
        if (*n == max || !bench_parse_u64(tok, &u) || u < lo || u > hi)
            return bench_usage_error("%s '%s': a list of up to %zu integers in %" PRIu64
                                     "..%" PRIu64,
                                     opt, val, max, lo, hi);
        out[(*n)++] = u;
    }
    return *n ? 0 : bench_usage_error("%s: empty list", opt);
}

/* Iterations of farm_work per nanosecond, the best of a few tries. */
static double fm_calibrate(void)
{
    const uint64_t it = 1u << 22;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = bench_now_ns();
        sink += farm_work((uint64_t)r, it);
        uint64_t t = bench_now_ns() - t0;
        double ipn = (double)it / (double)(t ? t : 1);
        if (ipn > best)
            best = ipn;
    }
    (void)sink;
    return best;
}

static weir_runtime *fm_runtime(unsigned workers)
{
    weir_config c;
    weir_config_init(&c);
    c.workers = workers;
    c.print_stats = false;
    weir_runtime *rt = NULL;
    if (weir_runtime_create(&c, &rt) < 0) {
        fprintf(stderr, "weir-bench: runtime of %u workers: %s\n", workers, weir_last_error());
        return NULL;
    }
    return rt;
}

static void fm_print(const bench_opts *o, const char *bench, const char *variant, unsigned workers,
                     const fm_cfg *cfg, uint64_t median, uint64_t minv, unsigned runs,
                     double serial, double limit, int ordered, const char *extra)
{
    double ips = (double)cfg->items * 1e9 / (double)median;
    double speedup = serial > 0 ? serial / (double)median : NAN;
    double eff = limit > 0 ? limit / (double)median : NAN;
    if (o->json) {
        printf("{\"bench\":\"%s\",\"variant\":\"%s\",\"workers\":%u,\"work_ns\":%" PRIu64
               ",\"items\":%" PRIu64 ",\"items_per_s\":%.0f,\"speedup\":%.4f,\"efficiency\":%.4f,"
               "\"ordered\":%s,\"median_ns\":%" PRIu64 ",\"min_ns\":%" PRIu64 ",\"runs\":%u%s}\n",
               bench, variant, workers, cfg->work_ns, cfg->items, ips, speedup,
               isfinite(eff) ? eff : 0.0, ordered ? "true" : "false", median, minv, runs, extra);
    } else {
        printf("%-6s %-15s %7u %8" PRIu64 " %11.3f %11.3f %12.0f %8.3f %8.3f %7s%s\n", bench,
               variant, workers, cfg->work_ns, (double)median / 1e6, (double)minv / 1e6, ips,
               speedup, eff, ordered ? "yes" : "no", extra);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------- farm */

typedef struct fm_check {
    uint64_t next, count, sum;
    bool ordered;
} fm_check;

static void fm_map(void *st, const void *in, void *out)
{
    (void)st;
    int64_t id;
    memcpy(&id, in, sizeof id);
    farm_rec r = {(uint64_t)id, farm_work((uint64_t)id, fm_iters)};
    memcpy(out, &r, sizeof r);
}

static int fm_sink(void *st, const void *in)
{
    fm_check *c = st;
    const farm_rec *r = in;
    if (r->id != c->next)
        c->ordered = false;
    c->next = r->id + 1;
    c->count++;
    c->sum += r->val;
    return 0;
}

typedef struct fm_thr {
    uint64_t lo, hi, sum;
} fm_thr;

static void *fm_limit_body(void *arg)
{
    fm_thr *t = arg;
    uint64_t s = 0;
    for (uint64_t i = t->lo; i < t->hi; i++)
        s += farm_work(i, fm_iters);
    t->sum = s;
    return NULL;
}

#ifdef WEIR_BENCH_TERMS_TBB
int bench_tbb_farm(uint64_t n, uint64_t iters, unsigned workers, uint64_t per_token, uint64_t *sum,
                   int *ordered);
#endif

enum { FV_SERIAL, FV_LIMIT, FV_WSERIAL, FV_WORD, FV_WUNORD, FV_TBB, FV_TBB_BATCH, FV_N };
static const char *const fv_names[FV_N] = {"serial",         "limit", "weir-serial", "weir-ordered",
                                           "weir-unordered", "tbb",   "tbb-batch"};

/* One run of variant v at `w` workers. @return 0, or -1 on a wrong result. */
static int fm_once(int v, unsigned w, weir_runtime *rt, const fm_cfg *cfg, uint64_t want,
                   int *ordered)
{
    const uint64_t n = cfg->items;
    uint64_t sum = 0, count = n;
    *ordered = 1;
    if (v == FV_SERIAL) {
        for (uint64_t i = 0; i < n; i++)
            sum += farm_work(i, fm_iters);
    } else if (v == FV_LIMIT) {
        pthread_t tid[64];
        fm_thr t[64];
        unsigned k = w < 64 ? w : 64;
        for (unsigned i = 0; i < k; i++) {
            t[i].lo = n * i / k;
            t[i].hi = n * (i + 1) / k;
            pthread_create(&tid[i], NULL, fm_limit_body, &t[i]);
        }
        for (unsigned i = 0; i < k; i++) {
            pthread_join(tid[i], NULL);
            sum += t[i].sum;
        }
        *ordered = 0;
    } else if (v == FV_TBB || v == FV_TBB_BATCH) {
#ifdef WEIR_BENCH_TERMS_TBB
        if (bench_tbb_farm(n, fm_iters, w, v == FV_TBB ? 1 : cfg->per_token, &sum, ordered) != 0)
            return -1;
#endif
    } else {
        fm_check chk = {0, 0, 0, true};
        weir_term *stage = weir_map("work", sizeof(int64_t), sizeof(farm_rec), fm_map, NULL);
        if (v != FV_WSERIAL)
            stage = weir_parallel_order(stage, 0, v == FV_WORD ? WEIR_ORDERED : WEIR_UNORDERED);
        weir_term *t[3] = {weir_range_source("src", 0, (int64_t)n, 1), stage,
                           weir_sink("check", sizeof(farm_rec), fm_sink, &chk)};
        weir_pipeline_config pc;
        weir_pipeline_config_init(&pc);
        pc.print_stats = false;
        if (cfg->batch)
            pc.batch = cfg->batch;
        weir_pipeline *p = NULL;
        if (weir_pipeline_create(rt, weir_seq(3, t), &pc, &p) < 0 || weir_pipeline_run(p) < 0) {
            fprintf(stderr, "weir-bench: farm/%s: %s\n", fv_names[v],
                    p ? weir_pipeline_error(p) : weir_last_error());
            weir_pipeline_destroy(p);
            return -1;
        }
        weir_pipeline_destroy(p);
        sum = chk.sum;
        count = chk.count;
        *ordered = chk.ordered;
    }
    if (sum != want || count != n) {
        fprintf(stderr,
                "weir-bench: farm/%s at %u workers: %" PRIu64 " records, checksum %" PRIx64
                ", want %" PRIu64 " and %" PRIx64 "\n",
                fv_names[v], w, count, sum, n, want);
        return -1;
    }
    return 0;
}

static int fm_parse(const bench_opts *o, int argc, char **argv, fm_cfg *cfg, bool keyed)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->work_ns = keyed ? 500 : 2000;
    cfg->items = o->has_n ? o->n : keyed ? 200000 : 100000;
    cfg->workers[0] = o->workers ? o->workers : bench_default_workers(o);
    cfg->nworkers = 1;
    cfg->order[0] = cfg->order[1] = true;
    cfg->per_token = 256;
    cfg->keys = 1024;
    cfg->skew[0] = cfg->skew[1] = true;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        uint64_t list[FM_MAXW];
        size_t nl;
        int m;
        if ((m = bench_opt_value(argc, argv, &i, "--work-ns", &val)) != 0) {
            if (m < 0 || fm_list("--work-ns", val, 0, 100000000, list, 1, &nl))
                return BENCH_EXIT_USAGE;
            cfg->work_ns = list[0];
        } else if ((m = bench_opt_value(argc, argv, &i, "--items", &val)) != 0) {
            if (m < 0 || fm_list("--items", val, 1, UINT64_C(10000000000), list, 1, &nl))
                return BENCH_EXIT_USAGE;
            cfg->items = list[0];
        } else if ((m = bench_opt_value(argc, argv, &i, "--workers", &val)) != 0) {
            if (m < 0 || fm_list("--workers", val, 1, WEIR_MAX_WORKERS, list, FM_MAXW, &nl))
                return BENCH_EXIT_USAGE;
            for (size_t k = 0; k < nl; k++)
                cfg->workers[k] = (unsigned)list[k];
            cfg->nworkers = nl;
        } else if ((m = bench_opt_value(argc, argv, &i, "--per-token", &val)) != 0) {
            if (m < 0 || fm_list("--per-token", val, 1, 1u << 20, list, 1, &nl))
                return BENCH_EXIT_USAGE;
            cfg->per_token = list[0];
        } else if ((m = bench_opt_value(argc, argv, &i, "--batch", &val)) != 0) {
            if (m < 0 || fm_list("--batch", val, 1, 1u << 20, list, 1, &nl))
                return BENCH_EXIT_USAGE;
            cfg->batch = (unsigned)list[0];
        } else if (!keyed && (m = bench_opt_value(argc, argv, &i, "--order", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            cfg->order[0] = strstr(val, "ordered") == val || strstr(val, ",ordered") != NULL;
            cfg->order[1] = strstr(val, "unordered") != NULL;
            if (!cfg->order[0] && !cfg->order[1])
                return bench_usage_error("--order '%s': ordered, unordered or both", val);
        } else if (keyed && (m = bench_opt_value(argc, argv, &i, "--keys", &val)) != 0) {
            if (m < 0 || fm_list("--keys", val, 1, 1u << 24, list, 1, &nl))
                return BENCH_EXIT_USAGE;
            cfg->keys = list[0];
        } else if (keyed && (m = bench_opt_value(argc, argv, &i, "--shards", &val)) != 0) {
            if (m < 0 || fm_list("--shards", val, 1, WEIR_KEYED_MAX_SHARDS, list, 1, &nl))
                return BENCH_EXIT_USAGE;
            cfg->shards = list[0];
        } else if (keyed && (m = bench_opt_value(argc, argv, &i, "--skew", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            cfg->skew[0] = strstr(val, "uniform") != NULL;
            cfg->skew[1] = strstr(val, "zipf") != NULL;
            if (!cfg->skew[0] && !cfg->skew[1])
                return bench_usage_error("--skew '%s': uniform, zipf or both", val);
        } else {
            return bench_usage_error("%s: unknown option or argument '%s'",
                                     keyed ? "keyed" : "farm", argv[i]);
        }
    }
    return 0;
}

static void fm_header(const bench_opts *o, const char *what)
{
    if (!o->json)
        printf("%-6s %-15s %7s %8s %11s %11s %12s %8s %8s %7s  %s\n", "bench", "variant", "workers",
               "work_ns", "median_ms", "min_ms", "items_per_s", "speedup", "effic", "ordered",
               what);
}

/* Time `runs` runs (after the warm-up) of one variant; median and minimum. */
#define FM_TIME(o, once_call, med, mn, fail)                                                       \
    do {                                                                                           \
        uint64_t ts_[256];                                                                         \
        unsigned nr_ = (o)->runs < 256 ? (o)->runs : 256;                                          \
        for (unsigned r_ = 0; r_ < (o)->warmup + nr_ && !(fail); r_++) {                           \
            uint64_t t0_ = bench_now_ns();                                                         \
            if ((once_call) != 0)                                                                  \
                (fail) = 1;                                                                        \
            if (r_ >= (o)->warmup)                                                                 \
                ts_[r_ - (o)->warmup] = bench_now_ns() - t0_;                                      \
        }                                                                                          \
        if (!(fail)) {                                                                             \
            (mn) = bench_min(ts_, nr_);                                                            \
            (med) = bench_median(ts_, nr_);                                                        \
        }                                                                                          \
    } while (0)

int bench_farm(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        puts("Usage: weir-bench farm [--work-ns W] [--items N] [--workers W1,W2,..]\n"
             "                       [--order ordered,unordered] [--per-token B] [--batch B]\n"
             "  source -> a stage of W ns pure computation per record -> an order and\n"
             "  checksum checking sink. Variants: serial, limit (plain pthreads, the\n"
             "  machine's limit), weir-serial (stage not marked parallel), weir-ordered,\n"
             "  weir-unordered (weir_parallel), tbb (parallel_pipeline, 1 record per\n"
             "  token) and tbb-batch (--per-token records per token, default 256).\n"
             "  Defaults: W = 2000, N = 100000, workers = the default count.\n"
             "  speedup = serial / variant; efficiency = limit (same workers) / variant.");
        return 0;
    }
    fm_cfg cfg;
    int rc = fm_parse(o, argc, argv, &cfg, false);
    if (rc == 0)
        rc = bench_check_variants(o, fv_names, FV_N);
    if (rc != 0)
        return rc;
    double ipn = fm_calibrate();
    fm_iters = (uint64_t)((double)cfg.work_ns * ipn + 0.5);
    uint64_t want = 0;
    for (uint64_t i = 0; i < cfg.items; i++)
        want += farm_work(i, fm_iters);
    bench_note(o,
               "farm items=%" PRIu64 " work_ns=%" PRIu64 " iters=%" PRIu64
               " (%.3f per ns) runs=%u cpus=%u",
               cfg.items, cfg.work_ns, fm_iters, ipn, o->runs, bench_online_cpus());
    fm_header(o, "");
    int status = 0, fail = 0;
    int ord;
    uint64_t serial = 0, smin = 0;
    FM_TIME(o, fm_once(FV_SERIAL, 1, NULL, &cfg, want, &ord), serial, smin, fail);
    if (fail)
        return BENCH_EXIT_FAIL;
    if (bench_variant_selected(o, "serial"))
        fm_print(o, "farm", "serial", 1, &cfg, serial, smin, o->runs, (double)serial, NAN, 1, "");
    for (size_t wi = 0; wi < cfg.nworkers; wi++) {
        unsigned w = cfg.workers[wi];
        uint64_t limit = 0, lmin = 0;
        fail = 0;
        FM_TIME(o, fm_once(FV_LIMIT, w, NULL, &cfg, want, &ord), limit, lmin, fail);
        if (fail) {
            status = BENCH_EXIT_FAIL;
            continue;
        }
        if (bench_variant_selected(o, "limit"))
            fm_print(o, "farm", "limit", w, &cfg, limit, lmin, o->runs, (double)serial,
                     (double)limit, 0, "");
        weir_runtime *rt = NULL;
        for (int v = FV_WSERIAL; v < FV_N; v++) {
            if (!bench_variant_selected(o, fv_names[v]))
                continue;
            if ((v == FV_WORD && !cfg.order[0]) || (v == FV_WUNORD && !cfg.order[1]))
                continue;
#ifndef WEIR_BENCH_TERMS_TBB
            if (v == FV_TBB || v == FV_TBB_BATCH)
                continue;
#endif
            if (v <= FV_WUNORD && !rt && !(rt = fm_runtime(w))) {
                status = BENCH_EXIT_FAIL;
                break;
            }
            uint64_t med = 0, mn = 0;
            fail = 0;
            int ordered = 1;
            FM_TIME(o, fm_once(v, w, rt, &cfg, want, &ordered), med, mn, fail);
            if (fail) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            char extra[64] = "";
            if (v == FV_TBB_BATCH)
                snprintf(extra, sizeof extra,
                         o->json ? ",\"per_token\":%" PRIu64 : "  per_token=%" PRIu64,
                         cfg.per_token);
            fm_print(o, "farm", fv_names[v], w, &cfg, med, mn, o->runs, (double)serial,
                     (double)limit, ordered, extra);
        }
        weir_runtime_destroy(rt);
    }
    return status;
}

/* ------------------------------------------------------------------ keyed */

typedef struct kd_rec {
    uint64_t key, val;
} kd_rec;

typedef struct kd_table {
    uint64_t *count;
    double *mean;
} kd_table;

static uint64_t kd_keys_n;

static inline void kd_update(kd_table *t, const kd_rec *r)
{
    uint64_t v = farm_work(r->val, fm_iters);
    uint64_t c = ++t->count[r->key];
    t->mean[r->key] += ((double)(v % 1000) - t->mean[r->key]) / (double)c;
}

static int kd_table_init(kd_table *t)
{
    t->count = calloc(kd_keys_n, sizeof *t->count);
    t->mean = calloc(kd_keys_n, sizeof *t->mean);
    return t->count && t->mean ? 0 : -1;
}

static void kd_table_free(kd_table *t)
{
    free(t->count);
    free(t->mean);
}

static uint64_t kd_key(void *arg, const void *rec)
{
    (void)arg;
    return ((const kd_rec *)rec)->key;
}

static int kd_sink(void *st, const void *in)
{
    kd_update(st, in);
    return 0;
}

typedef struct kd_make {
    kd_table *tables;
} kd_make;

static weir_term *kd_shard(void *arg, unsigned i)
{
    kd_make *m = arg;
    return weir_sink("agg", sizeof(kd_rec), kd_sink, &m->tables[i]);
}

typedef struct kd_thr {
    const kd_rec *recs;
    uint64_t n;
    unsigned id, of;
    kd_table *t;
} kd_thr;

static void *kd_limit_body(void *arg)
{
    kd_thr *t = arg;
    for (uint64_t i = 0; i < t->n; i++)
        if (t->recs[i].key % t->of == t->id)
            kd_update(t->t, &t->recs[i]);
    return NULL;
}

/* Fold per-shard or per-thread tables into one; a key lives in one table. */
static void kd_fold(kd_table *into, kd_table *parts, unsigned k)
{
    memset(into->count, 0, kd_keys_n * sizeof *into->count);
    memset(into->mean, 0, kd_keys_n * sizeof *into->mean);
    for (unsigned j = 0; j < k; j++)
        for (uint64_t key = 0; key < kd_keys_n; key++)
            if (parts[j].count[key]) {
                into->count[key] += parts[j].count[key];
                into->mean[key] = parts[j].mean[key];
            }
}

enum { KV_SERIAL, KV_LIMIT, KV_WEIR, KV_N };
static const char *const kv_names[KV_N] = {"serial", "limit", "weir"};

static int kd_once(int v, unsigned w, weir_runtime *rt, const fm_cfg *cfg, const kd_rec *recs,
                   const kd_table *want, kd_table *out, kd_table *parts)
{
    const uint64_t n = cfg->items;
    unsigned k = v == KV_WEIR ? (unsigned)(cfg->shards ? cfg->shards : w) : w;
    for (unsigned j = 0; j < k && v != KV_SERIAL; j++) {
        memset(parts[j].count, 0, kd_keys_n * sizeof *parts[j].count);
        memset(parts[j].mean, 0, kd_keys_n * sizeof *parts[j].mean);
    }
    if (v == KV_SERIAL) {
        memset(out->count, 0, kd_keys_n * sizeof *out->count);
        memset(out->mean, 0, kd_keys_n * sizeof *out->mean);
        for (uint64_t i = 0; i < n; i++)
            kd_update(out, &recs[i]);
    } else if (v == KV_LIMIT) {
        pthread_t tid[64];
        kd_thr t[64];
        for (unsigned i = 0; i < k; i++) {
            t[i] = (kd_thr){recs, n, i, k, &parts[i]};
            pthread_create(&tid[i], NULL, kd_limit_body, &t[i]);
        }
        for (unsigned i = 0; i < k; i++)
            pthread_join(tid[i], NULL);
        kd_fold(out, parts, k);
    } else {
        kd_make mk = {parts};
        weir_term *t[2] = {weir_array_source("src", recs, n, sizeof(kd_rec)),
                           weir_keyed("by-key", k, kd_key, NULL, kd_shard, &mk, WEIR_ORDERED)};
        weir_pipeline_config pc;
        weir_pipeline_config_init(&pc);
        pc.print_stats = false;
        if (cfg->batch)
            pc.batch = cfg->batch;
        weir_pipeline *p = NULL;
        if (weir_pipeline_create(rt, weir_seq(2, t), &pc, &p) < 0 || weir_pipeline_run(p) < 0) {
            fprintf(stderr, "weir-bench: keyed/weir: %s\n",
                    p ? weir_pipeline_error(p) : weir_last_error());
            weir_pipeline_destroy(p);
            return -1;
        }
        weir_pipeline_destroy(p);
        kd_fold(out, parts, k);
    }
    if (want) {
        for (uint64_t key = 0; key < kd_keys_n; key++)
            if (out->count[key] != want->count[key] ||
                memcmp(&out->mean[key], &want->mean[key], sizeof(double)) != 0) {
                fprintf(stderr,
                        "weir-bench: keyed/%s at %u workers: key %" PRIu64 " count %" PRIu64
                        " mean %.17g, want %" PRIu64 " and %.17g\n",
                        kv_names[v], w, key, out->count[key], out->mean[key], want->count[key],
                        want->mean[key]);
                return -1;
            }
    }
    return 0;
}

/* Keys of n records: uniform, or zipf with s = 1 (inverse CDF, fixed seed). */
static void kd_make_keys(kd_rec *recs, uint64_t n, uint64_t keys, bool zipf)
{
    double *cdf = NULL;
    if (zipf) {
        cdf = malloc(keys * sizeof *cdf);
        double acc = 0;
        for (uint64_t k = 0; k < keys; k++)
            cdf[k] = (acc += 1.0 / (double)(k + 1));
        for (uint64_t k = 0; k < keys; k++)
            cdf[k] /= acc;
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t key;
        if (zipf) {
            double u = (double)(x >> 11) / 9007199254740992.0;
            uint64_t lo = 0, hi = keys - 1;
            while (lo < hi) {
                uint64_t mid = (lo + hi) / 2;
                if (cdf[mid] < u)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            key = lo;
        } else {
            key = x % keys;
        }
        recs[i] = (kd_rec){key, i};
    }
    free(cdf);
}

int bench_keyed(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        puts("Usage: weir-bench keyed [--keys K] [--skew uniform,zipf] [--work-ns W]\n"
             "                        [--items N] [--workers W1,W2,..] [--shards S] [--batch B]\n"
             "  count and running mean per key, W ns of work per record. Variants: serial,\n"
             "  limit (threads owning disjoint key sets), weir (weir_keyed, shards =\n"
             "  workers unless --shards). Defaults: K = 1024, W = 500, N = 200000.\n"
             "  Means are compared bit for bit with serial's (per-key order).");
        return 0;
    }
    fm_cfg cfg;
    int rc = fm_parse(o, argc, argv, &cfg, true);
    if (rc == 0)
        rc = bench_check_variants(o, kv_names, KV_N);
    if (rc != 0)
        return rc;
    double ipn = fm_calibrate();
    fm_iters = (uint64_t)((double)cfg.work_ns * ipn + 0.5);
    kd_keys_n = cfg.keys;
    kd_rec *recs = malloc(cfg.items * sizeof *recs);
    unsigned maxk = 1;
    for (size_t i = 0; i < cfg.nworkers; i++)
        if (cfg.workers[i] > maxk)
            maxk = cfg.workers[i];
    if (cfg.shards > maxk)
        maxk = (unsigned)cfg.shards;
    kd_table want, out, *parts = calloc(maxk, sizeof *parts);
    int status = 0;
    if (!recs || !parts || kd_table_init(&want) || kd_table_init(&out)) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    for (unsigned j = 0; j < maxk; j++)
        if (kd_table_init(&parts[j])) {
            fprintf(stderr, "weir-bench: out of memory\n");
            return BENCH_EXIT_FAIL;
        }
    bench_note(o, "keyed items=%" PRIu64 " keys=%" PRIu64 " work_ns=%" PRIu64 " runs=%u cpus=%u",
               cfg.items, cfg.keys, cfg.work_ns, o->runs, bench_online_cpus());
    fm_header(o, "");
    for (int z = 0; z < 2; z++) {
        if (!cfg.skew[z])
            continue;
        const char *skew = z ? "zipf" : "uniform";
        char extra[96];
        snprintf(extra, sizeof extra,
                 o->json ? ",\"keys\":%" PRIu64 ",\"skew\":\"%s\"" : "  keys=%" PRIu64 " skew=%s",
                 cfg.keys, skew);
        kd_make_keys(recs, cfg.items, cfg.keys, z == 1);
        int fail = 0, ord = 1;
        uint64_t serial = 0, smin = 0;
        FM_TIME(o, kd_once(KV_SERIAL, 1, NULL, &cfg, recs, NULL, &want, parts), serial, smin, fail);
        if (fail) {
            status = BENCH_EXIT_FAIL;
            continue;
        }
        if (bench_variant_selected(o, "serial"))
            fm_print(o, "keyed", "serial", 1, &cfg, serial, smin, o->runs, (double)serial, NAN, 1,
                     extra);
        for (size_t wi = 0; wi < cfg.nworkers; wi++) {
            unsigned w = cfg.workers[wi];
            uint64_t limit = 0, lmin = 0;
            fail = 0;
            FM_TIME(o, kd_once(KV_LIMIT, w, NULL, &cfg, recs, &want, &out, parts), limit, lmin,
                    fail);
            if (fail) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            if (bench_variant_selected(o, "limit"))
                fm_print(o, "keyed", "limit", w, &cfg, limit, lmin, o->runs, (double)serial,
                         (double)limit, 1, extra);
            if (!bench_variant_selected(o, "weir"))
                continue;
            weir_runtime *rt = fm_runtime(w);
            if (!rt) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            uint64_t med = 0, mn = 0;
            fail = 0;
            FM_TIME(o, kd_once(KV_WEIR, w, rt, &cfg, recs, &want, &out, parts), med, mn, fail);
            weir_runtime_destroy(rt);
            if (fail) {
                status = BENCH_EXIT_FAIL;
                continue;
            }
            fm_print(o, "keyed", "weir", w, &cfg, med, mn, o->runs, (double)serial, (double)limit,
                     ord, extra);
        }
    }
    for (unsigned j = 0; j < maxk; j++)
        kd_table_free(&parts[j]);
    free(parts);
    kd_table_free(&want);
    kd_table_free(&out);
    free(recs);
    return status;
}
