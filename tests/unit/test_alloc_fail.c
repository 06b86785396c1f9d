/*
 * Allocation failure, through the public allocator hook (weir_set_allocator).
 *
 * A test allocator counts every call and live block and fails the k-th call
 * (or, "sticky", the k-th and every later one). For k = 1, 2, 3, ... until
 * the call under test makes fewer than k allocations:
 *   - weir_runtime_create returns -ENOMEM, or 0 once k is past its last
 *     allocation;
 *   - term construction and weir_pipeline_create return an error (never
 *     crash), and the tree stays the caller's to destroy;
 *   - weir_pipeline_start + the run: join returns 0 with exact results, or
 *     -ENOMEM naming a term, with every collector holding a consistent
 *     prefix of its expected output; never a crash or a hang.
 * After every failed call or destroy the allocator's live count is back to
 * where it was: a leak check that works without ASan. The number of
 * allocation points of each call is logged (cr_log_info, shown with
 * --verbose). On the 2-core Debian 12 box, hwloc build:
 *   weir_runtime_create        16 (2 workers), 94 (4 workers, scatter,
 *                              synthetic 2-package topology)
 *   building the test tree     97
 *   weir_pipeline_create       145 pool, 205 threads, 146 hybrid
 *   weir_pipeline_start        0 on the calling thread, every mode
 *   the run                    25..50 depending on mode and shape (worker
 *                              scratch, spill, collector growth); which
 *                              allocation comes k-th varies with scheduling
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"
#include "weir_build_config.h"

/* runtime/internal.h: weir's own count of live blocks. Declared here rather
 * than included because runtime/ and terms/ both have an internal.h. */
long weir__alloc_live(void);

/* ------------------------------------------------------- test allocator */

/* Updated from worker threads: atomics, sequentially consistent (a test,
 * not a hot path). */
static struct {
    _Atomic long calls;   /* malloc_fn + realloc_fn calls since arm() */
    _Atomic long live;    /* blocks returned and not yet freed */
    _Atomic long failed;  /* calls made to fail since arm() */
    _Atomic long fail_at; /* the call that fails (0: none) */
    _Atomic bool sticky;  /* every call after fail_at fails too */
} T;

/* Calls made on this thread: tells the caller's own allocations in
 * weir_pipeline_start() from the workers' running the pipeline meanwhile. */
static _Thread_local long my_calls;

static bool t_fail_now(void)
{
    my_calls++;
    long n = atomic_fetch_add(&T.calls, 1) + 1;
    long k = atomic_load(&T.fail_at);
    if (k > 0 && (n == k || (n > k && atomic_load(&T.sticky)))) {
        atomic_fetch_add(&T.failed, 1);
        return true;
    }
    return false;
}

static void *t_malloc(size_t size, void *ctx)
{
    (void)ctx;
    if (t_fail_now())
        return NULL;
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&T.live, 1);
    return p;
}

static void *t_realloc(void *p, size_t size, void *ctx)
{
    (void)ctx;
    if (t_fail_now())
        return NULL;
    void *q = realloc(p, size);
    if (q && !p)
        atomic_fetch_add(&T.live, 1);
    return q;
}

static void t_free(void *p, void *ctx)
{
    (void)ctx;
    if (p) {
        atomic_fetch_sub(&T.live, 1);
        free(p);
    }
}

static const weir_allocator test_allocator = {t_malloc, t_realloc, t_free, NULL};

static void install(void)
{
    cr_assert_eq(weir_set_allocator(&test_allocator), 0, "%s", weir_last_error());
}

/* Fail the k-th allocation from now (and every later one if sticky). */
static void arm(long k, bool sticky)
{
    atomic_store(&T.fail_at, 0);
    atomic_store(&T.sticky, sticky);
    atomic_store(&T.calls, 0);
    atomic_store(&T.failed, 0);
    atomic_store(&T.fail_at, k);
}

static void disarm(void)
{
    atomic_store(&T.fail_at, 0);
}

/* ------------------------------------------------------------ allocator API */

Test(alloc_api, set_allocator_refuses_missing_functions)
{
    weir_allocator a = {NULL, t_realloc, t_free, NULL};
    cr_assert_eq(weir_set_allocator(&a), -EINVAL);
    a = (weir_allocator){t_malloc, t_realloc, NULL, NULL};
    cr_assert_eq(weir_set_allocator(&a), -EINVAL);
    a = (weir_allocator){t_malloc, NULL, t_free, NULL};
    cr_assert_eq(weir_set_allocator(&a), 0, "realloc_fn is optional");
    cr_assert_eq(weir_set_allocator(NULL), 0);
}

Test(alloc_api, set_allocator_is_busy_while_weir_memory_is_live)
{
    install();
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 2;
    cfg.affinity = WEIR_AFFINITY_NONE;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    cr_assert_gt(atomic_load(&T.live), 0);
    cr_assert_eq(weir_set_allocator(NULL), -EBUSY);
    cr_assert(strstr(weir_last_error(), "live"), "message: %s", weir_last_error());
    void *p = weir_malloc(10);
    weir_runtime_destroy(rt);
    cr_assert_eq(weir_set_allocator(NULL), -EBUSY, "a weir_malloc() block is still live");
    weir_free(p);
    cr_assert_eq(atomic_load(&T.live), 0);
    cr_assert_eq(weir_set_allocator(NULL), 0);
    /* Back on libc: the test allocator sees nothing any more. */
    long calls = atomic_load(&T.calls);
    weir_free(weir_malloc(10));
    cr_assert_eq(atomic_load(&T.calls), calls);
}

Test(alloc_api, the_hook_sees_every_block_weir_counts)
{
    install();
    void *a = weir_malloc(0), *b = weir_malloc(0);
    cr_assert(a && b && a != b, "size 0 still gives distinct blocks");
    char *c = weir_calloc(100, 3);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(c[i], 0);
    cr_assert_null(weir_calloc(SIZE_MAX / 2, 3), "overflowing n * size");
    cr_assert_null(weir_malloc(SIZE_MAX));
    cr_assert_eq(atomic_load(&T.live), 3);
    cr_assert_eq(weir__alloc_live(), 3);
    char *d = weir_strdup("weir");
    cr_assert_str_eq(d, "weir");
    cr_assert_null(weir_strdup(NULL));
    cr_assert_eq(atomic_load(&T.live), 4);
    weir_free(a);
    weir_free(b);
    weir_free(c);
    weir_free(d);
    weir_free(NULL);
    cr_assert_eq(atomic_load(&T.live), 0);
    cr_assert_eq(weir__alloc_live(), 0);
}

Test(alloc_api, aligned_blocks_are_aligned_and_resize_keeping_their_bytes)
{
    install();
    const size_t aligns[] = {1, 8, 16, 64, 128, 4096};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        unsigned char *p = weir_aligned_alloc(aligns[i], 1000);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % aligns[i], 0, "align %zu", aligns[i]);
        for (int k = 0; k < 1000; k++)
            p[k] = (unsigned char)k;
        p = weir_realloc(p, 5000);
        cr_assert_not_null(p);
        for (int k = 0; k < 1000; k++)
            cr_assert_eq(p[k], (unsigned char)k, "align %zu byte %d", aligns[i], k);
        p = weir_realloc(p, 10);
        for (int k = 0; k < 10; k++)
            cr_assert_eq(p[k], (unsigned char)k);
        weir_free(p);
    }
    cr_assert_null(weir_aligned_alloc(48, 16), "alignment must be a power of two");
    cr_assert_null(weir_aligned_alloc(0, 16));
    cr_assert_eq(atomic_load(&T.live), 0);
}

Test(alloc_api, realloc_without_a_hook_realloc_moves_the_block)
{
    weir_allocator a = {t_malloc, NULL, t_free, NULL};
    cr_assert_eq(weir_set_allocator(&a), 0);
    char *p = weir_realloc(NULL, 4);
    memcpy(p, "abc", 4);
    p = weir_realloc(p, 4096);
    cr_assert_str_eq(p, "abc");
    cr_assert_eq(atomic_load(&T.live), 1);
    /* A failed realloc leaves the block as it was. */
    arm(1, false);
    cr_assert_null(weir_realloc(p, 8192));
    disarm();
    cr_assert_str_eq(p, "abc");
    weir_free(p);
    cr_assert_eq(atomic_load(&T.live), 0);
}

/* ------------------------------------------------------------ runtime */

static void runtime_create_at_every_k(const weir_config *cfg, const char *what, bool sticky)
{
    long points = -1;
    for (long k = 1; k < 10000 && points < 0; k++) {
        arm(k, sticky);
        weir_runtime *rt = NULL;
        int r = weir_runtime_create(cfg, &rt);
        long failed = atomic_load(&T.failed), calls = atomic_load(&T.calls);
        disarm();
        if (r == 0) {
            cr_assert_eq(failed, 0, "%s k=%ld: create succeeded although an allocation failed",
                         what, k);
            points = calls;
            cr_assert_eq(weir__alloc_live(), atomic_load(&T.live),
                         "weir and the hook disagree on live blocks");
            weir_runtime_destroy(rt);
        } else {
            cr_assert_eq(r, -ENOMEM, "%s k=%ld: %d (%s)", what, k, r, weir_last_error());
            cr_assert_gt(failed, 0);
            cr_assert_null(rt, "out must stay untouched");
        }
        cr_assert_eq(atomic_load(&T.live), 0, "%s k=%ld: %ld blocks leaked", what, k,
                     atomic_load(&T.live));
    }
    cr_assert_geq(points, 1, "%s never succeeded", what);
    cr_log_info("weir_runtime_create (%s, %s): %ld allocation points", what,
                sticky ? "k-th and later fail" : "k-th fails", points);
}

Test(alloc_fail, runtime_create_returns_enomem_and_leaks_nothing_at_every_allocation)
{
    install();
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 2;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    runtime_create_at_every_k(&cfg, "2 workers", false);
    runtime_create_at_every_k(&cfg, "2 workers", true);

    /* More workers than cores, on a synthetic two-package topology with
     * scatter placement: the planner's recursive allocations too. */
    weir_config_init(&cfg);
    cfg.workers = 4;
    cfg.affinity = WEIR_AFFINITY_SCATTER;
    cfg.print_stats = false;
    cfg.synthetic_topology = "pack:2 [numa] l3:2 core:8 pu:2";
    if (!WEIR_HAVE_HWLOC)
        cfg.synthetic_topology = NULL;
    runtime_create_at_every_k(&cfg, "4 workers scatter", false);
    runtime_create_at_every_k(&cfg, "4 workers scatter", true);
}

/* ------------------------------------------------------------ pipelines */

#define N 3000

static void m_double(void *st, const void *in, void *out)
{
    (void)st;
    *(int64_t *)out = *(const int64_t *)in * 2;
}

static void m_inc(void *st, const void *in, void *out)
{
    (void)st;
    *(int64_t *)out = *(const int64_t *)in + 1;
}

static void m_triple(void *st, const void *in, void *out)
{
    (void)st;
    *(int64_t *)out = *(const int64_t *)in * 3;
}

static bool f_keep4(void *st, const void *in)
{
    (void)st;
    return *(const int64_t *)in % 4 == 0;
}

static bool f_not3(void *st, const void *in)
{
    (void)st;
    return *(const int64_t *)in % 3 != 0;
}

static bool f_odd(void *st, const void *in)
{
    (void)st;
    return *(const int64_t *)in % 2 != 0;
}

/* A flat-map: two records per input, so that a full stream makes the stage
 * spill (an allocation during the run). */
static int fn_twice(void *st, const void *in, weir_emit *e)
{
    (void)st;
    int64_t v = *(const int64_t *)in, w = v + N;
    int r = weir_emit_record(e, &v);
    return r < 0 ? r : weir_emit_record(e, &w);
}

static const weir_map_fn maps[3] = {m_double, m_inc, m_triple};

/* What each collector must hold. mo[i]: branch i's map output (N records,
 * what the merge (as a multiset) and the zip (as triples) see); b[i]: what
 * branch i's filter keeps of it. */
typedef struct expect {
    int64_t *mo[3], *b[3];
    size_t nb[3];
} expect;

static void expect_init(expect *x)
{
    for (int i = 0; i < 3; i++) {
        x->mo[i] = malloc(N * sizeof(int64_t));
        x->b[i] = malloc(2 * N * sizeof(int64_t));
        x->nb[i] = 0;
    }
    for (int64_t v = 0; v < N; v++) {
        for (int i = 0; i < 3; i++)
            maps[i](NULL, &v, &x->mo[i][v]);
        if (f_keep4(NULL, &x->mo[0][v]))
            x->b[0][x->nb[0]++] = x->mo[0][v];
        if (f_not3(NULL, &x->mo[1][v]))
            x->b[1][x->nb[1]++] = x->mo[1][v];
        int64_t t[2] = {x->mo[2][v], x->mo[2][v] + N};
        for (int j = 0; j < 2; j++)
            if (f_odd(NULL, &t[j]))
                x->b[2][x->nb[2]++] = t[j];
    }
}

static void expect_deinit(expect *x)
{
    for (int i = 0; i < 3; i++) {
        free(x->mo[i]);
        free(x->b[i]);
    }
}

/* Collectors: 0..2 the branches, 3 the merge, 4 the zip. */
typedef struct sinks {
    weir_collector c[5];
} sinks;

static void sinks_init(sinks *s)
{
    for (int i = 0; i < 4; i++)
        cr_assert_eq(weir_collector_init(&s->c[i], sizeof(int64_t)), 0);
    cr_assert_eq(weir_collector_init(&s->c[4], 3 * sizeof(int64_t)), 0);
}

static void sinks_deinit(sinks *s)
{
    for (int i = 0; i < 5; i++)
        weir_collector_deinit(&s->c[i]);
}

/*
 * source -> par(3 branches) -> par(merge -> collect, zip -> collect), where
 * branch i = map_i -> par(filter_i -> collect_i, id_i). The filters (and
 * branch 2's flat-map before its filter) sit on a side path so that the
 * three streams the zip reads carry one record per source record: a zip of
 * streams with different rates from one source would stall for good on
 * bounded streams, whatever the allocator does.
 */
static uint64_t key_i64(void *arg, const void *rec)
{
    (void)arg;
    int64_t v;
    memcpy(&v, rec, sizeof v);
    return (uint64_t)v;
}

static weir_term *make_shard(void *arg, unsigned i)
{
    char nm[32];
    snprintf(nm, sizeof nm, "b2.map.%u", i);
    return weir_map(nm, sizeof(int64_t), sizeof(int64_t), maps[(intptr_t)arg], NULL);
}

/* Branch 0's map runs as weir_parallel replicas and branch 2's as weir_keyed
 * shards (ordered: the same records as the plain map), so their build, their
 * slots, shadows and shard contexts meet every failing allocation too. */
static weir_term *branch(int i, weir_collector *c)
{
    static const char *const tag[3] = {"b0", "b1", "b2"};
    char nm[32], col[32];
    snprintf(nm, sizeof nm, "%s.map", tag[i]);
    weir_term *map =
        i == 2 ? weir_keyed(nm, 2, key_i64, NULL, make_shard, (void *)(intptr_t)i, WEIR_ORDERED)
               : weir_map(nm, sizeof(int64_t), sizeof(int64_t), maps[i], NULL);
    if (i == 0)
        map = weir_parallel(map, 2);
    snprintf(nm, sizeof nm, "%s.filter", tag[i]);
    weir_term *filt = weir_filter(nm, sizeof(int64_t),
                                  i == 0   ? f_keep4
                                  : i == 1 ? f_not3
                                           : f_odd,
                                  NULL);
    if (i == 2)
        filt = weir_seq(2, (weir_term *[]){weir_function("b2.twice", sizeof(int64_t),
                                                         sizeof(int64_t), fn_twice, NULL),
                                           filt});
    snprintf(col, sizeof col, "%s.collect", tag[i]);
    weir_term *side = weir_seq(2, (weir_term *[]){filt, weir_collect(col, c)});
    return weir_seq(
        2,
        (weir_term *[]){map, weir_par(2, (weir_term *[]){side, weir_id(tag[i], sizeof(int64_t))})});
}

static weir_term *build(sinks *s)
{
    weir_term *b =
        weir_par(3, (weir_term *[]){branch(0, &s->c[0]), branch(1, &s->c[1]), branch(2, &s->c[2])});
    weir_term *joins = weir_par(
        2, (weir_term *[]){weir_seq(2, (weir_term *[]){weir_merge("merge"),
                                                       weir_collect("merge.collect", &s->c[3])}),
                           weir_seq(2, (weir_term *[]){weir_zip("zip", 0, NULL, NULL),
                                                       weir_collect("zip.collect", &s->c[4])})});
    return weir_seq(3, (weir_term *[]){weir_range_source("src", 0, N, 1), b, joins});
}

/* Stream and batch shapes the runs are tried with: the batched path with
 * small streams (the flat-map spills, producers block), one record at a
 * time, and the per-callback profile (no batched path at all). */
typedef struct shape {
    unsigned batch, capacity;
    bool profile;
} shape;

static const shape shapes[] = {{64, 16, false}, {1, 1, false}, {7, 4, true}};

static weir_pipeline_config pcfg_shaped(weir_exec_mode mode, shape sh)
{
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = mode;
    c.print_stats = false;
    c.batch = sh.batch;
    c.capacity = sh.capacity;
    c.profile = sh.profile;
    return c;
}

static weir_pipeline_config pcfg(weir_exec_mode mode)
{
    return pcfg_shaped(mode, shapes[0]);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Every collector holds a prefix of its expected sequence (the merge: a
 * sub-multiset of the map outputs); all of it when `complete`. */
static void check_results(const sinks *s, const expect *x, bool complete, const char *what)
{
    for (int i = 0; i < 3; i++) {
        const weir_collector *c = &s->c[i];
        cr_assert_leq(c->count, x->nb[i], "%s: branch %d has too many records", what, i);
        if (complete)
            cr_assert_eq(c->count, x->nb[i], "%s: branch %d incomplete", what, i);
        if (c->count)
            cr_assert_eq(memcmp(c->data, x->b[i], c->count * sizeof(int64_t)), 0,
                         "%s: branch %d is not a prefix of its expected output", what, i);
    }
    const weir_collector *m = &s->c[3];
    const size_t total = 3 * (size_t)N;
    cr_assert_leq(m->count, total, "%s: merge has too many records", what);
    if (complete)
        cr_assert_eq(m->count, total, "%s: merge incomplete", what);
    if (m->count) {
        int64_t *all = malloc(total * sizeof *all), *got = malloc(m->count * sizeof *got);
        for (int i = 0; i < 3; i++)
            memcpy(all + (size_t)i * N, x->mo[i], N * sizeof *all);
        memcpy(got, m->data, m->count * sizeof *got);
        qsort(all, total, sizeof *all, cmp_i64);
        qsort(got, m->count, sizeof *got, cmp_i64);
        size_t j = 0;
        for (size_t i = 0; i < m->count; i++) {
            while (j < total && all[j] < got[i])
                j++;
            cr_assert(j < total && all[j] == got[i], "%s: merge has %lld, not expected (or twice)",
                      what, (long long)got[i]);
            j++;
        }
        free(all);
        free(got);
    }
    const weir_collector *z = &s->c[4];
    cr_assert_leq(z->count, (size_t)N, "%s: zip has too many records", what);
    if (complete)
        cr_assert_eq(z->count, (size_t)N, "%s: zip incomplete", what);
    for (size_t k = 0; k < z->count; k++) {
        const int64_t *t = (const int64_t *)z->data + 3 * k;
        for (int i = 0; i < 3; i++)
            cr_assert_eq(t[i], x->mo[i][k], "%s: zip tuple %zu, field %d", what, k, i);
    }
}

static weir_runtime *new_runtime(void)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 2;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    return rt;
}

Test(alloc_fail, terms_and_pipeline_create_fail_cleanly_at_every_allocation)
{
    install();
    weir_runtime *rt = new_runtime();
    sinks s;
    sinks_init(&s);
    const long base = atomic_load(&T.live);
    const weir_exec_mode modes[] = {WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};

    /* Building the tree: a failed constructor leaves a hole (or a NULL
     * root) that create reports; the tree is still the caller's. */
    for (int sticky = 0; sticky < 2; sticky++) {
        long points = -1;
        for (long k = 1; k < 10000 && points < 0; k++) {
            arm(k, sticky);
            weir_term *root = build(&s);
            long failed = atomic_load(&T.failed), calls = atomic_load(&T.calls);
            disarm();
            if (failed == 0)
                points = calls;
            weir_pipeline_config c = pcfg(WEIR_EXEC_POOL);
            weir_pipeline *p = NULL;
            int r = weir_pipeline_create(rt, root, &c, &p);
            if (failed == 0) {
                cr_assert_eq(r, 0, "%s", weir_last_error());
                weir_pipeline_destroy(p);
            } else {
                cr_assert(r == -EINVAL || r == -ENOMEM, "build k=%ld: create gave %d (%s)", k, r,
                          weir_last_error());
                weir_term_destroy(root);
            }
            cr_assert_eq(atomic_load(&T.live), base, "build k=%ld: %ld blocks leaked", k,
                         atomic_load(&T.live) - base);
        }
        cr_log_info("building the test tree (%s): %ld allocation points",
                    sticky ? "k-th and later fail" : "k-th fails", points);
    }

    for (size_t m = 0; m < 3; m++) {
        for (int sticky = 0; sticky < 2; sticky++) {
            long points = -1;
            for (long k = 1; k < 10000 && points < 0; k++) {
                weir_term *root = build(&s);
                cr_assert_not_null(root);
                weir_pipeline_config c = pcfg(modes[m]);
                weir_pipeline *p = NULL;
                arm(k, sticky);
                int r = weir_pipeline_create(rt, root, &c, &p);
                long failed = atomic_load(&T.failed), calls = atomic_load(&T.calls);
                disarm();
                if (r == 0) {
                    cr_assert_eq(failed, 0, "%s k=%ld: create succeeded after a failed allocation",
                                 weir_exec_mode_name(modes[m]), k);
                    points = calls;
                    weir_pipeline_destroy(p);
                } else {
                    cr_assert_eq(r, -ENOMEM, "%s k=%ld: %d (%s)", weir_exec_mode_name(modes[m]), k,
                                 r, weir_last_error());
                    cr_assert_null(p);
                    weir_term_destroy(root);
                }
                cr_assert_eq(atomic_load(&T.live), base, "%s k=%ld: %ld blocks leaked",
                             weir_exec_mode_name(modes[m]), k, atomic_load(&T.live) - base);
            }
            cr_log_info("weir_pipeline_create (%s, %s): %ld allocation points",
                        weir_exec_mode_name(modes[m]),
                        sticky ? "k-th and later fail" : "k-th fails", points);
        }
    }
    sinks_deinit(&s);
    weir_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&T.live), 0);
}

/* Start and run with the k-th allocation after create failing. A fresh
 * runtime each time: workers keep per-thread scratch buffers across
 * pipelines, and a fresh one makes each run allocate them again. */
static void run_at_every_k(weir_exec_mode mode, shape sh, bool sticky, const expect *x)
{
    long points = -1, enomem = 0, survived = 0, start_points = 0;
    for (long k = 1; k < 10000 && points < 0; k++) {
        weir_runtime *rt = new_runtime();
        sinks s;
        sinks_init(&s);
        weir_term *root = build(&s);
        weir_pipeline_config c = pcfg_shaped(mode, sh);
        weir_pipeline *p = NULL;
        cr_assert_eq(weir_pipeline_create(rt, root, &c, &p), 0, "%s", weir_last_error());
        arm(k, sticky);
        my_calls = 0;
        int rs = weir_pipeline_start(p);
        if (my_calls > start_points)
            start_points = my_calls;
        int r = rs == 0 ? weir_pipeline_join(p) : rs;
        long failed = atomic_load(&T.failed), calls = atomic_load(&T.calls);
        disarm();
        char what[96];
        snprintf(what, sizeof what, "%s batch %u capacity %u%s, %s k=%ld",
                 weir_exec_mode_name(mode), sh.batch, sh.capacity, sh.profile ? " profile" : "",
                 sticky ? "sticky" : "once", k);
        cr_assert_eq(rs, 0, "%s: start gave %d (%s)", what, rs, weir_last_error());
        if (r == 0) {
            /* Nothing failed, or only allocations with a fallback (scratch
             * buffers): then the results must be complete and exact. */
            check_results(&s, x, true, what);
            if (failed == 0)
                points = calls;
            else
                survived++;
        } else {
            cr_assert_eq(r, -ENOMEM, "%s: join gave %d (%s)", what, r, weir_pipeline_error(p));
            cr_assert_gt(failed, 0, "%s", what);
            cr_assert(strstr(weir_pipeline_error(p), "term '"), "%s: error '%s' names no term",
                      what, weir_pipeline_error(p));
            check_results(&s, x, false, what);
            enomem++;
        }
        weir_pipeline_destroy(p);
        sinks_deinit(&s);
        weir_runtime_destroy(rt);
        cr_assert_eq(atomic_load(&T.live), 0, "%s: %ld blocks leaked", what, atomic_load(&T.live));
    }
    cr_log_info("weir_pipeline_start (%s): %ld allocation points on the calling thread",
                weir_exec_mode_name(mode), start_points);
    cr_log_info("run (%s, batch %u capacity %u%s, %s): %ld allocation points in the first "
                "clean run; %ld runs failed with -ENOMEM, %ld absorbed a failure and completed",
                weir_exec_mode_name(mode), sh.batch, sh.capacity, sh.profile ? " profile" : "",
                sticky ? "k-th and later fail" : "k-th fails", points, enomem, survived);
}

Test(alloc_fail, start_and_run_surface_enomem_from_join_with_consistent_outputs)
{
    install();
    expect x;
    expect_init(&x);
    const weir_exec_mode modes[] = {WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};
    for (size_t m = 0; m < 3; m++) {
        for (size_t h = 0; h < sizeof shapes / sizeof shapes[0]; h++) {
            run_at_every_k(modes[m], shapes[h], false, &x);
            run_at_every_k(modes[m], shapes[h], true, &x);
        }
    }
    expect_deinit(&x);
}

/* ------------------------------------------- built-ins, whole lifecycle */

/* Built-in terms (each allocates its own state), a blocking source on its
 * own thread and unnamed terms (generated names): the k-th allocation
 * counted from the first constructor, through create, start, join and
 * destroy. Whatever fails, nothing leaks and nothing hangs. */
static void lifecycle_at_every_k(weir_exec_mode mode, bool sticky, const char *path)
{
    static double xs[500];
    for (int i = 0; i < 500; i++)
        xs[i] = i * 0.5;
    FILE *devnull = fopen("/dev/null", "w");
    cr_assert_not_null(devnull);
    long points = -1, enomem = 0, einval = 0;
    for (long k = 1; k < 10000 && points < 0; k++) {
        /* A runtime per round: workers keep their scratch buffers until
         * they exit, so only after its destroy must the count be zero. */
        weir_runtime *rt = new_runtime();
        weir_collector c[3];
        cr_assert_eq(weir_collector_init(&c[0], sizeof(weir_line)), 0);
        cr_assert_eq(weir_collector_init(&c[1], sizeof(weir_running)), 0);
        cr_assert_eq(weir_collector_init(&c[2], sizeof(uint64_t) + sizeof(int64_t)), 0);
        arm(k, sticky);
        weir_term *root = weir_par(
            4,
            (weir_term *[]){
                weir_seq(3,
                         (weir_term *[]){weir_file_lines_fixed("lines", path),
                                         weir_print(NULL, sizeof(weir_line), devnull, NULL, NULL),
                                         weir_collect(NULL, &c[0])}),
                weir_seq(3, (weir_term *[]){weir_array_source("xs", xs, 500, sizeof(double)),
                                            weir_running_stats(NULL), weir_collect(NULL, &c[1])}),
                weir_seq(3, (weir_term *[]){weir_range_source("ints", 0, 700, 1),
                                            weir_add_index(NULL, sizeof(int64_t)),
                                            weir_collect(NULL, &c[2])}),
                weir_seq(3, (weir_term *[]){weir_array_source("ys", xs, 500, sizeof(double)),
                                            weir_sum(NULL), weir_stop()}),
            });
        weir_pipeline_config pc = pcfg(mode);
        weir_pipeline *p = NULL;
        int r = weir_pipeline_create(rt, root, &pc, &p);
        if (r == 0) {
            cr_assert_eq(weir_pipeline_start(p), 0, "%s", weir_last_error());
            r = weir_pipeline_join(p);
            if (r != 0)
                cr_assert(strstr(weir_pipeline_error(p), "term '"), "error '%s' names no term",
                          weir_pipeline_error(p));
            weir_pipeline_destroy(p);
        } else {
            weir_term_destroy(root);
        }
        long failed = atomic_load(&T.failed), calls = atomic_load(&T.calls);
        disarm();
        if (failed == 0) {
            cr_assert_eq(r, 0, "k=%ld: %d (%s)", k, r, weir_last_error());
            cr_assert_eq(c[0].count, 40);
            cr_assert_eq(c[1].count, 500);
            cr_assert_eq(c[2].count, 700);
            points = calls;
        } else if (r == -EINVAL) {
            einval++; /* a constructor failed: create reports the hole */
        } else if (r != 0) {
            cr_assert_eq(r, -ENOMEM, "k=%ld: %d (%s)", k, r, weir_last_error());
            enomem++;
        }
        for (int i = 0; i < 3; i++)
            weir_collector_deinit(&c[i]);
        weir_runtime_destroy(rt);
        cr_assert_eq(atomic_load(&T.live), 0, "k=%ld: %ld blocks leaked", k, atomic_load(&T.live));
    }
    fclose(devnull);
    cr_log_info("built-ins, construction to destroy (%s, %s): %ld allocation points; %ld runs "
                "ended in -ENOMEM, %ld in -EINVAL (a constructor's NULL)",
                weir_exec_mode_name(mode), sticky ? "k-th and later fail" : "k-th fails", points,
                enomem, einval);
}

Test(alloc_fail, builtin_terms_fail_cleanly_from_construction_to_destroy)
{
    install();
    char path[] = "/tmp/weir-alloc-lines-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
    const weir_exec_mode modes[] = {WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};
    for (size_t m = 0; m < 3; m++) {
        lifecycle_at_every_k(modes[m], false, path);
        lifecycle_at_every_k(modes[m], true, path);
    }
    unlink(path);
}
