/* Parking: idle workers sleep (no CPU burnt), and every burst of work after
 * an idle period is picked up — no lost wake-up. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "scheduler.h"

static weir_runtime *make_rt(unsigned workers, unsigned spin)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.spin = spin;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    return rt;
}

/* Wait (bounded) until every worker is asleep. */
static bool all_parked(weir_runtime *rt, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (atomic_load(&rt->waiters) == rt->nworkers)
            return true;
        usleep(1000);
    }
    return false;
}

typedef struct burst_job {
    weir_job job;
    _Atomic long *left;
    weir_latch *done;
} burst_job;

static void burst_fn(weir_worker *w, weir_job *j)
{
    burst_job *b = (burst_job *)(void *)j;
    if (atomic_fetch_sub(b->left, 1) == 1)
        weir_latch_set(b->done);
}

static void storm(unsigned workers, unsigned spin, int rounds, int burst)
{
    weir_runtime *rt = make_rt(workers, spin);
    burst_job *jobs = calloc((size_t)burst, sizeof *jobs);
    for (int r = 0; r < rounds; r++) {
        if (r % 10 == 0)
            cr_assert(all_parked(rt, 5000), "workers did not park (round %d)", r);
        _Atomic long left = burst;
        weir_latch done;
        weir_latch_init(&done);
        for (int i = 0; i < burst; i++) {
            weir_job_init(&jobs[i].job, burst_fn, NULL, 0);
            jobs[i].left = &left;
            jobs[i].done = &done;
            cr_assert_eq(weir_submit(rt, &jobs[i].job), 0);
        }
        cr_assert(weir_latch_wait_for(&done, 10ull * 1000000000ull),
                  "lost wake-up: %ld of %d jobs still pending after 10 s (round %d)",
                  atomic_load(&left), burst, r);
    }
    weir_worker_stats st;
    weir_runtime_stats_total(rt, &st);
    cr_assert_gt(st.parks, 0);
    weir_runtime_destroy(rt);
    free(jobs);
}

Test(park, idle_then_single_job_never_lost_1_worker) { storm(1, 0, 300, 1); }
Test(park, idle_then_single_job_never_lost_2_workers) { storm(2, 0, 300, 1); }
Test(park, idle_then_burst_never_lost_2_workers) { storm(2, 16, 200, 64); }
Test(park, idle_then_burst_never_lost_4_workers) { storm(4, 16, 100, 256); }

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

Test(park, idle_runtime_sleeps_instead_of_spinning)
{
    weir_runtime *rt = make_rt(2, 4096);
    cr_assert(all_parked(rt, 5000));
    double c0 = cpu_seconds();
    usleep(500 * 1000);
    double used = cpu_seconds() - c0;
    /* a behavioural bound, not a performance target: one spinning worker
     * alone would burn 0.5 s here */
    cr_assert_lt(used, 0.2, "idle runtime used %.3f s of CPU in 0.5 s", used);
    weir_runtime_destroy(rt);
}

WEIR_TASK_1(long, fibp, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fibp, n - 1);
    long b = WEIR_CALL(fibp, n - 2);
    return WEIR_SYNC(fibp) + b;
}

Test(park, parked_workers_wake_for_fork_join_work)
{
    weir_runtime *rt = make_rt(2, 0);
    for (int r = 0; r < 50; r++) {
        cr_assert(all_parked(rt, 5000));
        weir_runtime_stats_reset(rt);
        cr_assert_eq(fibp_run(rt, 22), 17711);
    }
    weir_runtime_destroy(rt);
}
