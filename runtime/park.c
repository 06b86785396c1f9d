/*
 * Parking: an eventcount over a futex, so that an idle runtime sleeps
 * (~0 % CPU) and no wake-up is lost.
 *
 * Sleeper (weir__park):                 Notifier (weir__notify), after it made
 *   1. waiters += 1        (seq_cst RMW)   work visible (a release store/RMW):
 *   2. key = epoch         (seq_cst)        a. seq_cst fence
 *   3. ask every worker to publish        b. if (waiters == 0) return
 *   4. re-check all queues (seq_cst)       c. epoch += 1; futex_wake(epoch, 1)
 *   5. if work: waiters -= 1, return
 *   6. futex_wait(epoch, key)
 *   7. waiters -= 1
 *
 * No lost wake-up: if the notifier reads waiters == 0 at (b), the sleeper's
 * RMW at (1) is later in waiters' modification order than that read, so by the
 * fence at (a) and the seq_cst RMW at (1) the sleeper's re-check at (4) sees
 * the work. If it reads waiters > 0, it bumps epoch: either the sleeper read
 * the key before the bump and futex_wait returns at once (value changed), or
 * after it, and then (acquire) it also sees the work at (4).
 *
 * Timers add a timekeeper: between (3) and (4) the sleeper tries to claim the
 * role (a CAS on rt->timekeeper); the one that holds it reads the earliest
 * deadline and sleeps until it (FUTEX_WAIT_BITSET, absolute CLOCK_MONOTONIC
 * timeout), woken also by the TIMER bit that an arm of an earlier deadline
 * sends. The argument is at weir__park() and in timer.c.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "scheduler.h"
#include "tracing.h"

int weir__futex_wait(_Atomic uint32_t *addr, uint32_t val, const struct timespec *rel)
{
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, rel, NULL, 0);
    return r == 0 ? 0 : -errno;
}

void weir__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

int weir__futex_wait_bits(_Atomic uint32_t *addr, uint32_t val, uint64_t deadline_ns, uint32_t bits)
{
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout (without
     * FUTEX_CLOCK_REALTIME): the deadline as it is, no clock read here. */
    struct timespec abs, *absp = NULL;
    if (deadline_ns != UINT64_MAX) {
        abs.tv_sec = (time_t)(deadline_ns / 1000000000u);
        abs.tv_nsec = (long)(deadline_ns % 1000000000u);
        absp = &abs;
    }
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE, val, absp, NULL, bits);
    return r == 0 ? 0 : -errno;
}

void weir__futex_wake_bits(_Atomic uint32_t *addr, int n, uint32_t bits)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_BITSET_PRIVATE, n, NULL, NULL, bits);
}

void weir__notify(weir_runtime *rt)
{
    /* seq_cst fence: orders the caller's publication before the load of
     * waiters; pairs with the sleeper's seq_cst RMW on waiters (see top). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&rt->waiters, memory_order_relaxed) == 0)
        return;
    /* A spinning worker will find the work: it decrements `spinning` with a
     * seq_cst RMW before its last re-check (weir__park), so if we read it as
     * still spinning, that re-check follows our fence and sees the work. */
    if (atomic_load_explicit(&rt->spinning, memory_order_relaxed) != 0)
        return;
    /* release: a sleeper that reads the new epoch sees the work */
    atomic_fetch_add_explicit(&rt->epoch, 1, memory_order_release);
    weir__futex_wake(&rt->epoch, 1);
    weir_worker *self = weir__self();
    if (self && self->rt == rt)
        WEIR__INC(self, wakeups, 1);
}

void weir__notify_all(weir_runtime *rt)
{
    atomic_fetch_add_explicit(&rt->epoch, 1, memory_order_seq_cst);
    weir__futex_wake(&rt->epoch, INT_MAX);
}

bool weir__work_visible(weir_runtime *rt, weir_worker *self)
{
    return atomic_load_explicit(&rt->stopping, memory_order_seq_cst) ||
           weir__work_pending(rt, self);
}

bool weir__work_pending(weir_runtime *rt, weir_worker *self)
{
    if (weir__inject_maybe_nonempty(rt))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weir_worker *v = rt->workers[i];
        if (weir__jd_maybe_nonempty(&v->jd))
            return true;
        if (v != self && weir__fj_maybe_public(v))
            return true;
    }
    return false;
}

void weir__spin_enter(weir_worker *w)
{
    w->spinning = true;
    atomic_fetch_add_explicit(&w->rt->spinning, 1, memory_order_relaxed);
}

void weir__spin_exit(weir_worker *w)
{
    w->spinning = false;
    /* seq_cst: see weir__notify(). The last spinner to find work wakes a
     * sleeper to take over the search (more work may be arriving). */
    if (atomic_fetch_sub_explicit(&w->rt->spinning, 1, memory_order_seq_cst) == 1)
        weir__notify(w->rt);
}

void weir__park(weir_worker *w)
{
    weir_runtime *rt = w->rt;
    if (w->spinning) {
        w->spinning = false;
        atomic_fetch_sub_explicit(&rt->spinning, 1, memory_order_seq_cst);
    }
    /* seq_cst RMW: pairs with the notifier's seq_cst fence (see top) */
    atomic_fetch_add_explicit(&rt->waiters, 1, memory_order_seq_cst);
    uint32_t key = atomic_load_explicit(&rt->epoch, memory_order_seq_cst);
    /* Frames a busy worker keeps private are invisible to us: ask every
     * worker to publish at its next spawn; its publication notifies us. */
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weir_worker *v = rt->workers[i];
        if (v != w)
            weir__fj_request(v);
    }
    /* Timers (docs/design.md, "Timers"): one sleeper, the timekeeper, sleeps
     * until the earliest deadline; the others sleep without a timeout and
     * are not woken by timer arms (they wait for the WORK bit only).
     * seq_cst CAS, then seq_cst load of `timer_next`: the store-buffering
     * pair with an arm's seq_cst store of `timer_next` then seq_cst load of
     * `timekeeper` (timer.c, wake_for_timer): either we read its deadline,
     * or it sees us holding the role and bumps the epoch after our key was
     * read, so the futex_wait below returns at once or is woken. */
    uint32_t free_role = 0;
    bool keeper = atomic_compare_exchange_strong_explicit(
        &rt->timekeeper, &free_role, 1, memory_order_seq_cst, memory_order_relaxed);
    uint64_t deadline = UINT64_MAX;
    if (keeper)
        deadline = atomic_load_explicit(&rt->timer_next, memory_order_seq_cst);
    bool due = deadline != UINT64_MAX && weir__now_ns() >= deadline;
    if (!due && !weir__work_visible(rt, w)) {
        WEIR__INC(w, parks, 1);
        if (weir__tracing())
            weir_trace_instant("park");
        weir__futex_wait_bits(&rt->epoch, key, deadline,
                              keeper ? WEIR__WAKE_WORK | WEIR__WAKE_TIMER : WEIR__WAKE_WORK);
    }
    /* Give the role up: we are awake and back to searching. seq_cst: a later
     * arm that reads 0 wakes a sleeper through weir__notify() instead; if we
     * now find work rather than park again, weir__spin_exit() (the last
     * spinner wakes a sleeper) hands the role to a sleeper, which re-parks
     * and claims it. */
    if (keeper)
        atomic_store_explicit(&rt->timekeeper, 0, memory_order_seq_cst);
    atomic_fetch_sub_explicit(&rt->waiters, 1, memory_order_relaxed);
    weir__spin_enter(w); /* awake again: back to searching */
}
