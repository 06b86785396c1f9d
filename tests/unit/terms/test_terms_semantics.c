/*
 * Term layer: stream semantics — FIFO per stream, broadcast, zip and merge
 * end rules, end of stream through fused and unfused stages, flat-map and
 * filter counts, finish callbacks, stop terms — in every execution mode.
 * Small batches and capacities make the rings wrap and the producers block.
 */
#include "helpers.h"

TestSuite(terms_semantics, .init = rt_setup, .fini = rt_teardown, .timeout = 30);

Test(terms_semantics, each_stream_is_fifo)
{
    for (int k = 0; k < 3; k++) {
        seq_check chk;
        /* Unfused in threads mode: three streams between source and sink. */
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 20000, 1), weir_id("a", 8),
                                weir_id("b", 8), weir_id("c", 8), seq_sink("check", &chk, 0));
        weir_pipeline_config c = cfg_of(all_modes[k], 7, 16);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(chk.count, 20000, "%s", weir_exec_mode_name(all_modes[k]));
        cr_assert_eq(chk.bad, 0, "%s: out of order", weir_exec_mode_name(all_modes[k]));
    }
}

Test(terms_semantics, every_consumer_of_a_broadcast_sees_every_record_in_order)
{
    enum { N = 6 };
    for (int k = 0; k < 3; k++) {
        seq_check chk[N];
        weir_term *br[N];
        for (int i = 0; i < N; i++) {
            char name[16];
            snprintf(name, sizeof name, "b%d", i);
            /* Half the branches are plain sinks on the stream, half go
             * through a function first (a separate stage reading it). */
            br[i] = i % 2 ? weir_seq2(weir_id(name, 8), seq_sink(NULL, &chk[i], 0))
                          : seq_sink(name, &chk[i], 0);
        }
        weir_term *t = weir_seq2(weir_range_source("src", 0, 5000, 1), weir_par(N, br));
        weir_pipeline_config c = cfg_of(all_modes[k], 5, 8);
        weir_pipeline *p;
        cr_assert_eq(run_cfg(t, &c, &p), 0);
        for (int i = 0; i < N; i++) {
            cr_assert_eq(chk[i].count, 5000, "%s branch %d", weir_exec_mode_name(all_modes[k]), i);
            cr_assert_eq(chk[i].bad, 0, "%s branch %d", weir_exec_mode_name(all_modes[k]), i);
        }
        /* One stream for the source, written once for all N consumers. */
        weir_stream_stats ss;
        cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
        cr_assert_str_eq(ss.name, "src");
        cr_assert_eq(ss.consumers, N);
        cr_assert_eq(ss.records, 5000);
        weir_pipeline_destroy(p);
    }
}

Test(terms_semantics, zip_ends_when_any_input_ends)
{
    for (int k = 0; k < 3; k++) {
        weir_collector out;
        weir_collector_init(&out, 16);
        weir_term *t = WEIR_SEQ(weir_par2(weir_range_source("short", 0, 10, 1),
                                          weir_range_source("long", 100, 100000, 1)),
                                weir_zip("z", 0, NULL, NULL), weir_collect("out", &out));
        weir_pipeline_config c = cfg_of(all_modes[k], 4, 8);
        cr_assert_eq(run_cfg(t, &c, NULL), 0, "zip must end although 'long' has more");
        cr_assert_eq(out.count, 10, "%s", weir_exec_mode_name(all_modes[k]));
        const int64_t *v = out.data;
        for (int i = 0; i < 10; i++) {
            cr_assert_eq(v[2 * i], i);
            cr_assert_eq(v[2 * i + 1], 100 + i);
        }
        weir_collector_deinit(&out);
    }
}

static int zip_sum(void *state, const void *const *in, size_t n, weir_emit *e)
{
    (void)state;
    int64_t s = 0, v;
    for (size_t i = 0; i < n; i++) {
        memcpy(&v, in[i], sizeof v);
        s += v;
    }
    return weir_emit_record(e, &s);
}

Test(terms_semantics, zip_with_a_callback_gets_one_record_per_input)
{
    seq_check chk;
    /* (i) + (2i) + (-3i + k) = k ... use three ranges whose sum is i. */
    weir_term *t =
        WEIR_SEQ(WEIR_PAR(weir_range_source("a", 0, 3000, 1), weir_range_source("b", 0, 6000, 2),
                          weir_range_source("c", 0, -6000, -2)),
                 weir_zip("sum", sizeof(int64_t), zip_sum, NULL), seq_sink("check", &chk, 0));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    cr_assert_eq(chk.count, 3000);
    cr_assert_eq(chk.bad, 0);
}

Test(terms_semantics, merge_ends_when_all_inputs_end_and_keeps_each_input_fifo)
{
    for (int k = 0; k < 3; k++) {
        weir_collector out;
        weir_collector_init(&out, 8);
        weir_term *t = WEIR_SEQ(weir_par2(weir_range_source("short", 0, 10, 1),
                                          weir_range_source("long", 1000, 6000, 1)),
                                weir_merge("m"), weir_collect("out", &out));
        weir_pipeline_config c = cfg_of(all_modes[k], 3, 8);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(out.count, 10 + 5000, "%s", weir_exec_mode_name(all_modes[k]));
        const int64_t *v = out.data;
        int64_t next_short = 0, next_long = 1000;
        for (size_t i = 0; i < out.count; i++) {
            if (v[i] < 1000)
                cr_assert_eq(v[i], next_short++, "short out of order");
            else
                cr_assert_eq(v[i], next_long++, "long out of order");
        }
        weir_collector_deinit(&out);
    }
}

typedef struct finish_probe {
    uint64_t seen;
    uint64_t seen_at_finish;
    int finishes;
} finish_probe;

static int probe_fn(void *state, const void *in, weir_emit *e)
{
    ((finish_probe *)state)->seen++;
    return weir_emit_record(e, in);
}

static int probe_finish(void *state, weir_emit *e)
{
    (void)e;
    finish_probe *f = state;
    f->finishes++;
    f->seen_at_finish = f->seen;
    return 0;
}

Test(terms_semantics, end_of_stream_reaches_every_fused_and_unfused_term_once)
{
    for (int k = 0; k < 3; k++) {
        finish_probe pr[4] = {{0}};
        _Atomic uint64_t n = 0;
        weir_term *t = WEIR_SEQ(
            weir_range_source("src", 0, 3000, 1),
            weir_term_on_finish(weir_function("p0", 8, 8, probe_fn, &pr[0]), probe_finish),
            weir_term_on_finish(weir_function("p1", 8, 8, probe_fn, &pr[1]), probe_finish),
            /* a broadcast in the middle cuts the chain in two stages */
            weir_par2(
                weir_term_on_finish(weir_function("p2", 8, 8, probe_fn, &pr[2]), probe_finish),
                weir_seq2(
                    weir_term_on_finish(weir_function("p3", 8, 8, probe_fn, &pr[3]), probe_finish),
                    count_sink("c3", 8, &n))),
            weir_stop());
        weir_pipeline_config c = cfg_of(all_modes[k], 8, 16);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(pr[i].finishes, 1, "%s: p%d finished %d times",
                         weir_exec_mode_name(all_modes[k]), i, pr[i].finishes);
            cr_assert_eq(pr[i].seen_at_finish, 3000, "%s: p%d finished early",
                         weir_exec_mode_name(all_modes[k]), i);
        }
        cr_assert_eq(n, 3000);
    }
}

static int copies_fn(void *state, const void *in, weir_emit *e)
{
    /* Flat-map: record v becomes v % 50 copies (0..49), more than the
     * stream capacity for many of them, so the spill buffer is used. */
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    for (int64_t i = 0; i < v % 50; i++) {
        int r = weir_emit_record(e, &v);
        if (r < 0)
            return r;
    }
    return 0;
}

Test(terms_semantics, flat_map_and_filter_counts_are_exact)
{
    /* sum over v in [0, 1000) of v % 50 = 20 * (0 + ... + 49) = 24500;
     * v even -> copies of even values only: 20 * (0 + 2 + ... + 48) = 12000. */
    for (int k = 0; k < 3; k++) {
        _Atomic uint64_t all = 0, even = 0;
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 1000, 1),
                                weir_function("copies", 8, 8, copies_fn, NULL),
                                weir_par2(count_sink("all", 8, &all),
                                          weir_seq2(weir_filter("even", 8, int64_even, NULL),
                                                    count_sink("evens", 8, &even))));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 8);
        weir_pipeline *p;
        cr_assert_eq(run_cfg(t, &c, &p), 0);
        cr_assert_eq(all, 24500, "%s", weir_exec_mode_name(all_modes[k]));
        cr_assert_eq(even, 12000, "%s", weir_exec_mode_name(all_modes[k]));
        weir_term_stats ts;
        cr_assert_eq(
            weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, "copies"), &ts), 0);
        cr_assert_eq(ts.records_in, 1000);
        cr_assert_eq(ts.records_out, 24500);
        cr_assert_eq(weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, "even"), &ts),
                     0);
        cr_assert_eq(ts.records_in, 24500);
        cr_assert_eq(ts.records_out, 12000);
        weir_pipeline_destroy(p);
    }
}

typedef struct total {
    int64_t sum;
} total;

static int total_fn(void *state, const void *in, weir_emit *e)
{
    (void)e;
    int64_t v;
    memcpy(&v, in, sizeof v);
    ((total *)state)->sum += v;
    return 0; /* emits nothing per record */
}

static int total_finish(void *state, weir_emit *e)
{
    return weir_emit_record(e, &((total *)state)->sum);
}

Test(terms_semantics, a_finish_callback_can_emit_final_records)
{
    for (int k = 0; k < 3; k++) {
        total tot = {0};
        weir_collector out;
        weir_collector_init(&out, 8);
        weir_term *t = WEIR_SEQ(
            weir_range_source("src", 1, 101, 1),
            weir_term_on_finish(weir_function("total", 8, 8, total_fn, &tot), total_finish),
            weir_map("twice", 8, 8, int64_twice, NULL), weir_collect("out", &out));
        cr_assert_eq(run_mode(t, all_modes[k], NULL), 0);
        cr_assert_eq(out.count, 1);
        cr_assert_eq(((int64_t *)out.data)[0], 2 * 5050);
        weir_collector_deinit(&out);
    }
}

Test(terms_semantics, stop_hides_output_and_unread_outputs_are_dropped)
{
    for (int k = 0; k < 3; k++) {
        weir_collector out;
        weir_collector_init(&out, 8);
        /* src -> (a * stop | b) -> collect: only b reaches the collector. */
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 500, 1),
                                weir_par2(weir_seq2(weir_id("a", 8), weir_stop()),
                                          weir_map("b", 8, 8, int64_twice, NULL)),
                                weir_collect("out", &out));
        cr_assert_eq(run_mode(t, all_modes[k], NULL), 0);
        cr_assert_eq(out.count, 500);
        cr_assert_eq(((int64_t *)out.data)[499], 998);
        weir_collector_deinit(&out);
        /* A pipeline whose last term's output nobody reads still ends. */
        t = weir_seq2(weir_range_source("src", 0, 500, 1), weir_id("unread", 8));
        cr_assert_eq(run_mode(t, all_modes[k], NULL), 0);
    }
}

Test(terms_semantics, all_three_modes_give_identical_sink_output)
{
    enum { N = 5, n = 3000 };
    weir_collector out[3][N];
    for (int k = 0; k < 3; k++) {
        weir_term *br[N];
        for (int i = 0; i < N; i++) {
            char name[16];
            snprintf(name, sizeof name, "twice%d", i);
            weir_collector_init(&out[k][i], 16);
            br[i] = WEIR_SEQ(weir_map(name, 8, 8, int64_twice, NULL),
                             i % 2 ? weir_filter(NULL, 8, int64_even, NULL) : weir_id(NULL, 8),
                             weir_function(NULL, 8, 8, copies_fn, NULL), weir_add_index(NULL, 8),
                             weir_collect(NULL, &out[k][i]));
        }
        weir_term *t = weir_seq2(weir_range_source("src", 0, n, 1), weir_par(N, br));
        weir_pipeline_config c = cfg_of(all_modes[k], 32, 64);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_gt(out[0][i].count, 0);
        for (int k = 1; k < 3; k++) {
            cr_assert_eq(out[k][i].count, out[0][i].count, "branch %d, %s", i,
                         weir_exec_mode_name(all_modes[k]));
            cr_assert_eq(memcmp(out[k][i].data, out[0][i].data, out[0][i].count * 16), 0,
                         "branch %d, %s", i, weir_exec_mode_name(all_modes[k]));
        }
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < N; i++)
            weir_collector_deinit(&out[k][i]);
}

Test(terms_semantics, a_batch_sink_gets_every_record_once_in_order)
{
    for (int k = 0; k < 3; k++) {
        weir_collector out, out2;
        weir_collector_init(&out, 8);
        weir_collector_init(&out2, 8);
        /* One collector reads the stream directly (zero-copy runs of the
         * ring), the other after a fused map (buffered). */
        weir_term *t =
            weir_seq2(weir_range_source("src", 0, 10000, 1),
                      weir_par2(weir_collect("direct", &out),
                                weir_seq2(weir_id("x", 8), weir_collect("after", &out2))));
        weir_pipeline_config c = cfg_of(all_modes[k], 13, 32);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(out.count, 10000);
        cr_assert_eq(out2.count, 10000);
        for (int64_t i = 0; i < 10000; i++) {
            cr_assert_eq(((int64_t *)out.data)[i], i);
            cr_assert_eq(((int64_t *)out2.data)[i], i);
        }
        weir_collector_deinit(&out);
        weir_collector_deinit(&out2);
    }
}

Test(terms_semantics, batch_and_capacity_of_one_still_deliver_everything_in_order)
{
    for (int k = 0; k < 3; k++) {
        seq_check chk[2];
        _Atomic uint64_t n = 0;
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 3000, 1),
                                weir_function("copies", 8, 8, copies_fn, NULL),
                                weir_par2(count_sink("all", 8, &n), weir_stop()));
        weir_pipeline_config c = cfg_of(all_modes[k], 1, 1);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(n, 20 * (49 * 50 / 2) * 3);
        t = weir_seq2(weir_range_source("src", 0, 3000, 1),
                      weir_par2(seq_sink("a", &chk[0], 0),
                                weir_seq2(weir_id("i", 8), seq_sink("b", &chk[1], 0))));
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(chk[i].count, 3000, "%s", weir_exec_mode_name(all_modes[k]));
            cr_assert_eq(chk[i].bad, 0);
        }
    }
}

Test(terms_semantics, an_empty_source_ends_every_stage)
{
    for (int k = 0; k < 3; k++) {
        finish_probe pr = {0};
        _Atomic uint64_t n = 0;
        weir_term *t =
            WEIR_SEQ(weir_range_source("empty", 0, 0, 1),
                     weir_par2(weir_seq2(weir_term_on_finish(
                                             weir_function("p", 8, 8, probe_fn, &pr), probe_finish),
                                         count_sink("a", 8, &n)),
                               weir_seq2(weir_id("x", 8), count_sink("b", 8, &n))),
                     weir_stop());
        cr_assert_eq(run_mode(t, all_modes[k], NULL), 0);
        cr_assert_eq(n, 0);
        cr_assert_eq(pr.finishes, 1);
    }
}
