/*
 * A source that stalls, and starved stages (issue 4, "Faults and bad input").
 *
 * A blocking source that stops emitting and waits on a condition nobody
 * signals must not hold up other pipelines on the same runtime (it has its
 * own thread, no worker); the stall must be visible in the monitoring; and
 * cancel (or stop) must end it. What the API offers a blocking source to
 * notice a stop or cancel is weir_emit_stopping() (and -ECANCELED from the
 * emits): there is no hook that wakes a callback blocked in its own wait, so
 * a well-behaved stalling source waits in short timed slices and polls it,
 * while a source blocked without a timeout is only ended when its wait
 * returns (docs/terms.md, "Stop vs cancel"; pinned below).
 *
 * The starvation counter measures runnable-to-running waits of stages. A
 * stalled source makes nothing runnable, so it is not a starvation; a stage
 * that cannot get a worker is, and it must show while it waits, not only
 * once it finally runs.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(terms_stall, .init = rt_setup, .fini = rt_teardown, .timeout = 60);

#define SEC_NS 1000000000ull

/* ----------------------------------------------------- a stalling source */

typedef struct stall {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool go;       /* never set by the tests that stall forever */
    bool poll;     /* wait in 5 ms slices and poll weir_emit_stopping() */
    int64_t first; /* records emitted before the stall */
    /* seq_cst (the default) for these flags and the counters below: test
     * bookkeeping between the source's thread and the test, off any hot path. */
    _Atomic bool stalled;
    _Atomic bool returned;
} stall;

static void stall_init(stall *s, int64_t first, bool poll)
{
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->go = false;
    s->poll = poll;
    s->first = first;
    atomic_init(&s->stalled, false);
    atomic_init(&s->returned, false);
}

static void stall_deinit(stall *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

static int stall_fn(void *state, weir_emit *e)
{
    stall *s = state;
    for (int64_t i = 0; i < s->first; i++) {
        int r = weir_emit_record(e, &i);
        if (r < 0)
            return r;
    }
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stalled, true);
    while (!s->go) {
        if (!s->poll) {
            pthread_cond_wait(&s->cv, &s->mu); /* the silent socket */
            break;                             /* woken: look at the pipeline */
        }
        if (weir_emit_stopping(e))
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->returned, true);
    /* -ECANCELED after a stop or cancel is the expected way out. */
    return weir_emit_stopping(e) ? -ECANCELED : 0;
}

static void wait_until(_Atomic bool *flag)
{
    for (int i = 0; i < 10000 && !atomic_load(flag); i++)
        usleep(1000);
    cr_assert(atomic_load(flag), "timed out waiting for the source (10 s)");
}

static weir_term_stats term_stats(weir_pipeline *p, const char *name)
{
    weir_term_stats ts;
    int i = weir_pipeline_find_term(p, name);
    cr_assert_geq(i, 0, "no term '%s'", name);
    cr_assert_eq(weir_pipeline_term_stats(p, (unsigned)i, &ts), 0);
    return ts;
}

/* The stalled pipeline: stalled source -> id -> checking sink. */
static weir_pipeline *start_stalled(stall *s, seq_check *chk, weir_exec_mode m)
{
    weir_term *t = WEIR_SEQ(weir_blocking_source("stalled", 8, stall_fn, s), weir_id("id", 8),
                            seq_sink("out", chk, 0));
    weir_pipeline_config c = cfg_of(m, 16, 64);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_terms_last_error());
    cr_assert_eq(weir_pipeline_start(p), 0);
    return p;
}

/* A sink checking 0, 2, 4, ... (the records of twice). */
static int evens_fn(void *state, const void *in)
{
    seq_check *s = state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    if (v != 2 * s->next)
        s->bad++;
    s->next++;
    s->count++;
    return 0;
}

Test(terms_stall, a_stalled_blocking_source_shows_in_monitoring_and_cancel_ends_it)
{
    for (int k = 0; k < 3; k++) {
        stall s;
        stall_init(&s, 100, true);
        seq_check out = {0};
        weir_term *t = WEIR_SEQ(weir_blocking_source("stalled", 8, stall_fn, &s),
                                weir_map("twice", 8, 8, int64_twice, NULL),
                                weir_sink("out", 8, evens_fn, &out));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 64);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_terms_last_error());
        cr_assert_eq(weir_pipeline_start(p), 0);
        wait_until(&s.stalled);

        /* Meanwhile another pipeline on the same runtime runs to the end. */
        seq_check other;
        weir_term *t2 = WEIR_SEQ(weir_range_source("src", 0, 200000, 1),
                                 weir_map("twice", 8, 8, int64_twice, NULL),
                                 weir_filter("even", 8, int64_even, NULL), weir_id("id", 8),
                                 weir_sink("check", 8, evens_fn, &other));
        other.next = 0;
        other.count = other.bad = 0;
        weir_pipeline_config c2 = cfg_of(all_modes[k], 64, 256);
        weir_pipeline *p2;
        cr_assert_eq(weir_pipeline_create(rt, t2, &c2, &p2), 0);
        cr_assert_eq(weir_pipeline_start(p2), 0);
        cr_assert_eq(weir_pipeline_join_for(p2, 30 * SEC_NS), 0, "the other pipeline: %s",
                     weir_pipeline_error(p2));
        cr_assert_eq(other.count, 200000);
        cr_assert_eq(other.bad, 0);
        weir_pipeline_destroy(p2);

        /* The stall in the monitoring: the source's count stops at what it
         * emitted, everything reached the sink, the stream is empty, the
         * sink's stage does not run (it costs nothing while it waits), and
         * the pipeline has not finished. */
        for (int i = 0; i < 10000 && term_stats(p, "out").records_in < 100; i++)
            usleep(1000);
        weir_term_stats src1 = term_stats(p, "stalled"), sink1 = term_stats(p, "out");
        cr_assert_eq(src1.records_out, 100);
        cr_assert_eq(sink1.records_in, 100);
        usleep(100 * 1000);
        weir_term_stats src2 = term_stats(p, "stalled"), sink2 = term_stats(p, "out");
        cr_assert_eq(src2.records_out, 100, "a stalled source emits nothing");
        cr_assert_eq(sink2.records_in, 100);
        cr_assert_eq(sink2.activations, sink1.activations, "an idle stage is not activated");
        weir_stream_stats ss;
        cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
        cr_assert_str_eq(ss.name, "stalled");
        cr_assert_eq(ss.records, 100);
        cr_assert_eq(ss.depth, 0);
        cr_assert_eq(weir_pipeline_join_for(p, 50 * 1000 * 1000), -ETIMEDOUT, "still running");
        /* The silent producer with consumers that read everything is a
         * stall: after more than the threshold without a publish (sleeps
         * are lower bounds), the stream is stalled and the silence counts,
         * once, as an input starvation in the starvation counter. */
        usleep((useconds_t)(c.starvation_ns / 1000) + 50 * 1000);
        weir_pipeline_stats ps;
        for (int rd = 0; rd < 3; rd++) {
            weir_pipeline_stats_get(p, &ps);
            const char *m = weir_exec_mode_name(all_modes[k]);
            cr_assert_geq(ps.stalled_streams, 1, "mode %s: the stall is not visible", m);
            cr_assert_geq(ps.input_starvations, 1, "mode %s: the stall is not counted", m);
            cr_assert_geq(ps.starvations, ps.input_starvations, "mode %s", m);
            cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
            cr_assert(ss.stalled, "mode %s", m);
            cr_assert_eq(ss.stalls, 1, "mode %s: one silence counts once, however often read", m);
        }

        /* Cancel: the source notices at its next poll, join returns. */
        cr_assert_eq(weir_pipeline_cancel(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, 5 * SEC_NS), -ECANCELED, "mode %s: %s",
                     weir_exec_mode_name(all_modes[k]), weir_pipeline_error(p));
        cr_assert(atomic_load(&s.returned));
        cr_assert_eq(out.count, 100);
        cr_assert_eq(out.bad, 0);
        weir_pipeline_destroy(p);
        stall_deinit(&s);
    }
}

Test(terms_stall, stop_ends_a_stalled_blocking_source_and_keeps_what_it_emitted)
{
    for (int k = 0; k < 3; k++) {
        stall s;
        stall_init(&s, 1000, true);
        seq_check chk;
        weir_term *t = WEIR_SEQ(weir_blocking_source("stalled", 8, stall_fn, &s), weir_id("id", 8),
                                seq_sink("out", &chk, 0));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 64);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        wait_until(&s.stalled);
        cr_assert_eq(weir_pipeline_stop(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, 5 * SEC_NS), 0, "%s", weir_pipeline_error(p));
        cr_assert_eq(chk.count, 1000, "every record emitted before the stop arrives");
        cr_assert_eq(chk.bad, 0);
        weir_pipeline_destroy(p);
        stall_deinit(&s);
    }
}

Test(terms_stall, destroying_a_pipeline_with_a_stalled_source_cancels_it)
{
    for (int k = 0; k < 3; k++) {
        stall s;
        stall_init(&s, 10, true);
        seq_check chk;
        weir_pipeline *p = start_stalled(&s, &chk, all_modes[k]);
        wait_until(&s.stalled);
        weir_pipeline_destroy(p); /* cancels and joins: returns once the source polls */
        cr_assert(atomic_load(&s.returned));
        stall_deinit(&s);
    }
}

/*
 * A source blocked in a wait of its own (no timeout, like a read on a silent
 * socket) and without an interrupt function cannot be woken by the pipeline:
 * cancel takes effect when that wait returns. Pinned here; the tests below
 * give the source an interrupt function (weir_term_on_interrupt).
 */
Test(terms_stall, a_source_blocked_in_its_own_wait_is_ended_when_the_wait_returns)
{
    stall s;
    stall_init(&s, 10, false);
    seq_check chk;
    weir_pipeline *p = start_stalled(&s, &chk, WEIR_EXEC_POOL);
    wait_until(&s.stalled);
    cr_assert_eq(weir_pipeline_cancel(p), 0);
    cr_assert_eq(weir_pipeline_join_for(p, 200 * 1000 * 1000), -ETIMEDOUT,
                 "nothing can wake the source's own wait");
    cr_assert(!atomic_load(&s.returned));
    /* The wait returns (the socket delivers or closes): the source looks at
     * weir_emit_stopping() and returns; the pipeline ends. */
    pthread_mutex_lock(&s.mu);
    pthread_cond_signal(&s.cv);
    pthread_mutex_unlock(&s.mu);
    cr_assert_eq(weir_pipeline_join_for(p, 5 * SEC_NS), -ECANCELED);
    weir_pipeline_destroy(p);
    stall_deinit(&s);
}

/* A source reading a pipe that never delivers (the silent socket); its
 * interrupt function closes the pipe's write end, so the read sees EOF. */
typedef struct reader {
    int fds[2];
    int64_t first; /* records emitted before the read */
    _Atomic int interrupts;
    _Atomic bool blocked;
    _Atomic bool returned;
} reader;

static int reader_fn(void *state, weir_emit *e)
{
    reader *r = state;
    for (int64_t i = 0; i < r->first; i++) {
        int rc = weir_emit_record(e, &i);
        if (rc < 0)
            return rc;
    }
    atomic_store(&r->blocked, true);
    char c;
    ssize_t n;
    do
        n = read(r->fds[0], &c, 1); /* blocks: nobody writes */
    while (n < 0 && errno == EINTR);
    atomic_store(&r->returned, true);
    if (weir_emit_stopping(e))
        return -ECANCELED;
    return n == 0 ? 0 : -EIO;
}

static void reader_interrupt(void *state)
{
    reader *r = state;
    atomic_fetch_add(&r->interrupts, 1);
    close(r->fds[1]); /* once: weir calls it once per run */
}

static weir_pipeline *start_reader(reader *r, seq_check *chk, weir_exec_mode m)
{
    cr_assert_eq(pipe(r->fds), 0);
    atomic_init(&r->interrupts, 0);
    atomic_init(&r->blocked, false);
    atomic_init(&r->returned, false);
    weir_term *src =
        weir_term_on_interrupt(weir_blocking_source("reader", 8, reader_fn, r), reader_interrupt);
    cr_assert_not_null(src, "%s", weir_last_error());
    weir_term *t = WEIR_SEQ(src, weir_id("id", 8), seq_sink("out", chk, 0));
    weir_pipeline_config c = cfg_of(m, 16, 64);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_start(p), 0);
    wait_until(&r->blocked);
    return p;
}

Test(terms_stall, cancel_wakes_a_source_blocked_in_its_own_read_through_its_interrupt_function)
{
    for (int k = 0; k < 3; k++) {
        const char *m = weir_exec_mode_name(all_modes[k]);
        reader r = {.first = 100};
        seq_check chk;
        weir_pipeline *p = start_reader(&r, &chk, all_modes[k]);
        cr_assert_eq(atomic_load(&r.interrupts), 0, "%s: not before a stop or cancel", m);
        cr_assert_eq(weir_pipeline_cancel(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, 5 * SEC_NS), -ECANCELED, "%s: %s", m,
                     weir_pipeline_error(p));
        cr_assert(atomic_load(&r.returned));
        cr_assert_eq(weir_pipeline_cancel(p), 0);
        cr_assert_eq(atomic_load(&r.interrupts), 1, "%s: called once", m);
        weir_pipeline_destroy(p);
        close(r.fds[0]);
    }
}

Test(terms_stall, stop_wakes_a_blocked_source_and_keeps_what_it_emitted)
{
    for (int k = 0; k < 3; k++) {
        const char *m = weir_exec_mode_name(all_modes[k]);
        reader r = {.first = 1000};
        seq_check chk;
        weir_pipeline *p = start_reader(&r, &chk, all_modes[k]);
        cr_assert_eq(weir_pipeline_stop(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, 5 * SEC_NS), 0, "%s: %s", m,
                     weir_pipeline_error(p));
        cr_assert_eq(chk.count, 1000, "%s: every record emitted before the stop arrives", m);
        cr_assert_eq(chk.bad, 0);
        cr_assert_eq(atomic_load(&r.interrupts), 1);
        weir_pipeline_destroy(p);
        close(r.fds[0]);
    }
}

Test(terms_stall, destroy_wakes_a_blocked_source)
{
    for (int k = 0; k < 3; k++) {
        reader r = {.first = 10};
        seq_check chk;
        weir_pipeline *p = start_reader(&r, &chk, all_modes[k]);
        weir_pipeline_destroy(p); /* cancels, interrupts, joins */
        cr_assert(atomic_load(&r.returned));
        cr_assert_eq(atomic_load(&r.interrupts), 1);
        close(r.fds[0]);
    }
}

/* The interrupt function is called when a term fails elsewhere, too. */
static int fail_at_5(void *state, const void *in)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    return v == 5 ? -EIO : 0;
}

Test(terms_stall, a_failing_term_wakes_a_blocked_source)
{
    for (int k = 0; k < 3; k++) {
        reader r = {.first = 10};
        cr_assert_eq(pipe(r.fds), 0);
        weir_term *src = weir_term_on_interrupt(weir_blocking_source("reader", 8, reader_fn, &r),
                                                reader_interrupt);
        weir_term *t = weir_seq2(src, weir_sink("fails", 8, fail_at_5, NULL));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 64);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_start(p), 0);
        cr_assert_eq(weir_pipeline_join_for(p, 5 * SEC_NS), -EIO, "%s",
                     weir_pipeline_error(p));
        cr_assert(strstr(weir_pipeline_error(p), "fails") != NULL, "%s", weir_pipeline_error(p));
        cr_assert_eq(atomic_load(&r.interrupts), 1);
        weir_pipeline_destroy(p);
        close(r.fds[0]);
    }
}

Test(terms_stall, on_interrupt_refuses_what_is_not_a_free_blocking_source)
{
    cr_assert_null(weir_term_on_interrupt(NULL, reader_interrupt));
    weir_term *f = weir_filter("f", 8, int64_even, NULL);
    cr_assert_null(weir_term_on_interrupt(f, reader_interrupt), "a filter has no wait to wake");
    cr_assert(strstr(weir_last_error(), "not a blocking source") != NULL, "%s",
              weir_last_error());
    reader r = {.first = 0};
    weir_term *src = weir_blocking_source("reader", 8, reader_fn, &r);
    weir_term *t = weir_seq2(src, weir_stop());
    cr_assert_null(weir_term_on_interrupt(src, reader_interrupt), "composed already");
    cr_assert(strstr(weir_last_error(), "already composed") != NULL, "%s", weir_last_error());
    weir_term_destroy(t);
}

/* A silence that ends before anyone reads the statistics is counted by the
 * producer when it publishes again. */
typedef struct pauser {
    unsigned pause_ms;
} pauser;

static int pause_fn(void *state, weir_emit *e)
{
    pauser *ps = state;
    for (int64_t i = 0; i < 20; i++) {
        if (i == 10)
            usleep(ps->pause_ms * 1000u);
        int r = weir_emit_record(e, &i);
        if (r < 0)
            return r;
    }
    return 0;
}

Test(terms_stall, a_silence_that_ended_is_counted_once_by_the_producer)
{
    for (int k = 0; k < 3; k++) {
        const char *m = weir_exec_mode_name(all_modes[k]);
        pauser ps = {.pause_ms = 400};
        seq_check chk;
        weir_term *t = weir_seq2(weir_blocking_source("pauses", 8, pause_fn, &ps),
                                 seq_sink("out", &chk, 0));
        weir_pipeline_config c = cfg_of(all_modes[k], 16, 64);
        c.starvation_ns = 100 * 1000 * 1000;
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        cr_assert_eq(weir_pipeline_run(p), 0, "%s: %s", m, weir_pipeline_error(p));
        cr_assert_eq(chk.count, 20);
        weir_stream_stats ss;
        cr_assert_eq(weir_pipeline_stream_stats(p, 0, &ss), 0);
        cr_assert_geq(ss.stalls, 1, "%s: the 400 ms pause is a silence", m);
        cr_assert(!ss.stalled);
        weir_pipeline_stats pst;
        weir_pipeline_stats_get(p, &pst);
        cr_assert_eq(pst.input_starvations, ss.stalls, "%s", m);
        cr_assert_geq(pst.starvations, pst.input_starvations, "%s", m);
        weir_pipeline_destroy(p);
    }
}

/* A blocking source emitting batches much larger than the stream: it waits
 * for room in the middle of a batch. It counts the records of the batches
 * weir_emit_records() accepted. */
typedef struct batcher {
    int64_t accepted;
    int last;
} batcher;

static int batch_source(void *state, weir_emit *e)
{
    batcher *b = state;
    int64_t buf[300];
    for (;;) {
        for (int i = 0; i < 300; i++)
            buf[i] = b->accepted + i;
        int r = weir_emit_records(e, buf, 300);
        b->last = r;
        if (r < 0)
            return r;
        b->accepted += 300;
    }
}

static weir_pipeline *stop_target;
static int stop_at_50(void *state, const void *in)
{
    seq_check *s = state;
    seq_check_fn(s, in);
    if (s->count == 50)
        weir_pipeline_stop(stop_target); /* the source is blocked mid-batch */
    return 0;
}

/*
 * Regression: a stop that arrived while weir_emit_records() waited for room
 * in the middle of a batch made it return -ECANCELED with part of the batch
 * already delivered. -ECANCELED says "not emitted", so the source could not
 * know what it had produced, and the records it believed unsent reached the
 * sinks. Under a stop a batch is now all or nothing: the rest goes through
 * (the consumers still drain), and the next emit returns -ECANCELED.
 */
Test(terms_stall, a_stop_in_the_middle_of_a_blocking_batch_lets_the_whole_batch_through)
{
    for (int k = 0; k < 3; k++) {
        batcher b = {0, 0};
        seq_check chk = {0};
        weir_term *t = weir_seq2(weir_blocking_source("batches", 8, batch_source, &b),
                                 weir_sink("out", 8, stop_at_50, &chk));
        weir_pipeline_config c = cfg_of(all_modes[k], 4, 16);
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &stop_target), 0);
        cr_assert_eq(weir_pipeline_run(stop_target), 0, "%s", weir_pipeline_error(stop_target));
        cr_assert_eq(b.last, -ECANCELED);
        cr_assert_eq(b.accepted, 300, "mode %s", weir_exec_mode_name(all_modes[k]));
        cr_assert_eq((int64_t)chk.count, b.accepted,
                     "mode %s: the sink got %llu records, the source emitted %lld",
                     weir_exec_mode_name(all_modes[k]), (unsigned long long)chk.count,
                     (long long)b.accepted);
        cr_assert_eq(chk.bad, 0);
        weir_pipeline_destroy(stop_target);
    }
}

/* ------------------------------------------------------- starved stages */

/* A pull source that blocks its worker (a misuse: callbacks must not block)
 * until released, to take every worker away from the runtime on purpose. */
typedef struct hog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool release;
    _Atomic int *inside;
} hog;

static int hog_pull(void *state, void *out, size_t max, bool *end)
{
    hog *h = state;
    (void)out;
    (void)max;
    atomic_fetch_add(h->inside, 1);
    pthread_mutex_lock(&h->mu);
    while (!h->release)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    *end = true;
    return 0;
}

static _Atomic int starve_calls;
static void on_starve(void *arg, const char *term, uint64_t ns)
{
    (void)arg;
    (void)ns;
    if (strcmp(term, "late") == 0)
        atomic_fetch_add(&starve_calls, 1);
}

Test(terms_stall, a_stage_waiting_for_a_worker_shows_as_starving_while_it_waits)
{
    /* Both workers blocked in a callback: a stage made runnable now cannot
     * run. Before it runs, the counter must already show it. */
    unsigned nw = weir_runtime_workers(rt);
    cr_assert_eq(nw, 2);
    _Atomic int inside = 0;
    hog h = {.release = false, .inside = &inside};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    weir_pipeline *hp[2];
    for (unsigned i = 0; i < nw; i++) {
        weir_term *t = weir_seq2(weir_source("hog", 8, hog_pull, &h), weir_stop());
        weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &hp[i]), 0);
        cr_assert_eq(weir_pipeline_start(hp[i]), 0);
    }
    for (int i = 0; i < 10000 && atomic_load(&inside) < (int)nw; i++)
        usleep(1000);
    cr_assert_eq(atomic_load(&inside), (int)nw, "both workers blocked");

    seq_check chk;
    weir_term *t = weir_seq2(weir_range_source("late", 0, 1000, 1), seq_sink("out", &chk, 0));
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    c.starvation_ns = 20 * 1000 * 1000;
    c.on_starvation = on_starve;
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
    cr_assert_eq(weir_pipeline_start(p), 0);
    weir_pipeline_stats ps = {0};
    for (int i = 0; i < 5000 && ps.starvations == 0; i++) {
        usleep(1000);
        weir_pipeline_stats_get(p, &ps);
    }
    weir_term_stats ts = term_stats(p, "late");
    int calls = atomic_load(&starve_calls);
    /* Release the workers before asserting: a failed assertion must not
     * leave them blocked (the runtime's teardown would wait for them). */
    pthread_mutex_lock(&h.mu);
    h.release = true;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    cr_assert_eq(ps.starvations, 1, "the waiting stage counts while it waits");
    cr_assert_eq(ts.starvations, 1);
    cr_assert_gt(ts.max_wait_ns, c.starvation_ns);
    cr_assert_eq(ts.activations, 0, "it has not run yet");
    cr_assert_eq(calls, 0, "the callback comes when it runs");
    cr_assert_eq(weir_pipeline_join_for(p, 10 * SEC_NS), 0);
    cr_assert_eq(chk.count, 1000);
    /* Once it ran, the wait is counted for real, once: the counter equals
     * the callback's calls (not one more for the wait seen in progress). */
    weir_pipeline_stats_get(p, &ps);
    cr_assert_geq(ps.starvations, 1);
    cr_assert_eq(ps.starvations, (uint64_t)atomic_load(&starve_calls));
    cr_assert_eq(term_stats(p, "late").starvations, ps.starvations);
    weir_pipeline_destroy(p);
    for (unsigned i = 0; i < nw; i++) {
        cr_assert_eq(weir_pipeline_join_for(hp[i], 10 * SEC_NS), 0);
        weir_pipeline_destroy(hp[i]);
    }
    pthread_mutex_destroy(&h.mu);
    pthread_cond_destroy(&h.cv);
}

/* A pull source fused to its sink never waits: its stage runs a time slice,
 * resubmits itself, and runs again. */
static int nop_sink(void *state, const void *in)
{
    (void)state;
    (void)in;
    return 0;
}

/*
 * Every worker busy with such a stage (an endless `counter * sink`): other
 * pipelines, and other stages of the same pipeline, must still get to run.
 *
 * A worker takes its own deque newest-first, so a job that keeps
 * resubmitting itself would starve injected jobs (other pipelines) and the
 * older jobs of its deque (other stages); runtime/worker.c find_work() looks
 * at the injection queue and at its oldest job every 32 passes (fairness).
 * This test pins that.
 */
Test(terms_stall, other_pipelines_run_beside_endless_stages_on_every_worker)
{
    unsigned nw = weir_runtime_workers(rt);
    cr_assert_leq(nw, 8);
    weir_pipeline *hp[8];
    for (unsigned i = 0; i < nw; i++) {
        weir_term *t =
            weir_seq2(weir_counter_source("endless", 0), weir_sink("nop", 8, nop_sink, NULL));
        weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &hp[i]), 0);
        cr_assert_eq(weir_pipeline_start(hp[i]), 0);
    }
    usleep(20 * 1000);
    seq_check chk;
    weir_term *t = weir_seq2(weir_range_source("small", 0, 1000, 1), seq_sink("out", &chk, 0));
    weir_pipeline_config c = cfg_of(WEIR_EXEC_POOL, 0, 0);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
    cr_assert_eq(weir_pipeline_start(p), 0);
    int r = weir_pipeline_join_for(p, 10 * SEC_NS);
    for (unsigned i = 0; i < nw; i++) {
        weir_pipeline_stop(hp[i]);
        weir_pipeline_join(hp[i]);
        weir_pipeline_destroy(hp[i]);
    }
    cr_assert_eq(r, 0, "starved beside %u endless pipelines", nw);
    cr_assert_eq(chk.count, 1000);
    weir_pipeline_destroy(p);

    /* The same within one pipeline: an endless fused stage per worker and a
     * small branch. */
    weir_term *br[9];
    for (unsigned i = 0; i < nw; i++) {
        char name[32];
        snprintf(name, sizeof name, "endless%u", i);
        char sname[32];
        snprintf(sname, sizeof sname, "nop%u", i);
        br[i] = weir_seq2(weir_counter_source(name, 0), weir_sink(sname, 8, nop_sink, NULL));
    }
    br[nw] = weir_seq2(weir_range_source("small", 0, 1000, 1), seq_sink("out", &chk, 0));
    cr_assert_eq(weir_pipeline_create(rt, weir_par(nw + 1, br), &c, &p), 0);
    cr_assert_eq(weir_pipeline_start(p), 0);
    weir_term_stats ts = {0};
    for (int i = 0; i < 10000 && ts.records_out < 1000; i++) {
        usleep(1000);
        ts = term_stats(p, "small");
    }
    weir_pipeline_stop(p);
    cr_assert_eq(weir_pipeline_join_for(p, 10 * SEC_NS), 0);
    cr_assert_eq(ts.records_out, 1000, "the small branch ran while the endless ones did");
    weir_pipeline_destroy(p);
}

/*
 * A deadlock of bounded streams: one source broadcast to a filter and an id
 * branch that meet again in a zip. With a small capacity the zip waits on the
 * filtered side while the full side holds the source back; nothing can ever
 * move. The pipeline notices that every stage waits and
 * fails with -EDEADLK instead of hanging; with room for every record the
 * same pipeline completes. In every mode: threads count as busy while awake
 * (terms/exec.c, "Deadlock watch").
 */
static bool dl_even(void *st, const void *in)
{
    (void)st;
    int64_t x;
    memcpy(&x, in, sizeof x);
    return x % 2 == 0;
}

static int dl_add(void *st, const void *const *in, size_t n, weir_emit *e)
{
    (void)st;
    (void)n;
    int64_t a, b;
    memcpy(&a, in[0], sizeof a);
    memcpy(&b, in[1], sizeof b);
    int64_t c = a + b;
    return weir_emit_record(e, &c);
}

static int dl_count(void *st, const void *in)
{
    (void)in;
    (*(long *)st)++;
    return 0;
}

static int run_zip_of_filtered_branches(weir_exec_mode mode, unsigned capacity, long *got,
                                        char *err, size_t errn)
{
    weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 1000, 1),
                            WEIR_PAR(weir_filter("even", 8, dl_even, NULL), weir_id("all", 8)),
                            weir_zip("pairs", 8, dl_add, NULL), weir_sink("count", 8, dl_count, got));
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = mode;
    c.capacity = capacity;
    weir_pipeline *p = NULL;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_start(p), 0);
    int r = weir_pipeline_join_for(p, 30ull * 1000000000ull);
    snprintf(err, errn, "%s", weir_pipeline_error(p));
    if (r == -ETIMEDOUT) {
        weir_pipeline_cancel(p);
        weir_pipeline_join(p);
    }
    weir_pipeline_destroy(p);
    return r;
}

Test(terms_stall, a_zip_of_branches_that_change_the_rate_fails_with_edeadlk_instead_of_hanging)
{
    for (int k = 0; k < 3; k++) {
        const char *m = weir_exec_mode_name(all_modes[k]);
        for (int rep = 0; rep < 5; rep++) {
            long got = 0;
            char err[512];
            int r = run_zip_of_filtered_branches(all_modes[k], 16, &got, err, sizeof err);
            cr_assert_eq(r, -EDEADLK, "%s: join returned %d (%s), expected -EDEADLK", m, r, err);
            cr_assert(strstr(err, "deadlocked") != NULL, "%s: message: %s", m, err);
            /* with room for every record it is a valid program and
             * completes: the zip pairs the 500 even numbers with the first
             * 500 records */
            got = 0;
            r = run_zip_of_filtered_branches(all_modes[k], 1024, &got, err, sizeof err);
            cr_assert_eq(r, 0, "%s: join returned %d (%s)", m, r, err);
            cr_assert_eq(got, 500, "%s", m);
        }
    }
}
