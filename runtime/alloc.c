/*
 * weir runtime — allocation wrappers with a failure-injection hook, and the
 * monotonic clock.
 *
 * Every allocation of the runtime goes through weir__malloc and friends so
 * that a test can make the k-th one fail (weir__alloc_fail_after) and check
 * that each error path cleans up and returns -ENOMEM instead of crashing.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Allocations left before the injected failure: 0 = disarmed, k > 0 = the
 * k-th allocation from now fails. Relaxed ordering throughout: the counter
 * orders nothing but itself, and the test that arms it does so before it
 * starts the code under test. */
static _Atomic long weir__fail_countdown;

void weir__alloc_fail_after(long k)
{
    atomic_store_explicit(&weir__fail_countdown, k > 0 ? k : 0, memory_order_relaxed);
}

/* True when this allocation is the one chosen to fail. A CAS loop rather
 * than fetch_sub keeps the counter from going below zero, so exactly one
 * allocation fails even when several threads allocate at once, and the hook
 * disarms itself afterwards. The common (disarmed) case is one relaxed load. */
static bool weir__inject_failure(void)
{
    long c = atomic_load_explicit(&weir__fail_countdown, memory_order_relaxed);
    while (c > 0) {
        if (atomic_compare_exchange_weak_explicit(&weir__fail_countdown, &c, c - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return c == 1;
    }
    return false;
}

void *weir__malloc(size_t size)
{
    if (weir__inject_failure())
        return NULL;
    return malloc(size);
}

void *weir__calloc(size_t n, size_t size)
{
    if (weir__inject_failure())
        return NULL;
    return calloc(n, size);
}

void *weir__aligned_alloc(size_t align, size_t size)
{
    /* posix_memalign needs a power of two that is a multiple of
     * sizeof(void *); raise smaller alignments rather than fail on them. */
    if (align < sizeof(void *))
        align = sizeof(void *);
    if ((align & (align - 1)) != 0)
        return NULL;
    /* A zero-size request still gets a distinct, freeable block. */
    if (size == 0)
        size = 1;
    if (weir__inject_failure())
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

void weir__free(void *p)
{
    free(p);
}

uint64_t weir__now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC: durations must not jump when the wall clock is set. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
