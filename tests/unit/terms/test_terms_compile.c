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
