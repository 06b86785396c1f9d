/* The Chase–Lev job deque alone: owner push/take against K thieves; every id
 * claimed exactly once, growing from capacity 2. */
#include <criterion/criterion.h>

#include "../common/deque_harness.h"

static const long sizes[] = {1, 2, 3, 5, 8, 13, 100, 1000, 4096, 10000, 100000};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define TOTAL  (1 + 2 + 3 + 5 + 8 + 13 + 100 + 1000 + 4096 + 10000 + 100000)

static id_job jobs[TOTAL];

static void run(unsigned thieves, long pop_every)
{
    harness h;
    cr_assert_eq(harness_init(&h, thieves, TOTAL, 2), 0);
    size_t bad = jd_run(&h, jobs, sizes, NSIZES, pop_every);
    cr_assert_eq(bad, 0, "%zu ids not claimed exactly once", bad);
    cr_assert_eq(h.by_owner + h.by_thieves, TOTAL);
    harness_fini(&h);
}

Test(jobdeque, owner_alone_takes_every_job_once) { run(0, 0); }
Test(jobdeque, one_thief_exactly_once) { run(1, 0); }
Test(jobdeque, two_thieves_exactly_once) { run(2, 0); }
Test(jobdeque, four_thieves_exactly_once) { run(4, 0); }
Test(jobdeque, interleaved_takes_with_three_thieves_exactly_once) { run(3, 2); }

Test(jobdeque, take_is_lifo_and_steal_is_fifo)
{
    harness h;
    cr_assert_eq(harness_init(&h, 0, 8, 2), 0);
    static id_job j[4];
    for (int i = 0; i < 4; i++) {
        j[i].id = i;
        cr_assert_eq(weir__jd_push(&h.owner->jd, &j[i].job), 0);
    }
    weir_job *x;
    cr_assert_eq(weir__jd_steal(&h.owner->jd, &x), WEIR__STEAL_OK);
    cr_assert_eq(x, &j[0].job);
    cr_assert_eq(weir__jd_take(&h.owner->jd), &j[3].job);
    cr_assert_eq(weir__jd_take(&h.owner->jd), &j[2].job);
    cr_assert_eq(weir__jd_take(&h.owner->jd), &j[1].job);
    cr_assert_null(weir__jd_take(&h.owner->jd));
    cr_assert_eq(weir__jd_steal(&h.owner->jd, &x), WEIR__STEAL_EMPTY);
    harness_fini(&h);
}
