/*
 * Term layer: composition and compilation — structural errors name the
 * terms involved, ownership is never lost or doubled, fusion follows the
 * execution mode.
 */
#include "helpers.h"

TestSuite(terms_compile, .init = rt_setup, .fini = rt_teardown, .timeout = 20);

static int create_err(weir_term *t, weir_exec_mode m)
{
    weir_pipeline_config c = cfg_of(m, 0, 0);
    weir_pipeline *p = NULL;
    int r = weir_pipeline_create(rt, t, &c, &p);
    if (r == 0)
        weir_pipeline_destroy(p);
    return r;
}

static int nop_fn(void *s, const void *in, weir_emit *e)
{
    (void)s;
    return weir_emit_record(e, in);
}

Test(terms_compile, size_mismatch_is_an_error_naming_both_terms)
{
    weir_term *t = weir_seq2(weir_range_source("numbers", 0, 10, 1),
                             weir_function("parse", 16, 16, nop_fn, NULL));
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    const char *m = weir_terms_last_error();
    cr_assert(strstr(m, "'parse'") && strstr(m, "'numbers'"), "message: %s", m);
    cr_assert(strstr(m, "16-byte") && strstr(m, "8-byte"), "message: %s", m);
    weir_term_destroy(t);
}

Test(terms_compile, parallel_name_clash_is_an_error_naming_both_branches)
{
    weir_term *t = weir_seq2(
        weir_range_source("src", 0, 10, 1),
        WEIR_PAR(weir_id("left", 8), weir_id("x", 8), weir_map("x", 8, 8, int64_twice, NULL)));
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    const char *m = weir_terms_last_error();
    cr_assert(strstr(m, "'x'") && strstr(m, "branch 2") && strstr(m, "branch 3"), "message: %s", m);
    cr_assert(strstr(m, "id") && strstr(m, "map"), "message: %s", m);
    weir_term_destroy(t);
}

Test(terms_compile, parallel_outputs_are_the_union_in_branch_order)
{
    /* src | (id a, twice b) -> zip: each tuple is (a_i, b_i), in branch order. */
    weir_collector out;
    cr_assert_eq(weir_collector_init(&out, 16), 0);
    weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 100, 1),
                            weir_par2(weir_id("a", 8), weir_map("b", 8, 8, int64_twice, NULL)),
                            weir_zip("pair", 0, NULL, NULL), weir_collect("out", &out));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    cr_assert_eq(out.count, 100);
    const int64_t *v = out.data;
    for (int64_t i = 0; i < 100; i++) {
        cr_assert_eq(v[2 * i], i);
        cr_assert_eq(v[2 * i + 1], 2 * i);
    }
    weir_collector_deinit(&out);
}

Test(terms_compile, empty_composites_are_errors)
{
    weir_term *t = weir_seq2(weir_range_source("src", 0, 10, 1), weir_par(0, NULL));
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "empty par"), "%s", weir_terms_last_error());
    weir_term_destroy(t);
    t = weir_seq(0, NULL);
    cr_assert_not_null(t);
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "empty seq"), "%s", weir_terms_last_error());
    weir_term_destroy(t);
}

Test(terms_compile, a_failed_constructor_becomes_a_null_child_error)
{
    /* weir_map with size 0 fails; the composite keeps the hole. */
    weir_term *bad = weir_map("bad", 0, 8, int64_twice, NULL);
    cr_assert_null(bad);
    cr_assert(strstr(weir_terms_last_error(), "size 0"), "%s", weir_terms_last_error());
    weir_term *t = weir_seq2(weir_range_source("src", 0, 10, 1), bad);
    cr_assert_not_null(t);
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "NULL"), "%s", weir_terms_last_error());
    weir_term_destroy(t);
    /* A NULL root too. */
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(rt, NULL, NULL, &p), -EINVAL);
    cr_assert_null(p);
}

Test(terms_compile, a_term_used_twice_is_an_error_and_is_freed_once)
{
    weir_term *id = weir_id("twice", 8);
    weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 10, 1), id, id);
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "'twice'") &&
                  strstr(weir_terms_last_error(), "twice"),
              "%s", weir_terms_last_error());
    weir_term_destroy(t); /* frees `id` once */

    /* The same term in two trees: the second tree does not own it. */
    weir_term *shared = weir_id("shared", 8);
    weir_term *a = weir_seq2(weir_range_source("a", 0, 10, 1), shared);
    weir_term *b = weir_seq2(weir_range_source("b", 0, 10, 1), shared);
    cr_assert_eq(create_err(b, WEIR_EXEC_POOL), -EINVAL);
    weir_term_destroy(b);
    cr_assert_eq(create_err(a, WEIR_EXEC_POOL), 0); /* a still owns it and runs */
}

Test(terms_compile, a_root_owned_elsewhere_is_busy)
{
    weir_term *src = weir_range_source("src", 0, 10, 1);
    weir_term *t = weir_seq2(src, weir_id("id", 8));
    weir_pipeline *p1 = NULL, *p2 = NULL;
    cr_assert_eq(weir_pipeline_create(rt, src, NULL, &p2), -EBUSY, "child of a composite");
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p1), 0);
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p2), -EBUSY, "owned by a pipeline");
    cr_assert(strstr(weir_terms_last_error(), "pipeline"), "%s", weir_terms_last_error());
    weir_term_destroy(t); /* refused: the pipeline owns it (no crash, no double free) */
    weir_pipeline_destroy(p1);
}

Test(terms_compile, input_count_errors_name_the_term)
{
    /* A function fed two streams. */
    weir_term *t =
        weir_seq2(weir_par2(weir_range_source("a", 0, 5, 1), weir_range_source("b", 0, 5, 1)),
                  weir_id("single", 8));
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    const char *m = weir_terms_last_error();
    cr_assert(strstr(m, "'single'") && strstr(m, "2 inputs") && strstr(m, "merge"), "%s", m);
    weir_term_destroy(t);
    /* A source fed by another term. */
    t = weir_seq2(weir_range_source("first", 0, 5, 1), weir_range_source("second", 0, 5, 1));
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    m = weir_terms_last_error();
    cr_assert(strstr(m, "'second'") && strstr(m, "'first'"), "%s", m);
    weir_term_destroy(t);
    /* A function with no input at all. */
    t = weir_id("orphan", 8);
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "'orphan'"), "%s", weir_terms_last_error());
    weir_term_destroy(t);
    /* Merge inputs of different sizes. */
    t = weir_seq2(weir_par2(weir_range_source("i64", 0, 5, 1), weir_add_index("wide", 8)),
                  weir_merge("m"));
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    weir_term_destroy(t);
}

Test(terms_compile, constructors_reject_bad_arguments)
{
    cr_assert_null(weir_source("s", 0, NULL, NULL));
    cr_assert_null(weir_function("f", 8, 8, NULL, NULL));
    cr_assert_null(weir_sink("k", 0, count_fn, NULL));
    cr_assert_null(weir_zip("z", 8, NULL, NULL));
    cr_assert(strstr(weir_terms_last_error(), "out_size must be 0"), "%s", weir_terms_last_error());
    cr_assert_null(weir_range_source("r", 0, 10, 0));
    cr_assert_null(weir_collect("c", NULL));
    cr_assert_null(weir_term_on_finish(weir_range_source("src", 0, 1, 1), NULL));
    cr_assert_eq(weir_collector_init(NULL, 8), -EINVAL);
    weir_term_destroy(NULL);
    cr_assert_null(weir_term_name(NULL));
}

Test(terms_compile, fusion_follows_the_execution_mode)
{
    static const unsigned stages[3] = {1, 4, 2}, streams[3] = {0, 3, 1};
    for (int k = 0; k < 3; k++) {
        _Atomic uint64_t n = 0;
        weir_term *t = WEIR_SEQ(
            weir_range_source("src", 0, 1000, 1), weir_map("twice", 8, 8, int64_twice, NULL),
            weir_filter("even", 8, int64_even, NULL), count_sink("count", 8, &n));
        weir_pipeline *p;
        cr_assert_eq(run_mode(t, all_modes[k], &p), 0);
        weir_pipeline_stats ps;
        weir_pipeline_stats_get(p, &ps);
        cr_assert_eq(ps.stages, stages[k], "%s: %u stages", weir_exec_mode_name(all_modes[k]),
                     ps.stages);
        cr_assert_eq(ps.streams, streams[k], "%s: %u streams", weir_exec_mode_name(all_modes[k]),
                     ps.streams);
        cr_assert_eq(n, 1000);
        weir_pipeline_destroy(p);
    }
}

Test(terms_compile, a_failed_create_leaves_the_tree_usable)
{
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    c.batch = 0;
    _Atomic uint64_t n = 0;
    weir_term *t = weir_seq2(weir_range_source("src", 0, 100, 1), count_sink("count", 8, &n));
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "batch"), "%s", weir_terms_last_error());
    c.batch = 16;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_terms_last_error());
    cr_assert_eq(weir_pipeline_run(p), 0);
    cr_assert_eq(n, 100);
    weir_pipeline_destroy(p);
}

Test(terms_compile, config_is_validated)
{
    weir_pipeline *p = NULL;
    weir_term *t = weir_seq2(weir_range_source("src", 0, 100, 1), weir_stop());
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    c.capacity = 0;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "capacity"), "%s", weir_terms_last_error());
    c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    c.mode = (weir_exec_mode)42;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "mode"), "%s", weir_terms_last_error());
    c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    cr_assert_eq(weir_pipeline_create(NULL, t, &c, &p), -EINVAL, "pool mode needs a runtime");
    c.mode = WEIR_EXEC_THREADS;
    cr_assert_eq(weir_pipeline_create(NULL, t, &c, &p), 0, "threads mode runs without one");
    cr_assert_eq(weir_pipeline_run(p), 0);
    weir_pipeline_destroy(p);
    weir_exec_mode m;
    cr_assert_eq(weir_parse_exec_mode("hybrid", &m), 0);
    cr_assert_eq(m, WEIR_EXEC_HYBRID);
    cr_assert_eq(weir_parse_exec_mode("fibers", &m), -EINVAL);
}

Test(terms_compile, a_pipeline_without_source_is_an_error)
{
    weir_term *t = weir_stop();
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    cr_assert(strstr(weir_terms_last_error(), "no source"), "%s", weir_terms_last_error());
    weir_term_destroy(t);
}

/* Wide pipelines (issue 8, item 6): compile is linear in the terms and
 * edges, so 100 000 branches (20 000 under a sanitizer) build, run and give
 * the exact total. Not timed: the costs live in `weir-bench build`. The
 * merge is as wide: its activation visits only the inputs in its ready set
 * (stage.c), so a filter and the merge run by turns on one worker cost
 * O(1) per branch, not a scan of every input (quadratic before). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WIDE_N 20000u
#else
#define WIDE_N 100000u
#endif

static bool pass_all(void *s, const void *in)
{
    (void)s;
    (void)in;
    return true;
}

typedef struct wide_sum {
    uint64_t count, sum;
} wide_sum;

static int wide_sink(void *state, const void *in)
{
    wide_sum *w = state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    w->count++;
    w->sum += (uint64_t)v;
    return 0;
}

static int wide_mul(void *m, const void *in, weir_emit *e)
{
    int64_t v;
    memcpy(&v, in, sizeof v);
    v *= (int64_t)(intptr_t)m;
    return weir_emit_record(e, &v);
}

Test(terms_compile, a_wide_fanout_reaches_every_branch)
{
    const unsigned N = WIDE_N;
    _Atomic uint64_t count = 0;
    weir_term **br = malloc(N * sizeof *br);
    cr_assert(br);
    for (unsigned i = 0; i < N; i++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "mul%u", i + 1);
        snprintf(b, sizeof b, "sink%u", i + 1);
        br[i] = weir_seq2(weir_function(a, 8, 8, wide_mul, (void *)(intptr_t)(i + 1)),
                          weir_sink(b, 8, count_fn, (void *)&count));
    }
    weir_term *par = weir_par(N, br);
    free(br);
    weir_term *t = weir_seq2(weir_range_source("src", 0, 2, 1), par);
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "create: %s", weir_terms_last_error());
    weir_pipeline_stats st;
    weir_pipeline_stats_get(p, &st);
    cr_assert_eq(st.terms, 2 * N + 1);
    cr_assert_eq(st.stages, N + 1, "src, then function + sink fused per branch");
    cr_assert_eq(st.streams, 1);
    cr_assert_eq(weir_pipeline_run(p), 0, "run: %s", weir_pipeline_error(p));
    cr_assert_eq(atomic_load(&count), 2 * (uint64_t)N);
    weir_term_stats ts;
    int k = weir_pipeline_find_term(p, "mul77777");
    if (N >= 77777) {
        cr_assert_eq(k, 2 * 77776 + 1);
        cr_assert_eq(weir_pipeline_term_stats(p, (unsigned)k, &ts), 0);
        cr_assert_eq(ts.records_in, 2);
        cr_assert_eq(ts.records_out, 2);
    }
    weir_pipeline_destroy(p);
}

Test(terms_compile, a_wide_par_into_one_merge_counts_every_record)
{
    const unsigned N = WIDE_N;
    const int64_t K = 3; /* records 0, 1, 2 through every branch */
    weir_term **br = malloc(N * sizeof *br);
    cr_assert(br);
    for (unsigned i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%u", i);
        br[i] = weir_filter(name, 8, pass_all, NULL);
    }
    weir_term *par = weir_par(N, br);
    free(br);
    wide_sum w = {0, 0};
    weir_term *t = WEIR_SEQ(weir_range_source("src", 0, K, 1), par, weir_merge("all"),
                            weir_sink("count", 8, wide_sink, &w));
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "create: %s", weir_terms_last_error());
    weir_pipeline_stats st;
    weir_pipeline_stats_get(p, &st);
    cr_assert_eq(st.terms, N + 3);
    cr_assert_eq(st.stages, N + 2, "src, a stage per filter, merge + sink fused");
    cr_assert_eq(st.streams, N + 1);
    cr_assert_eq(weir_pipeline_find_term(p, "f99"), 100);
    cr_assert_eq(weir_pipeline_run(p), 0, "run: %s", weir_pipeline_error(p));
    cr_assert_eq(w.count, (uint64_t)K * N);
    cr_assert_eq(w.sum, (uint64_t)N * (uint64_t)(K * (K - 1) / 2));
    weir_stream_stats ss;
    cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
    cr_assert_eq(ss.consumers, N, "the source's stream: one cursor per branch");
    weir_pipeline_destroy(p);
}

Test(terms_compile, a_wide_name_clash_reports_the_smallest_name_at_its_first_two_branches)
{
    /* The clash check hashes the names; it must report what a sort by
     * (name, branch) would: the smallest clashing name, first two branches. */
    const unsigned N = 5000;
    weir_term **br = malloc(N * sizeof *br);
    cr_assert(br);
    for (unsigned i = 0; i < N; i++) {
        char name[32];
        if (i == 2000 || i == 4500 || i == 4900) /* 'b10' clashes first (branch 11) */
            snprintf(name, sizeof name, "b%u", 10u);
        else if (i == 3000 || i == 3999)
            snprintf(name, sizeof name, "a%u", 7u);
        else
            snprintf(name, sizeof name, "b%u", i);
        br[i] = i == 3999 ? weir_map(name, 8, 8, int64_twice, NULL) : weir_id(name, 8);
    }
    weir_term *par = weir_par(N, br);
    free(br);
    weir_term *t = weir_seq2(weir_range_source("src", 0, 10, 1), par);
    cr_assert_eq(create_err(t, WEIR_EXEC_POOL), -EINVAL);
    const char *m = weir_terms_last_error();
    cr_assert(strstr(m, "named 'a7' (id 'a7' in branch 3001 and map 'a7' in branch 4000)"),
              "message: %s", m);
    weir_term_destroy(t);
}
