/* The frame deque alone: an owner spawns and syncs while K thieves steal;
 * every frame runs exactly once, across growth from capacity 2. */
#include <criterion/criterion.h>

#include <sched.h>
#include <unistd.h>

#include "../common/deque_harness.h"

static const long sizes[] = {1, 2, 3, 5, 8, 13, 100, 1000, 4096, 10000, 100000};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define TOTAL  (1 + 2 + 3 + 5 + 8 + 13 + 100 + 1000 + 4096 + 10000 + 100000)

static void run(unsigned thieves, long pop_every)
{
    harness h;
    cr_assert_eq(harness_init(&h, thieves, TOTAL, 2), 0);
    size_t bad = fj_run(&h, sizes, NSIZES, pop_every);
    cr_assert_eq(bad, 0, "%zu frames not run exactly once", bad);
    cr_assert_eq(h.by_owner + h.by_thieves, TOTAL);
    cr_assert_eq(h.by_thieves, h.steal_ok);
    harness_fini(&h);
}

Test(fjdeque, owner_alone_runs_every_frame_once) { run(0, 0); }
Test(fjdeque, one_thief_every_frame_exactly_once) { run(1, 0); }
Test(fjdeque, two_thieves_every_frame_exactly_once) { run(2, 0); }
Test(fjdeque, four_thieves_every_frame_exactly_once) { run(4, 0); }
Test(fjdeque, interleaved_pops_with_three_thieves_exactly_once) { run(3, 3); }

Test(fjdeque, a_request_makes_the_owner_publish_and_the_thief_steal)
{
    harness h;
    cr_assert_eq(harness_init(&h, 1, 64, 2), 0);
    weir_worker *weir_w = h.owner;
    weir_frame *weir_sp = weir_w->segs[0];
    for (long i = 0; i < 8; i++)
        WEIR_SPAWN(claim_frame, i);
    pthread_t th; /* started after the spawns: nobody asked yet */
    pthread_create(&th, NULL, fj_thief, h.thieves[0]);
    /* private frames are invisible: the thief can only ask (limit = 0) */
    while (atomic_load(&weir_w->fj.limit) != 0)
        sched_yield();
    cr_assert_eq(h.by_thieves, 0);
    WEIR_SPAWN(claim_frame, 8); /* serves the request: publishes 5 of 9 */
    cr_assert_gt(atomic_load(&weir_w->ctr.publishes), 0);
    for (int ms = 0; ms < 10000 && atomic_load(&h.by_thieves) == 0; ms++)
        usleep(1000);
    cr_assert_gt(atomic_load(&h.by_thieves), 0, "the thief never got a published frame");
    for (int i = 0; i < 9; i++)
        WEIR_SYNC(claim_frame);
    atomic_store(&h.stop, 1);
    pthread_join(th, NULL);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(h.claimed[i], 1, "frame %d ran %d times", i, h.claimed[i]);
    harness_fini(&h);
}
