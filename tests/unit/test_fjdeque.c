/* The frame deque alone: an owner spawns and syncs while K thieves steal;
 * every frame runs exactly once, across growth from capacity 2. */
#include <criterion/criterion.h>

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

Test(fjdeque, thieves_get_work_when_they_ask)
{
    harness h;
    cr_assert_eq(harness_init(&h, 1, TOTAL, 2), 0);
    fj_run(&h, sizes, NSIZES, 0);
    /* the publication protocol must hand frames to a thief that keeps asking */
    cr_assert_gt(h.by_thieves, 0);
    harness_fini(&h);
}
