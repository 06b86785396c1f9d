/*
 * Term layer: pipeline lifecycle — errors (join returns the first one with
 * the term's name, nothing hangs), stop drains exactly once, cancel returns,
 * backpressure bounds memory, API misuse returns its code, monitoring.
 * No assertion depends on timing: joins use generous timeouts only to turn
 * a hang into a failure.
 */
#include <sched.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(terms_lifecycle, .init = rt_setup, .fini = rt_teardown, .timeout = 30);

#define JOIN_LIMIT_NS (20ull * 1000 * 1000 * 1000)

static int fail_at_fn(void *state, const void *in, weir_emit *e)
{
    int64_t v;
    memcpy(&v, in, sizeof v);
    if (v == *(int64_t *)state)
        return -EIO;
    return weir_emit_record(e, in);
}

Test(terms_lifecycle, a_callback_error_is_returned_by_join_with_the_term_name)
{
    for (int k = 0; k < 3; k++) {
        int64_t at = 5000;
        _Atomic uint64_t n = 0;
        weir_term *t =
            WEIR_SEQ(weir_counter_source("src", 0), weir_id("before", 8),
                     weir_function("parse", 8, 8, fail_at_fn, &at), count_sink("sink", 8, &n));
        weir_pipeline_config c = cfg_of(all_modes[k], 64, 128);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), -EIO, "%s",
                     weir_exec_mode_name(all_modes[k]));
        const char *m = weir_pipeline_error(p);
        cr_assert(strstr(m, "term 'parse'") && strstr(m, "-5"), "message: %s", m);
        cr_assert_leq(n, 5000);
        cr_assert_eq(weir_pipeline_join(p), -EIO, "joining again returns the same");
        weir_pipeline_destroy(p);
    }
}

static int sink_fail_fn(void *state, const void *in)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    return v == 77 ? -ENOSPC : 0;
}

static int src_fail_pull(void *state, void *out, size_t max, bool *end)
{
    (void)out;
    (void)max;
    (void)end;
    return ++*(int *)state == 3 ? -EPROTO : 0;
}

Test(terms_lifecycle, errors_in_sinks_sources_and_one_of_many_branches_stop_everything)
{
    for (int k = 0; k < 3; k++) {
        /* A failing sink in one branch of 50 while the source is endless. */
        enum { N = 50 };
        weir_term *br[N];
        _Atomic uint64_t n = 0;
        for (int i = 0; i < N; i++) {
            char name[16];
            snprintf(name, sizeof name, "b%d", i);
            br[i] = i == 17 ? weir_sink("disk", 8, sink_fail_fn, NULL)
                            : weir_seq2(weir_id(name, 8), count_sink(NULL, 8, &n));
        }
        weir_term *t = weir_seq2(weir_counter_source("src", 0), weir_par(N, br));
        weir_pipeline_config c = cfg_of(all_modes[k], 32, 64);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), -ENOSPC);
        cr_assert(strstr(weir_pipeline_error(p), "term 'disk'"), "%s", weir_pipeline_error(p));
        weir_pipeline_destroy(p);

        /* A failing pull source. */
        int calls = 0;
        t = weir_seq2(weir_source("feed", 8, src_fail_pull, &calls), weir_stop());
        cr_assert_eq(run_mode(t, all_modes[k], NULL), -EPROTO);
    }
}

typedef struct stopper {
    weir_pipeline *p;
    int64_t next;
    uint64_t count, bad;
    int64_t stop_at;
} stopper;

static int stopper_fn(void *state, const void *in)
{
    stopper *s = state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    if (v != s->next)
        s->bad++;
    s->next = v + 1;
    s->count++;
    if (v == s->stop_at)
        weir_pipeline_stop(s->p); /* from a callback: allowed */
    return 0;
}

Test(terms_lifecycle, stop_drains_every_record_produced_exactly_once)
{
    for (int k = 0; k < 3; k++) {
        stopper st = {.stop_at = 3000};
        weir_term *t =
            WEIR_SEQ(weir_counter_source("src", 0), weir_id("a", 8),
                     weir_par2(weir_sink("check", 8, stopper_fn, &st), weir_id("other", 8)));
        weir_pipeline_config c = cfg_of(all_modes[k], 50, 256);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        st.p = p;
        cr_assert_eq(weir_pipeline_start(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), 0, "%s: %s",
                     weir_exec_mode_name(all_modes[k]), weir_pipeline_error(p));
        weir_term_stats src;
        cr_assert_eq(weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, "src"), &src),
                     0);
        /* Everything the source produced before it saw the stop reached the
         * sink, in order, once. */
        cr_assert_geq(st.count, 3001);
        cr_assert_eq(st.count, src.records_out, "%s: produced %llu, received %llu",
                     weir_exec_mode_name(all_modes[k]), (unsigned long long)src.records_out,
                     (unsigned long long)st.count);
        cr_assert_eq(st.bad, 0);
        cr_assert_eq(weir_pipeline_stop(p), 0, "stopping twice is fine");
        weir_pipeline_destroy(p);
    }
}

static int slow_sink_fn(void *state, const void *in)
{
    (void)state;
    (void)in;
    usleep(200);
    return 0;
}

Test(terms_lifecycle, cancel_returns_promptly_and_join_reports_it)
{
    for (int k = 0; k < 3; k++) {
        weir_term *t = WEIR_SEQ(weir_counter_source("src", 0), weir_id("a", 8),
                                weir_sink("slow", 8, slow_sink_fn, NULL));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 32);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        usleep(2000);
        cr_assert_eq(weir_pipeline_cancel(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), -ECANCELED);
        cr_assert(strstr(weir_pipeline_error(p), "cancel"), "%s", weir_pipeline_error(p));
        weir_pipeline_destroy(p);
    }
}

static int busy_sink_fn(void *state, const void *in)
{
    /* Slow enough that the source is always ahead. */
    volatile uint64_t x = 0;
    for (int i = 0; i < 2000; i++)
        x += (uint64_t)i;
    (void)in;
    ++*(uint64_t *)state;
    return 0;
}

Test(terms_lifecycle, backpressure_keeps_a_fast_sources_stream_within_capacity)
{
    for (int k = 0; k < 3; k++) {
        uint64_t n = 0;
        _Atomic uint64_t m = 0;
        /* A broadcast keeps the stream in pool mode too. */
        weir_term *t = weir_seq2(
            weir_range_source("fast", 0, 100000, 1),
            weir_par2(weir_sink("slow", 8, busy_sink_fn, &n), count_sink("quick", 8, &m)));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 64);
        weir_pipeline *p;
        cr_assert_eq(run_cfg(t, &c, &p), 0);
        cr_assert_eq(n, 100000);
        cr_assert_eq(m, 100000);
        weir_stream_stats ss;
        cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
        cr_assert_str_eq(ss.name, "fast");
        cr_assert_eq(ss.capacity, 64);
        cr_assert_leq(ss.max_depth, 64, "%s: depth %llu", weir_exec_mode_name(all_modes[k]),
                      (unsigned long long)ss.max_depth);
        cr_assert_gt(ss.max_depth, 0);
        cr_assert_eq(ss.depth, 0);
        weir_pipeline_destroy(p);
    }
}

typedef struct joiner {
    weir_pipeline *p;
    int result;
} joiner;

static int join_inside_fn(void *state, const void *in)
{
    (void)in;
    joiner *j = state;
    if (j->result == 1)
        j->result = weir_pipeline_join(j->p);
    return 0;
}

Test(terms_lifecycle, api_misuse_returns_its_error_code)
{
    _Atomic uint64_t n = 0;
    weir_term *t = weir_seq2(weir_range_source("src", 0, 100, 1), count_sink("sink", 8, &n));
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, NULL, &p), 0);
    cr_assert_eq(weir_pipeline_join(p), -EINVAL, "join before start");
    cr_assert_eq(weir_pipeline_stop(p), -EINVAL, "stop before start");
    cr_assert_eq(weir_pipeline_cancel(p), -EINVAL, "cancel before start");
    cr_assert_eq(weir_pipeline_start(p), 0);
    cr_assert_eq(weir_pipeline_start(p), -EALREADY, "start twice");
    cr_assert_eq(weir_pipeline_join(p), 0);
    cr_assert_eq(weir_pipeline_join(p), 0, "join twice");
    cr_assert_eq(weir_pipeline_start(p), -EALREADY, "start after join");
    weir_pipeline_destroy(p);

    cr_assert_eq(weir_pipeline_create(rt, NULL, NULL, &p), -EINVAL);
    weir_term *lone = weir_stop();
    cr_assert_eq(weir_pipeline_create(rt, lone, NULL, NULL), -EINVAL);
    weir_term_destroy(lone);
    cr_assert_eq(weir_pipeline_start(NULL), -EINVAL);
    cr_assert_eq(weir_pipeline_join(NULL), -EINVAL);
    cr_assert_eq(weir_pipeline_stop(NULL), -EINVAL);
    cr_assert_eq(weir_pipeline_cancel(NULL), -EINVAL);
    cr_assert_str_eq(weir_pipeline_error(NULL), "");
    weir_pipeline_destroy(NULL);

    /* join from inside a callback would deadlock: refused. */
    for (int k = 0; k < 3; k++) {
        joiner j = {.result = 1};
        t = weir_seq2(weir_range_source("src", 0, 10, 1),
                      weir_sink("joiner", 8, join_inside_fn, &j));
        weir_pipeline_config c = cfg_of(all_modes[k], 0, 0);
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        j.p = p;
        cr_assert_eq(weir_pipeline_run(p), 0);
        cr_assert_eq(j.result, -EDEADLK, "%s", weir_exec_mode_name(all_modes[k]));
        weir_pipeline_destroy(p);
    }
}

Test(terms_lifecycle, destroying_a_running_pipeline_cancels_it)
{
    for (int k = 0; k < 3; k++) {
        weir_term *t =
            weir_seq2(weir_counter_source("src", 0), weir_sink("slow", 8, slow_sink_fn, NULL));
        weir_pipeline_config c = cfg_of(all_modes[k], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        weir_pipeline_destroy(p); /* must not hang or leak */
    }
}

Test(terms_lifecycle, several_pipelines_share_one_runtime)
{
    enum { P = 4 };
    weir_pipeline *p[P];
    seq_check chk[P];
    for (int i = 0; i < P; i++) {
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 20000, 1), weir_id("a", 8),
                                weir_par2(seq_sink("check", &chk[i], 0), weir_stop()));
        weir_pipeline_config c = cfg_of(i % 2 ? WEIR_EXEC_HYBRID : WEIR_EXEC_POOL, 32, 64);
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p[i]), 0);
    }
    for (int i = 0; i < P; i++)
        cr_assert_eq(weir_pipeline_start(p[i]), 0);
    for (int i = 0; i < P; i++) {
        cr_assert_eq(weir_pipeline_join_for(p[i], JOIN_LIMIT_NS), 0);
        cr_assert_eq(chk[i].count, 20000);
        cr_assert_eq(chk[i].bad, 0);
        weir_pipeline_destroy(p[i]);
    }
}

static int endless_blocking(void *state, weir_emit *e)
{
    int64_t v = 0;
    for (;;) {
        int r = weir_emit_record(e, &v);
        if (r < 0)
            return r; /* -ECANCELED after stop: not an error */
        v++;
        if (v == 100000)
            *(int *)state = 1;
    }
}

static int blocking_batches(void *state, weir_emit *e)
{
    int64_t buf[100];
    for (int64_t b = 0; b < 50; b++) {
        for (int i = 0; i < 100; i++)
            buf[i] = b * 100 + i;
        int r = weir_emit_records(e, buf, 100);
        if (r < 0)
            return r;
    }
    (void)state;
    return 0;
}

Test(terms_lifecycle, blocking_sources_block_when_full_and_wake_on_stop)
{
    for (int k = 0; k < 3; k++) {
        seq_check chk;
        weir_term *t = WEIR_SEQ(weir_blocking_source("gen", 8, blocking_batches, NULL),
                                weir_id("a", 8), seq_sink("check", &chk, 0));
        weir_pipeline_config c = cfg_of(all_modes[k], 8, 16);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(chk.count, 5000);
        cr_assert_eq(chk.bad, 0);

        /* An endless blocking source blocked on a slow sink: stop wakes it. */
        int flag = 0;
        t = weir_seq2(weir_blocking_source("endless", 8, endless_blocking, &flag),
                      weir_sink("slow", 8, slow_sink_fn, NULL));
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        usleep(1000);
        cr_assert_eq(weir_pipeline_stop(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), 0, "%s", weir_pipeline_error(p));
        weir_pipeline_destroy(p);
    }
}

static uint64_t starved;
static void on_starve(void *arg, const char *term, uint64_t ns)
{
    (void)term;
    (void)ns;
    (void)arg;
    starved++; /* called from the stage's own activation: one at a time per stage */
}

Test(terms_lifecycle, monitoring_reports_terms_streams_and_starvation)
{
    _Atomic uint64_t n = 0;
    weir_term *t =
        WEIR_SEQ(weir_range_source("src", 0, 10000, 1), weir_map("twice", 8, 8, int64_twice, NULL),
                 weir_par2(count_sink("a", 8, &n), count_sink("b", 8, &n)));
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 64, 128);
    c.starvation_ns = 1; /* everything counts: checks the plumbing, not the timing */
    c.on_starvation = on_starve;
    c.profile = true;
    weir_pipeline *p;
    cr_assert_eq(run_cfg(t, &c, &p), 0);
    cr_assert_eq(n, 20000);
    cr_assert_eq(weir_pipeline_term_count(p), 4);
    weir_term_stats ts;
    cr_assert_eq(weir_pipeline_term_stats(p, 1, &ts), 0);
    cr_assert_str_eq(ts.name, "twice");
    cr_assert_str_eq(ts.kind, "map");
    cr_assert_eq(ts.records_in, 10000);
    cr_assert_eq(ts.records_out, 10000);
    cr_assert_gt(ts.activations, 0);
    cr_assert_eq(weir_pipeline_term_stats(p, 4, &ts), -EINVAL);
    cr_assert_eq(weir_pipeline_find_term(p, "nope"), -ENOENT);
    weir_pipeline_stats ps;
    weir_pipeline_stats_get(p, &ps);
    cr_assert_eq(ps.terms, 4);
    cr_assert_eq(ps.stages, 3);
    cr_assert_eq(ps.streams, 1);
    cr_assert_eq(ps.threads, 0);
    /* with a 1 ns threshold the sinks' waits for input count too */
    cr_assert_eq(ps.starvations - ps.input_starvations, starved,
                 "callback calls = scheduling starvations");
    weir_stream_stats ss;
    cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
    cr_assert_eq(ss.stalls, ps.input_starvations, "input starvations = the stream's stalls");
    cr_assert(!ss.stalled, "an ended stream is not stalled");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weir_pipeline_print_stats(p, f);
    fclose(f);
    cr_assert(strstr(buf, "twice") && strstr(buf, "stream"), "%s", buf);
    free(buf);
    weir_pipeline_destroy(p);
}

static int parse_fn(void *state, const void *in, weir_emit *e)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    if (v == 42)
        return weir_emit_fail(e, -EBADMSG, "record %lld is malformed", (long long)v);
    return weir_emit_record(e, in);
}

Test(terms_lifecycle, emit_fail_gives_the_detailed_message)
{
    for (int k = 0; k < 3; k++) {
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 100, 1),
                                weir_function("parse", 8, 8, parse_fn, NULL), weir_stop());
        weir_pipeline *p;
        cr_assert_eq(run_mode(t, all_modes[k], &p), -EBADMSG);
        const char *m = weir_pipeline_error(p);
        cr_assert(strstr(m, "term 'parse': record 42 is malformed: "), "%s", m);
        weir_pipeline_destroy(p);
    }
}

Test(terms_lifecycle, threads_are_counted_per_mode)
{
    static const unsigned want[3] = {1, 4, 2}; /* pool: the blocking source only */
    for (int k = 0; k < 3; k++) {
        _Atomic uint64_t n = 0;
        weir_term *t = WEIR_SEQ(weir_par2(weir_blocking_source("gen", 8, blocking_batches, NULL),
                                          weir_range_source("r", 0, 10, 1)),
                                weir_merge("m"), count_sink("sink", 8, &n));
        weir_pipeline_config c = cfg_of(all_modes[k], 0, 0);
        c.timing = false;
        c.starvation_ns = 0;
        weir_pipeline *p;
        cr_assert_eq(run_cfg(t, &c, &p), 0);
        cr_assert_eq(n, 5010);
        weir_pipeline_stats ps;
        weir_pipeline_stats_get(p, &ps);
        cr_assert_eq(ps.threads, want[k], "%s: %u threads", weir_exec_mode_name(all_modes[k]),
                     ps.threads);
        weir_pipeline_destroy(p);
    }
}

/* ------------------------------------------- a pipeline outlives its runtime
 *
 * Row P17 of docs/reliability.md: a pipeline is attached to its runtime
 * (weir_runtime_attach() in create, detach at the end of destroy), so it may
 * be destroyed after the runtime. These tests use a runtime of their own and
 * statistics on (the pipeline's table goes to stderr at destroy, and to a
 * memory stream when the test asks): under ASan they are the proof that
 * nothing reads the freed runtime, and the live-block count that the last
 * detach frees its handle. */

TestSuite(terms_runtime_lifetime, .timeout = 30);

/* runtime/internal.h: blocks allocated through weir and not yet freed
 * (declared here: runtime/ and terms/ both have an internal.h). */
long weir__alloc_live(void);

static weir_runtime *own_runtime(void)
{
    weir_config c;
    weir_config_init(&c);
    c.workers = 2;
    c.affinity = WEIR_AFFINITY_NONE;
    c.print_stats = true; /* the runtime's table at destroy (stderr) */
    weir_runtime *r = NULL;
    cr_assert_eq(weir_runtime_create(&c, &r), 0, "runtime: %s", weir_last_error());
    return r;
}

static weir_pipeline_config cfg_stats(weir_exec_mode m)
{
    weir_pipeline_config c = cfg_of(m, 64, 128);
    c.print_stats = true; /* read at destroy, after the runtime is gone */
    return c;
}

/* The pipeline's statistics table, as a string (free it). */
static char *stats_text(const weir_pipeline *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    weir_pipeline_print_stats(p, f);
    fclose(f);
    return buf;
}

static void expect_runtime_destroyed_in_stats(const weir_pipeline *p, const char *what)
{
    char *s = stats_text(p);
    cr_assert(strstr(s, "worker utilisation: the runtime was destroyed"), "%s: table:\n%s", what,
              s);
    free(s);
}

Test(terms_runtime_lifetime, pipelines_created_but_not_started_may_be_destroyed_after_the_runtime)
{
    const long base = weir__alloc_live();
    weir_runtime *own = own_runtime();
    weir_pipeline *p[3];
    for (int k = 0; k < 3; k++) {
        weir_pipeline_config c = cfg_stats(all_modes[k]);
        cr_assert_eq(
            weir_pipeline_create(own, weir_seq2(weir_range_source("r", 0, 100, 1), weir_id("i", 8)),
                                 &c, &p[k]),
            0, "%s", weir_last_error());
    }
    weir_runtime_destroy(own);

    /* Kept by the three attachments: a new pipeline cannot attach. */
    weir_pipeline_config c = cfg_stats(WEIR_EXEC_POOL);
    weir_term *t = weir_seq2(weir_range_source("r", 0, 100, 1), weir_id("i", 8));
    weir_pipeline *q = NULL;
    weir_clear_error();
    cr_assert_eq(weir_pipeline_create(own, t, &c, &q), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "weir_pipeline_create: cannot attach to the runtime "
                                        "(weir_runtime_attach: the runtime was destroyed)"),
              "message: %s", weir_last_error());
    cr_assert_null(q);
    weir_term_destroy(t);

    for (int k = 0; k < 3; k++) {
        const char *mode = weir_exec_mode_name(all_modes[k]);
        weir_clear_error();
        cr_assert_eq(weir_pipeline_start(p[k]), -ESHUTDOWN, "%s", mode);
        cr_assert(strstr(weir_last_error(), "the runtime is being destroyed"), "%s: %s", mode,
                  weir_last_error());
        cr_assert_eq(weir_pipeline_join(p[k]), -EINVAL, "%s: never started", mode);
        expect_runtime_destroyed_in_stats(p[k], mode);
        weir_pipeline_destroy(p[k]); /* the last one frees the runtime's handle */
    }
    cr_assert_eq(weir__alloc_live(), base, "%ld blocks left", weir__alloc_live() - base);
}

Test(terms_runtime_lifetime, joined_pipelines_may_be_destroyed_after_the_runtime)
{
    const long base = weir__alloc_live();
    weir_runtime *own = own_runtime();
    weir_pipeline *p[3];
    seq_check chk[3];
    for (int k = 0; k < 3; k++) {
        weir_pipeline_config c = cfg_stats(all_modes[k]);
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 5000, 1), weir_id("a", 8),
                                seq_sink("check", &chk[k], 0));
        cr_assert_eq(weir_pipeline_create(own, t, &c, &p[k]), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_run(p[k]), 0, "%s", weir_pipeline_error(p[k]));
        cr_assert_eq(chk[k].count, 5000);
        cr_assert_eq(chk[k].bad, 0);
    }
    weir_runtime_destroy(own);
    for (int k = 0; k < 3; k++) {
        const char *mode = weir_exec_mode_name(all_modes[k]);
        cr_assert_eq(weir_pipeline_join(p[k]), 0, "%s: joining again returns the same", mode);
        cr_assert_eq(weir_pipeline_cancel(p[k]), 0, "%s: a cancel after the end is a no-op", mode);
        weir_pipeline_stats ps;
        weir_pipeline_stats_get(p[k], &ps);
        cr_assert_gt(ps.activations, 0, "%s", mode);
        expect_runtime_destroyed_in_stats(p[k], mode);
        weir_pipeline_destroy(p[k]);
    }
    cr_assert_eq(weir__alloc_live(), base, "%ld blocks left", weir__alloc_live() - base);
}

Test(terms_runtime_lifetime, a_running_pool_pipeline_ends_with_eshutdown_and_outlives_the_runtime)
{
    const long base = weir__alloc_live();
    weir_runtime *own = own_runtime();
    _Atomic uint64_t n[2] = {0, 0};
    weir_pipeline *p[2];
    for (int i = 0; i < 2; i++) {
        weir_pipeline_config c = cfg_stats(WEIR_EXEC_POOL);
        weir_term *t =
            WEIR_SEQ(weir_counter_source("src", 0), weir_id("a", 8), count_sink("sink", 8, &n[i]));
        cr_assert_eq(weir_pipeline_create(own, t, &c, &p[i]), 0, "%s", weir_last_error());
        cr_assert_eq(weir_pipeline_start(p[i]), 0);
    }
    /* Running for real: records have reached both sinks. */
    for (int i = 0; i < 2; i++)
        while (atomic_load(&n[i]) == 0)
            sched_yield();
    weir_runtime_destroy(own); /* the stages see it stopping and end */
    /* The first is joined, the second destroyed without a join. */
    cr_assert_eq(weir_pipeline_join_for(p[0], JOIN_LIMIT_NS), -ESHUTDOWN);
    cr_assert(strstr(weir_pipeline_error(p[0]), "the runtime is being destroyed"), "%s",
              weir_pipeline_error(p[0]));
    expect_runtime_destroyed_in_stats(p[0], "pool");
    weir_pipeline_destroy(p[0]);
    weir_pipeline_destroy(p[1]); /* frees the runtime's handle */
    cr_assert_eq(weir__alloc_live(), base, "%ld blocks left", weir__alloc_live() - base);
}

Test(terms_runtime_lifetime, a_threads_mode_pipeline_runs_on_after_its_runtime_is_destroyed)
{
    /* The threads mode never schedules on the runtime: destroying it does
     * not end the pipeline, which stops normally afterwards. */
    const long base = weir__alloc_live();
    weir_runtime *own = own_runtime();
    _Atomic uint64_t n = 0;
    weir_pipeline_config c = cfg_stats(WEIR_EXEC_THREADS);
    weir_term *t = weir_seq2(weir_counter_source("src", 0), count_sink("sink", 8, &n));
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(own, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_start(p), 0);
    while (atomic_load(&n) == 0)
        sched_yield();
    weir_runtime_destroy(own);
    uint64_t after = atomic_load(&n);
    while (atomic_load(&n) == after)
        sched_yield(); /* still running */
    cr_assert_eq(weir_pipeline_stop(p), 0);
    cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), 0, "%s", weir_pipeline_error(p));
    expect_runtime_destroyed_in_stats(p, "threads");
    weir_pipeline_destroy(p);
    cr_assert_eq(weir__alloc_live(), base, "%ld blocks left", weir__alloc_live() - base);
}
