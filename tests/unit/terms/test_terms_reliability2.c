/*
 * Reliability, round two (issue 8): the term-layer items.
 *
 *   1. weir_file_lines on a FIFO nobody has opened for writing: the open
 *      used to block in open(2), where the interrupt's self-pipe does not
 *      reach, so stop, cancel and destroy hung in every mode. Now the path
 *      is opened non-blocking and the wait for the writer is the poll the
 *      interrupt wakes; a writer that comes late is read exactly.
 *   2. Signals caught without SA_RESTART (EINTR) while the source opens,
 *      reads and stops: the result is exact.
 *   5. weir_term_on_free on a built-in that frees its own state is refused
 *      (-EINVAL, NULL, the built-in destroyed): it used to replace weir's
 *      free function (a leak, seen under ASan) and hand the user's function
 *      weir's private state.
 *   7. weir_std_sample (n - 1, what weir_std always was) and
 *      weir_std_population (n, LogicSponge's Std, numpy's default).
 *
 * Rows T14–T17 of docs/reliability.md ("Term constructors").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(terms_reliability2, .init = rt_setup, .fini = rt_teardown, .timeout = 60);

#define MS_NS  1000000ull
#define SEC_NS 1000000000ull

/* ------------------------------------------------------------ FIFO helpers */

typedef struct fifo_dir {
    char dir[32];
    char path[64];
} fifo_dir;

static void fifo_make(fifo_dir *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/weir-r2-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/fifo", f->dir);
    cr_assert_eq(mkfifo(f->path, 0600), 0);
}

static void fifo_remove(fifo_dir *f)
{
    unlink(f->path);
    rmdir(f->dir);
}

/* Every write of the tests may be interrupted by the signal storm: retry
 * EINTR and short writes. @return 0 or -errno. */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

static int open_retry(const char *path, int flags)
{
    int fd;
    do
        fd = open(path, flags);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* The writer's end of a FIFO, once a reader has it open: O_NONBLOCK fails
 * with ENXIO while there is none, so a source that failed or never opened
 * gives -ENXIO after 5 s instead of hanging the test. The descriptor is
 * then made blocking for the writes. @return fd or -errno. */
static int open_writer(const char *path)
{
    for (int i = 0; i < 5000; i++) {
        int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
                int err = -errno;
                close(fd);
                return err;
            }
            return fd;
        }
        if (errno != ENXIO && errno != EINTR)
            return -errno;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -ENXIO;
}

/* Write lines "line <i>" for i in [0, n) to fd. @return 0 or -errno. */
static int write_lines(int fd, int n)
{
    char buf[4096];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, sizeof buf - len, "line %d\n", i);
        if (len > sizeof buf - 32 || i == n - 1) {
            int r = write_all(fd, buf, len);
            if (r < 0)
                return r;
            len = 0;
        }
    }
    return 0;
}

/* Lines 1..n, each "line <number - 1>", numbered, in order. */
static void check_lines(const weir_collector *out, size_t n, const char *what)
{
    cr_assert_eq(out->count, n, "%s: %zu lines, expected %zu", what, out->count, n);
    const weir_line *l = out->data;
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "line %zu", i);
        cr_assert_eq(l[i].number, i + 1, "%s: line %zu numbered %llu", what, i,
                     (unsigned long long)l[i].number);
        cr_assert_str_eq(l[i].text, want, "%s: line %zu", what, i);
    }
}

/* Every 1000th line sleeps 1 ms: the source spends the run blocked on a
 * full stream too, where the storm's signals reach it in weir's waits. */
static void slow_line(void *state, const void *in, void *out)
{
    (void)state;
    const weir_line *l = in;
    if (l->number % 1000 == 0) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL); /* a signal may cut it short: harmless */
    }
    memcpy(out, in, sizeof *l);
}

static weir_pipeline *start_lines_slow(const char *path, weir_exec_mode m, weir_collector *out,
                                       bool slow)
{
    cr_assert_eq(weir_collector_init(out, sizeof(weir_line)), 0);
    weir_term *t;
    if (slow)
        t = WEIR_SEQ(weir_file_lines_fixed("lines", path),
                     weir_map("slow", sizeof(weir_line), sizeof(weir_line), slow_line, NULL),
                     weir_collect("out", out));
    else
        t = weir_seq2(weir_file_lines_fixed("lines", path), weir_collect("out", out));
    weir_pipeline_config c = cfg_of(m, 0, 0);
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_last_error());
    cr_assert_eq(weir_pipeline_start(p), 0);
    return p;
}

static weir_pipeline *start_lines(const char *path, weir_exec_mode m, weir_collector *out)
{
    return start_lines_slow(path, m, out, false);
}

/* --------------------------------------------- 1. a FIFO without a writer */

/* destroy on its own thread, so that a hang fails the test with a message
 * instead of the suite's timeout. */
typedef struct destroyer {
    weir_pipeline *p;
    weir_latch done;
} destroyer;

static void *destroy_fn(void *arg)
{
    destroyer *d = arg;
    weir_pipeline_destroy(d->p);
    weir_latch_set(&d->done);
    return NULL;
}

static void destroy_within(weir_pipeline *p, uint64_t ns, const char *what)
{
    destroyer d = {.p = p};
    weir_latch_init(&d.done);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, destroy_fn, &d), 0);
    bool ok = weir_latch_wait_for(&d.done, ns);
    cr_assert(ok, "%s: weir_pipeline_destroy did not return", what);
    pthread_join(th, NULL);
}

/* T14: stop, cancel and destroy each end a source still waiting for a FIFO's
 * first writer, in every mode. The join_for before them shows the source is
 * waiting (no writer, no line, no end). */
Test(terms_reliability2, file_lines_on_a_fifo_without_writer_ends_on_stop_cancel_and_destroy)
{
    fifo_dir f;
    fifo_make(&f);
    for (int k = 0; k < 3; k++) {
        const char *mode = weir_exec_mode_name(all_modes[k]);
        for (int how = 0; how < 3; how++) { /* stop, cancel, destroy */
            weir_collector out;
            weir_pipeline *p = start_lines(f.path, all_modes[k], &out);
            cr_assert_eq(weir_pipeline_join_for(p, 50 * MS_NS), -ETIMEDOUT,
                         "mode %s: a FIFO without a writer has no end", mode);
            if (how == 2) {
                destroy_within(p, 3 * SEC_NS, mode); /* cancels, interrupts, joins */
            } else {
                cr_assert_eq(how == 0 ? weir_pipeline_stop(p) : weir_pipeline_cancel(p), 0);
                int r = weir_pipeline_join_for(p, 3 * SEC_NS);
                cr_assert_eq(r, how == 0 ? 0 : -ECANCELED, "mode %s, %s: join_for returned %d (%s)",
                             mode, how == 0 ? "stop" : "cancel", r, weir_pipeline_error(p));
                destroy_within(p, 3 * SEC_NS, mode);
            }
            cr_assert_eq(out.count, 0);
            weir_collector_deinit(&out);
        }
    }
    fifo_remove(&f);
}

/* T14: the wait for the writer is not an end of file (a non-blocking read of
 * a FIFO without a writer returns 0): a writer that connects late is read
 * from its first line, the end is when it closes, and a writer that
 * connects and leaves without writing gives an empty stream. */
Test(terms_reliability2, file_lines_reads_a_fifo_writer_that_connects_late_exactly)
{
    fifo_dir f;
    fifo_make(&f);
    for (int k = 0; k < 3; k++) {
        const char *mode = weir_exec_mode_name(all_modes[k]);
        for (int n = 0; n <= 20000; n += 20000) {
            weir_collector out;
            weir_pipeline *p = start_lines(f.path, all_modes[k], &out);
            /* Long enough for the source to have opened and polled. */
            cr_assert_eq(weir_pipeline_join_for(p, 100 * MS_NS), -ETIMEDOUT, "mode %s", mode);
            /* The source's non-blocking open makes it a reader already. */
            int w = open_writer(f.path);
            cr_assert_geq(w, 0, "mode %s: open for writing: %s (%s)", mode, strerror(-w),
                          weir_pipeline_error(p));
            cr_assert_eq(write_lines(w, n), 0);
            close(w);
            int r = weir_pipeline_join_for(p, 10 * SEC_NS);
            cr_assert_eq(r, 0, "mode %s, %d lines: join_for returned %d (%s)", mode, n, r,
                         weir_pipeline_error(p));
            check_lines(&out, (size_t)n, mode);
            weir_pipeline_destroy(p);
            weir_collector_deinit(&out);
        }
    }
    fifo_remove(&f);
}

/* ------------------------------------------------------ 2. a signal storm */

/* A no-op handler installed WITHOUT SA_RESTART: a blocking system call it
 * interrupts fails with EINTR instead of being restarted. */
static void on_usr1(int sig)
{
    (void)sig;
}

typedef struct storm {
    pthread_t th;
    _Atomic bool run;
    _Atomic uint64_t sent; /* signals delivered to some thread */
    pid_t self;            /* the storm's own thread, never signalled */
} storm;

/* Every ~200 µs, SIGUSR1 to every other thread of the process (listed from
 * /proc/self/task each round, so the source's thread, stage threads and
 * workers started later are hit too). */
static void *storm_fn(void *arg)
{
    storm *s = arg;
    s->self = (pid_t)syscall(SYS_gettid);
    pid_t pid = getpid();
    while (atomic_load(&s->run)) {
        DIR *d = opendir("/proc/self/task");
        if (d) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                pid_t tid = (pid_t)atoi(de->d_name);
                if (tid > 0 && tid != s->self && syscall(SYS_tgkill, pid, tid, SIGUSR1) == 0)
                    atomic_fetch_add(&s->sent, 1);
            }
            closedir(d);
        }
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void storm_start(storm *s)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the point of the test */
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    atomic_init(&s->run, true);
    atomic_init(&s->sent, 0);
    cr_assert_eq(pthread_create(&s->th, NULL, storm_fn, s), 0);
}

static uint64_t storm_stop(storm *s)
{
    atomic_store(&s->run, false);
    pthread_join(s->th, NULL);
    return atomic_load(&s->sent);
}

/* The test's own waits: sleep in slices that signals may cut short. */
static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* T15: under the storm, in every mode: a regular file read to its end; a
 * FIFO whose writer connects late; a FIFO whose writer stays open, stopped
 * after its lines arrived (stop drains: exactly those lines, join 0). No
 * assertion runs while the storm blows (Criterion's own calls are not
 * written for EINTR): results are gathered and checked after. */
Test(terms_reliability2, file_lines_is_exact_under_a_storm_of_signals_without_sa_restart)
{
    enum { N = 20000 };
    fifo_dir f;
    fifo_make(&f);
    char file[80];
    snprintf(file, sizeof file, "%s/file", f.dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write_lines(fd, N), 0);
    close(fd);

    for (int k = 0; k < 3; k++) {
        const char *mode = weir_exec_mode_name(all_modes[k]);
        weir_collector out[3];
        int joined[3], stopped[3] = {0, 0, 0}, wr[3] = {0, 0, 0};
        uint64_t sent[3];
        for (int how = 0; how < 3; how++) {
            storm s;
            storm_start(&s);
            /* The storm is blowing before the source opens (a few rounds
             * sent: the thread may take a while to get a core). */
            for (int i = 0; i < 5000 && atomic_load(&s.sent) < 20; i++)
                sleep_ms(1);
            uint64_t before = atomic_load(&s.sent);
            weir_pipeline *p =
                start_lines_slow(how == 0 ? file : f.path, all_modes[k], &out[how], true);
            int w = -1;
            if (how == 1) {
                sleep_ms(20); /* the source waits for the writer meanwhile */
                w = open_writer(f.path);
                wr[how] = w < 0 ? w : write_lines(w, N);
                if (w >= 0)
                    close(w);
            } else if (how == 2) {
                /* O_RDWR never waits for a reader and keeps a writer on the
                 * FIFO, so the source only ends by the stop. */
                w = open_retry(f.path, O_RDWR | O_CLOEXEC);
                wr[how] = w < 0 ? -errno : write_lines(w, N);
                for (int i = 0; i < 10000 && out[how].count < N; i++)
                    sleep_ms(1);
                sleep_ms(20); /* signals while the source waits in poll */
                stopped[how] = weir_pipeline_stop(p);
            }
            joined[how] = weir_pipeline_join_for(p, 20 * SEC_NS);
            sent[how] = atomic_load(&s.sent) - before; /* during the run */
            weir_pipeline_destroy(p);
            if (how == 2 && w >= 0)
                close(w);
            storm_stop(&s);
        }
        static const char *what[3] = {"regular file", "FIFO, late writer", "FIFO, stop"};
        for (int how = 0; how < 3; how++) {
            cr_assert_eq(joined[how], 0, "mode %s, %s: join returned %d", mode, what[how],
                         joined[how]);
            cr_assert_eq(wr[how], 0, "mode %s, %s: the test's writer failed: %d", mode, what[how],
                         wr[how]);
            cr_assert_eq(stopped[how], 0, "mode %s, %s: stop", mode, what[how]);
            cr_assert_geq(sent[how], 10, "mode %s, %s: the storm sent %llu signals", mode,
                          what[how], (unsigned long long)sent[how]);
            check_lines(&out[how], N, what[how]);
            weir_collector_deinit(&out[how]);
        }
    }
    unlink(file);
    fifo_remove(&f);
}

/* ------------------------------------- 5. weir_term_on_free on a built-in */

static int user_frees;
static void *user_freed_state;
static void user_free(void *state)
{
    user_frees++;
    user_freed_state = state;
}

static int other_frees;
static void other_free(void *state)
{
    (void)state;
    other_frees++;
}

static void refused(weir_term *t, const char *kind)
{
    user_frees = 0;
    weir_term *r = weir_term_on_free(t, user_free);
    cr_assert_null(r, "%s: weir_term_on_free accepted", kind);
    const char *m = weir_last_error();
    cr_assert(strstr(m, "weir_term_on_free: ") && strstr(m, kind) &&
                  strstr(m, "frees its own state"),
              "%s: %s", kind, m);
    /* The built-in was destroyed with weir's own free function (ASan's leak
     * check sees its state otherwise); the user's never ran. */
    cr_assert_eq(user_frees, 0, "%s: the user's function got weir's state", kind);
}

/* T16: every built-in that allocates its state. */
Test(terms_reliability2, term_on_free_on_a_builtin_that_frees_its_state_is_refused)
{
    static const double xs[2] = {1, 2};
    refused(weir_add_index("idx", 8), "add index 'idx'");
    refused(weir_print("pr", 8, stderr, NULL, NULL), "print 'pr'");
    refused(weir_file_lines_fixed("fl", "/nonexistent"), "file lines 'fl'");
    refused(weir_array_source("arr", xs, 2, sizeof(double)), "array source 'arr'");
    refused(weir_range_source("rng", 0, 10, 1), "range source 'rng'");
    refused(weir_counter_source("cnt", 0), "counter source 'cnt'");
    refused(weir_running_stats("rs"), "running stats 'rs'");
    refused(weir_sum("sum"), "sum 'sum'");
    refused(weir_mean("mean"), "mean 'mean'");
    refused(weir_std("sd"), "std 'sd'");
    refused(weir_std_sample("sds"), "std sample 'sds'");
    refused(weir_std_population("sdp"), "std population 'sdp'");
    refused(weir_add_index(NULL, 8), "add index 'add index#");

    /* The NULL reaches weir_pipeline_create with the message. */
    weir_pipeline *p = NULL;
    cr_assert_eq(
        weir_pipeline_create(rt, weir_term_on_free(weir_add_index("idx", 8), user_free), NULL, &p),
        -EINVAL);
    cr_assert(strstr(weir_last_error(), "term is NULL") &&
                  strstr(weir_last_error(), "weir_term_on_free: add index 'idx'"),
              "%s", weir_last_error());
    cr_assert_null(p);
    cr_assert_eq(user_frees, 0);
}

/* T16: a composed built-in is refused without being freed (its tree owns
 * it: destroying the tree frees it once, ASan would see a double free). */
Test(terms_reliability2, term_on_free_on_a_composed_builtin_frees_nothing)
{
    weir_term *idx = weir_add_index("idx", 8);
    weir_term *t =
        WEIR_SEQ(weir_range_source("src", 0, 10, 1), idx, weir_sink("k", 16, count_fn, NULL));
    cr_assert_not_null(t);
    user_frees = 0;
    cr_assert_null(weir_term_on_free(idx, user_free));
    cr_assert(strstr(weir_last_error(), "add index 'idx' is a built-in"), "%s", weir_last_error());
    weir_term_destroy(t);
    cr_assert_eq(user_frees, 0);
}

/* T16: what stays accepted. A user's term: its state goes to the user's
 * function, once (a second call replaces the first). weir_collect's state is
 * the caller's collector and weir_id has none: weir frees nothing there, so
 * the function is accepted and gets the collector, or NULL. */
Test(terms_reliability2, term_on_free_stays_for_user_state_collect_and_id)
{
    static int mine;
    other_frees = 0;
    weir_collector c;
    weir_collector_init(&c, 8);
    struct {
        weir_term *t;
        void *want;
    } cases[3] = {
        {weir_term_on_free(weir_map("m", 8, 8, int64_twice, &mine), other_free), &mine},
        {weir_collect("c", &c), &c},
        {weir_id("i", 8), NULL},
    };
    for (int i = 0; i < 3; i++) {
        user_frees = 0;
        user_freed_state = (void *)1;
        cr_assert_not_null(cases[i].t);
        cr_assert_eq(weir_term_on_free(cases[i].t, user_free), cases[i].t, "%d: %s", i,
                     weir_last_error());
        weir_term_destroy(cases[i].t);
        cr_assert_eq(user_frees, 1, "case %d", i);
        cr_assert_eq(user_freed_state, cases[i].want, "case %d", i);
    }
    cr_assert_eq(other_frees, 0, "the second weir_term_on_free replaced the first");
    weir_collector_deinit(&c);
}

/* ------------------------------------------------ 7. the two deviations */

/* T17: the textbook data set: mean 5, squared deviations sum to 32; the
 * population deviation is sqrt(32 / 8) = 2 (LogicSponge's Std, numpy.std),
 * the sample one sqrt(32 / 7) = 2.138 (weir_std, weir_std_sample). */
Test(terms_reliability2, std_sample_and_std_population_on_the_textbook_data_set)
{
    static const double xs[8] = {2, 4, 4, 4, 5, 5, 7, 9};
    const double sample = sqrt(32.0 / 7.0), population = 2.0;
    for (int k = 0; k < 3; k++) {
        weir_collector all, old, smp, pop;
        weir_collector_init(&all, sizeof(weir_running));
        weir_collector_init(&old, 8);
        weir_collector_init(&smp, 8);
        weir_collector_init(&pop, 8);
        weir_term *t = weir_seq2(
            weir_array_source("x", xs, 8, sizeof(double)),
            WEIR_PAR(weir_seq2(weir_running_stats("stats"), weir_collect(NULL, &all)),
                     weir_seq2(weir_std("std"), weir_collect(NULL, &old)),
                     weir_seq2(weir_std_sample("sample"), weir_collect(NULL, &smp)),
                     weir_seq2(weir_std_population("population"), weir_collect(NULL, &pop))));
        weir_pipeline *p;
        cr_assert_eq(run_mode(t, all_modes[k], &p), 0);
        /* The kinds in the statistics say which deviation a term computes. */
        weir_term_stats ts;
        cr_assert_eq(
            weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, "sample"), &ts), 0);
        cr_assert_str_eq(ts.kind, "std sample");
        cr_assert_eq(
            weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, "population"), &ts),
            0);
        cr_assert_str_eq(ts.kind, "std population");
        weir_pipeline_destroy(p);
        cr_assert_eq(pop.count, 8);
        cr_assert_eq(smp.count, 8);
        cr_assert_eq(old.count, 8);
        const double *dp = pop.data, *ds = smp.data, *dd = old.data;
        cr_assert_float_eq(dp[7], population, 1e-12);
        cr_assert_float_eq(ds[7], sample, 1e-12);
        cr_assert_float_eq(ds[7], 2.138089935299395, 1e-12);
        for (int i = 0; i < 8; i++)
            cr_assert_eq(dd[i], ds[i], "weir_std is weir_std_sample (record %d)", i);
        /* One value: both 0 (the sample one by convention, n - 1 = 0). */
        cr_assert_float_eq(dp[0], 0.0, 1e-15);
        cr_assert_float_eq(ds[0], 0.0, 1e-15);
        /* Two values 2, 4: population 1, sample sqrt(2). */
        cr_assert_float_eq(dp[1], 1.0, 1e-12);
        cr_assert_float_eq(ds[1], sqrt(2.0), 1e-12);
        /* weir_running.std is the sample deviation; the header's formula
         * turns it into the population one. */
        const weir_running *r = all.data;
        cr_assert_float_eq(r[7].std, sample, 1e-12);
        cr_assert_float_eq(r[7].std * sqrt((double)(r[7].n - 1) / (double)r[7].n), population,
                           1e-12);
        weir_collector_deinit(&all);
        weir_collector_deinit(&old);
        weir_collector_deinit(&smp);
        weir_collector_deinit(&pop);
    }
}
