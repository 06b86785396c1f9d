/*
 * Fork-join frames across segment boundaries.
 *
 * A worker's frame stack grows by segments (runtime/fjdeque.c). A task that
 * calls another directly (WEIR_CALL), or a stolen frame run on top of a
 * waiting worker's stack, starts at the caller's stack pointer; when that
 * pointer is the end of a segment, the callee grows into the next segment
 * and shrinks back before it returns. The caller must then find the segment
 * state it left: before the fix the callee left the next segment current, so
 * the caller's following spawns wrote past the end of its segment (fib(25)
 * with 2-frame segments returned 72810, then the heap was corrupt; UTS T3
 * crashed with the default 1024 frames). These tests run shapes that cross
 * segment boundaries at every depth, with the smallest segments, on 1 and on
 * 2 workers, and check exact results.
 */
#include <criterion/criterion.h>

#include "weir.h"

WEIR_TASK_1(long, fib, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fib, n - 1);
    long b = WEIR_CALL(fib, n - 2);
    long a = WEIR_SYNC(fib);
    return a + b;
}

/* 3 spawns and a call per level: 4^d leaves. */
WEIR_TASK_1(long, wide, int, d)
{
    if (d == 0)
        return 1;
    for (int i = 0; i < 3; i++)
        WEIR_SPAWN(wide, d - 1);
    long s = WEIR_CALL(wide, d - 1);
    for (int i = 0; i < 3; i++)
        s += WEIR_SYNC(wide);
    return s;
}

static weir_runtime *make(unsigned workers, unsigned deque)
{
    weir_config c;
    weir_config_init(&c);
    c.workers = workers;
    c.deque_initial = deque;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&c, &rt), 0, "%s", weir_last_error());
    return rt;
}

Test(fjsegments, call_at_a_segment_end_one_worker)
{
    for (unsigned deque = 2; deque <= 8; deque *= 2) {
        weir_runtime *rt = make(1, deque);
        for (int r = 0; r < 3; r++) {
            cr_assert_eq(fib_run(rt, 25), 75025, "deque_initial %u", deque);
            cr_assert_eq(wide_run(rt, 8), 65536, "deque_initial %u", deque);
        }
        weir_runtime_destroy(rt);
    }
}

Test(fjsegments, call_at_a_segment_end_two_workers)
{
    weir_runtime *rt = make(2, 2);
    for (int r = 0; r < 20; r++) {
        cr_assert_eq(fib_run(rt, 22), 17711);
        cr_assert_eq(wide_run(rt, 7), 16384);
    }
    weir_runtime_destroy(rt);
}
