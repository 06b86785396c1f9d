#define WEIR_COUNT_SPAWNS 1
/* Fork-join results: fib, nqueens and a deep spawn chain on 1..4 workers
 * (4 oversubscribes this 2-core box on purpose). */
#include <criterion/criterion.h>
#include <time.h>
#include <stdlib.h>

#include "weir.h"

static long fib_serial(int n)
{
    return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2);
}

WEIR_TASK_1(long, fib, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fib, n - 1);
    long b = WEIR_CALL(fib, n - 2);
    long a = WEIR_SYNC(fib);
    return a + b;
}

static int ok_place(const int *q, int row, int col)
{
    for (int r = 0; r < row; r++) {
        int c = q[r];
        if (c == col || abs(c - col) == row - r)
            return 0;
    }
    return 1;
}

/* board packed into the frame: up to 14 queens, 4 bits each in a uint64 */
WEIR_TASK_3(long, nq, int, n, int, row, uint64_t, board)
{
    if (row == n)
        return 1;
    int q[16];
    for (int r = 0; r < row; r++)
        q[r] = (int)((board >> (4 * r)) & 15);
    int spawned = 0;
    for (int c = 0; c < n; c++) {
        if (ok_place(q, row, c)) {
            WEIR_SPAWN(nq, n, row + 1, board | ((uint64_t)c << (4 * row)));
            spawned++;
        }
    }
    long total = 0;
    while (spawned--)
        total += WEIR_SYNC(nq);
    return total;
}

/* Spawns `width` frames then syncs them all: exercises segment growth. */
WEIR_TASK_1(long, leaf, long, x)
{
    return x * 2;
}

WEIR_TASK_1(long, wide, long, width)
{
    for (long i = 0; i < width; i++)
        WEIR_SPAWN(leaf, i);
    long s = 0;
    for (long i = 0; i < width; i++)
        s += WEIR_SYNC(leaf);
    return s;
}

static weir_runtime *make_rt(unsigned workers, unsigned initial)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.deque_initial = initial;
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    cr_assert_eq(err, 0, "create: %s", weir_last_error());
    return rt;
}

static void check_fib(unsigned workers)
{
    weir_runtime *rt = make_rt(workers, 1024);
    for (int n = 0; n <= 27; n += 3)
        cr_assert_eq(fib_run(rt, n), fib_serial(n), "fib(%d) on %u workers", n, workers);
    weir_runtime_destroy(rt);
}

Test(forkjoin, fib_correct_on_1_worker) { check_fib(1); }
Test(forkjoin, fib_correct_on_2_workers) { check_fib(2); }
Test(forkjoin, fib_correct_on_3_workers) { check_fib(3); }
Test(forkjoin, fib_correct_on_4_workers_oversubscribed) { check_fib(4); }

static const long nq_solutions[] = {1, 1, 0, 0, 2, 10, 4, 40, 92, 352, 724};

Test(forkjoin, nqueens_correct_on_1_to_4_workers)
{
    for (unsigned w = 1; w <= 4; w++) {
        weir_runtime *rt = make_rt(w, 1024);
        for (int n = 1; n <= 10; n++)
            cr_assert_eq(nq_run(rt, n, 0, 0), nq_solutions[n], "nqueens(%d) on %u workers", n, w);
        weir_runtime_destroy(rt);
    }
}

Test(forkjoin, wide_spawn_grows_deque_from_capacity_2)
{
    for (unsigned w = 1; w <= 2; w++) {
        weir_runtime *rt = make_rt(w, 2);
        for (long width = 1; width <= 100000; width *= 7) {
            long expect = width * (width - 1);
            cr_assert_eq(wide_run(rt, width), expect, "width %ld on %u workers", width, w);
        }
        weir_runtime_destroy(rt);
    }
}

/* Idle workers keep trying to steal, and the counters are read (and reset)
 * one by one, so a snapshot or a reset taken meanwhile may count an attempt
 * on one side only (CI under ASan saw outcomes 3 above attempts). Wait until
 * the workers have parked: two totals 2 ms apart agree (at most ~2 s). */
static void settle(weir_runtime *rt, weir_worker_stats *t)
{
    weir_runtime_stats_total(rt, t);
    for (int k = 0; k < 1000; k++) {
        weir_worker_stats u;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        weir_runtime_stats_total(rt, &u);
        bool same = u.steal_attempts == t->steal_attempts && u.steals == t->steals &&
                    u.steal_empty == t->steal_empty && u.steal_contended == t->steal_contended;
        *t = u;
        if (same)
            return;
    }
}

Test(forkjoin, stats_count_spawns_and_steals)
{
    weir_runtime *rt = make_rt(2, 1024);
    weir_worker_stats t0;
    settle(rt, &t0); /* no steal attempt may straddle the reset */
    weir_runtime_stats_reset(rt);
    cr_assert_eq(fib_run(rt, 25), fib_serial(25));
    weir_worker_stats t;
    settle(rt, &t);
    /* fib(25) spawns fib-nodes-with-n>=2 frames: exactly 121392 */
    cr_assert_eq(t.spawns, 121392u, "spawns %lu", (unsigned long)t.spawns);
    /* idle workers keep trying while we read the counters one by one: at
     * most one attempt per worker may be counted on one side only */
    uint64_t outcomes = t.steals + t.steal_empty + t.steal_contended;
    cr_assert(t.steal_attempts + 2 >= outcomes && t.steal_attempts <= outcomes + 2,
              "attempts %lu outcomes %lu", (unsigned long)t.steal_attempts,
              (unsigned long)outcomes);
    cr_assert_eq(t.steals, t.tasks_stolen);
    weir_runtime_destroy(rt);
}
