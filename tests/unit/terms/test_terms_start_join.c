/*
 * Term layer: weir_pipeline_start() concurrent with weir_pipeline_join() /
 * join_for() on other threads (issue 8, item 3). start used to publish the
 * started phase before its threads existed and to record each thread for
 * pthread_join() only after pthread_create() returned: a pipeline whose
 * stages finished at once let a concurrent join see the end first, skip the
 * last thread's pthread_join(), and destroy skipped it too (a data race on
 * the flag and a leaked thread, both reported by ThreadSanitizer).
 *
 * A join that runs before the start has published the pipeline returns
 * -EINVAL (not started): the joiners retry until they get something else,
 * which must be the run's result. Leaked threads keep their stacks mapped,
 * so the number of mappings must stay flat over the rounds; under TSan a
 * leak or the race is reported on its own.
 */
#include <pthread.h>
#include <sched.h>

#include "helpers.h"

TestSuite(terms_start_join, .init = rt_setup, .fini = rt_teardown, .timeout = 60);

#define JOIN_LIMIT_NS (20ull * 1000 * 1000 * 1000)

typedef struct joiner {
    weir_pipeline *p;
    bool timed; /* join_for instead of join */
    _Atomic bool go;
    int result;
    unsigned not_started; /* -EINVAL answers before the start published */
} joiner;

static void *join_thread(void *arg)
{
    joiner *j = arg;
    while (!atomic_load(&j->go))
        sched_yield();
    for (;;) {
        int r = j->timed ? weir_pipeline_join_for(j->p, JOIN_LIMIT_NS) : weir_pipeline_join(j->p);
        if (r != -EINVAL) {
            j->result = r;
            return NULL;
        }
        j->not_started++;
        sched_yield();
    }
}

static long mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* One round: a pipeline whose stages finish at once (a short source), started
 * on this thread while two others join it (join and join_for). */
static void one_round(weir_exec_mode m, int64_t n, unsigned *early)
{
    _Atomic uint64_t got = 0;
    weir_term *t = WEIR_SEQ(weir_range_source("src", 0, n, 1), weir_id("a", 8),
                            weir_map("b", 8, 8, int64_twice, NULL), count_sink("sink", 8, &got));
    weir_pipeline_config c = cfg_of(m, 4, 8);
    c.thread_stack = 64 * 1024;
    weir_pipeline *p;
    cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_terms_last_error());
    joiner j[2] = {{.p = p, .timed = false}, {.p = p, .timed = true}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        cr_assert_eq(pthread_create(&th[k], NULL, join_thread, &j[k]), 0);
    atomic_store(&j[0].go, true);
    atomic_store(&j[1].go, true);
    if (n & 1)
        sched_yield(); /* let the joiners in first sometimes */
    int r = weir_pipeline_start(p);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    cr_assert_eq(r, 0, "start (%s): %d %s", weir_exec_mode_name(m), r, weir_terms_last_error());
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(j[k].result, 0, "%s (%s): %d %s", j[k].timed ? "join_for" : "join",
                     weir_exec_mode_name(m), j[k].result, weir_pipeline_error(p));
        *early += j[k].not_started;
    }
    cr_assert_eq(atomic_load(&got), (uint64_t)n, "%s: %llu records, want %lld",
                 weir_exec_mode_name(m), (unsigned long long)atomic_load(&got), (long long)n);
    cr_assert_eq(weir_pipeline_join(p), 0, "joining again returns the same");
    weir_pipeline_destroy(p);
}

Test(terms_start_join, a_join_concurrent_with_start_joins_every_thread_of_the_start)
{
    static const weir_exec_mode ms[2] = {WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};
    unsigned early = 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < 20; i++)
            one_round(ms[k], i % 3, &early); /* warm-up: stack cache, arenas */
    long before = mappings();
    cr_assert_gt(before, 0);
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < 300; i++)
            one_round(ms[k], i % 5, &early);
    long after = mappings();
    /* 600 rounds of 3-4 threads: a leak in 1 % of them would add 18+. Under
     * AddressSanitizer the allocator maps regions as it goes (seen: +9 in a
     * CI run), so there the count is only reported; stress_api under
     * ThreadSanitizer reports a leaked thread itself. */
#if defined(__SANITIZE_ADDRESS__)
    cr_log_info("mappings %ld -> %ld (not checked under AddressSanitizer)", before, after);
#else
    cr_assert_leq(after, before + 8, "mappings %ld -> %ld: thread stacks leaked?", before, after);
#endif
    cr_log_info("joins that came before the start: %u", early);
}

Test(terms_start_join, start_concurrent_with_join_in_pool_mode_and_with_no_thread)
{
    unsigned early = 0;
    for (int64_t i = 0; i < 200; i++)
        one_round(WEIR_EXEC_POOL, i % 4, &early);
}

typedef struct starter {
    weir_pipeline *p;
    _Atomic bool go;
    int result;
} starter;

static void *start_thread(void *arg)
{
    starter *s = arg;
    while (!atomic_load(&s->go))
        sched_yield();
    s->result = weir_pipeline_start(s->p);
    return NULL;
}

Test(terms_start_join, two_concurrent_starts_one_wins_the_other_gets_ealready)
{
    for (int i = 0; i < 100; i++) {
        _Atomic uint64_t got = 0;
        weir_term *t = WEIR_SEQ(weir_range_source("src", 0, 10, 1), count_sink("sink", 8, &got));
        weir_pipeline_config c = cfg_of(all_modes[i % 3], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        starter s[2] = {{.p = p}, {.p = p}};
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            cr_assert_eq(pthread_create(&th[k], NULL, start_thread, &s[k]), 0);
        atomic_store(&s[0].go, true);
        atomic_store(&s[1].go, true);
        for (int k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
        cr_assert((s[0].result == 0 && s[1].result == -EALREADY) ||
                      (s[1].result == 0 && s[0].result == -EALREADY),
                  "starts returned %d and %d", s[0].result, s[1].result);
        cr_assert_eq(weir_pipeline_join_for(p, JOIN_LIMIT_NS), 0);
        cr_assert_eq(atomic_load(&got), 10);
        weir_pipeline_destroy(p);
    }
}
