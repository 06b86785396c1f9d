/*
 * Timers: one 4-ary min-heap per runtime under a mutex, fired by the workers
 * from their scheduling loop, slept on by one parked worker (the timekeeper,
 * park.c). The design and its argument are in docs/design.md, "Timers".
 *
 * The heap is an array of (deadline, arm sequence, timer) entries: a sift
 * compares entries within the array, touching a timer only to record its new
 * position (weir__index, for an O(log n) cancel). Four children per node
 * share two cache lines, so a sift over n timers makes log4(n) steps. (A
 * first version used an intrusive pairing heap, which never allocates; its
 * delete-min chased pointers through the callers' timers and spent 75 % of
 * the time of `weir-bench timers` there.) The array doubles when full, so an
 * arm allocates only when the number of armed timers reaches a new maximum
 * (amortised, never per timer), and can then fail with -ENOMEM.
 *
 * Every field of a timer and of the heap is written under `timer_lock`. The
 * state is also an atomic so that weir_timer_status() can read it without
 * the lock: each store is a release that pairs with that acquire load.
 *
 * `timer_next` (the root's deadline) is written under the lock with seq_cst
 * stores and read without it:
 *   - relaxed, by weir__timers_poll()'s quick check: a stale value only
 *     delays the check to the next poll or takes the lock for nothing;
 *   - seq_cst, by a parking worker after it claimed the timekeeper role
 *     (park.c). An arm that makes a new earliest deadline stores it, then
 *     loads `timekeeper` (seq_cst): with the claimer's seq_cst CAS of
 *     `timekeeper` followed by its seq_cst load of `timer_next`, this is the
 *     store-buffering pattern, so at least one side sees the other. Either
 *     the claimer reads the new deadline and sleeps until it, or the arm sees
 *     the role taken and wakes the timekeeper (wake_for_timer()).
 */
#include <stdio.h>

#include "scheduler.h"

/* Timers fired by one poll at most: the lock is held for the batch, so an
 * arm or cancel from another thread waits for at most this many heap pops. */
#define FIRE_BATCH 64

void weir_timer_init(weir_timer *t)
{
    t->deadline_ns = 0;
    t->weir__job = NULL;
    t->weir__rt = NULL;
    t->weir__seq = 0;
    t->weir__index = 0;
    t->weir__run_on_drop = false;
    atomic_init(&t->weir__state, WEIR_TIMER_IDLE);
}

uint64_t weir_now_ns(void)
{
    return weir__now_ns();
}

weir_timer_state weir_timer_status(const weir_timer *t)
{
    /* acquire: pairs with the release store of each state (set_state), so a
     * caller that sees FIRED / CANCELLED / DROPPED sees what preceded it. */
    return (weir_timer_state)atomic_load_explicit(&((weir_timer *)t)->weir__state,
                                                  memory_order_acquire);
}

/* Under the lock. release: see weir_timer_status(). */
static void set_state(weir_timer *t, weir_timer_state s)
{
    atomic_store_explicit(&t->weir__state, (uint32_t)s, memory_order_release);
}

/* Under the lock: every state write holds it, so relaxed reads it exactly. */
static weir_timer_state get_state(const weir_timer *t)
{
    return (weir_timer_state)atomic_load_explicit(&((weir_timer *)t)->weir__state,
                                                  memory_order_relaxed);
}

/* ------------------------------------------------------------ 4-ary heap */

static bool earlier(const weir__tentry *a, const weir__tentry *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(weir_runtime *rt, size_t i, weir__tentry e)
{
    rt->timer_heap[i] = e;
    e.t->weir__index = i;
}

static void sift_up(weir_runtime *rt, size_t i, weir__tentry e)
{
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (!earlier(&e, &rt->timer_heap[p]))
            break;
        place(rt, i, rt->timer_heap[p]);
        i = p;
    }
    place(rt, i, e);
}

static void sift_down(weir_runtime *rt, size_t i, weir__tentry e)
{
    weir__tentry *h = rt->timer_heap;
    size_t n = rt->timer_len;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n)
            break;
        size_t end = n - c > 4 ? c + 4 : n, best = c;
        for (size_t k = c + 1; k < end; k++)
            if (earlier(&h[k], &h[best]))
                best = k;
        if (!earlier(&h[best], &e))
            break;
        place(rt, i, h[best]);
        i = best;
    }
    place(rt, i, e);
}

/* @return 0 or -ENOMEM (the array could not grow; nothing changed). */
static int heap_insert(weir_runtime *rt, weir_timer *t)
{
    if (rt->timer_len == rt->timer_cap) {
        size_t cap = rt->timer_cap ? 2 * rt->timer_cap : 64;
        weir__tentry *h = weir_realloc(rt->timer_heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        rt->timer_heap = h;
        rt->timer_cap = cap;
    }
    weir__tentry e = {t->deadline_ns, t->weir__seq, t};
    sift_up(rt, rt->timer_len++, e);
    return 0;
}

static void heap_remove_at(weir_runtime *rt, size_t i)
{
    weir__tentry last = rt->timer_heap[--rt->timer_len];
    if (i == rt->timer_len)
        return;
    if (i > 0 && earlier(&last, &rt->timer_heap[(i - 1) / 4]))
        sift_up(rt, i, last);
    else
        sift_down(rt, i, last);
}

static weir_timer *heap_root(const weir_runtime *rt)
{
    return rt->timer_len ? rt->timer_heap[0].t : NULL;
}

/* Under the lock, after the root changed. seq_cst: the store half of the
 * store-buffering pair with a claiming timekeeper (see the top). */
static void publish_next(weir_runtime *rt)
{
    uint64_t next = rt->timer_len ? rt->timer_heap[0].deadline : UINT64_MAX;
    atomic_store_explicit(&rt->timer_next, next, memory_order_seq_cst);
}

/* ------------------------------------------------------------ lifecycle */

void weir__timers_init(weir_runtime *rt)
{
    atomic_init(&rt->timer_next, UINT64_MAX);
    atomic_init(&rt->timekeeper, 0);
    /* Adaptive (a GNU extension): the critical sections are a few heap
     * operations, so a contender spins briefly before it sleeps in the
     * kernel; a plain mutex sleeps at once, which on two cores made
     * concurrent arms ten times slower (weir-bench timers). */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&rt->timer_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    rt->timer_heap = NULL;
    rt->timer_len = rt->timer_cap = 0;
    rt->timer_seq = 0;
    rt->timers_closed = false;
}

void weir__timers_fini(weir_runtime *rt)
{
    /* The heap array is gone already: weir__timers_shutdown() freed it, and
     * a create that fails never returned the runtime to anybody who could
     * arm. */
    pthread_mutex_destroy(&rt->timer_lock);
}

void weir_timer_run_on_drop(weir_timer *t)
{
    if (t)
        t->weir__run_on_drop = true;
}

size_t weir__timers_shutdown(weir_runtime *rt)
{
    pthread_mutex_lock(&rt->timer_lock);
    rt->timers_closed = true;
    size_t n = rt->timer_len, k = 0;
    weir__tentry *heap = rt->timer_heap;
    for (size_t i = 0; i < n; i++) {
        /* Read the flag before the timer is DROPPED: from then on an owner
         * that sees the state may free the timer. The weir_timer_run_on_drop()
         * timers move to the front of the array; their owners wait for the
         * job, so they stay valid below. */
        if (heap[i].t->weir__run_on_drop)
            heap[k++] = heap[i];
        set_state(heap[i].t, WEIR_TIMER_DROPPED);
    }
    rt->timer_heap = NULL;
    rt->timer_len = rt->timer_cap = 0;
    publish_next(rt);
    pthread_mutex_unlock(&rt->timer_lock);
    /* their jobs, outside the lock (a job may call into the runtime) */
    for (size_t i = 0; i < k; i++)
        heap[i].t->weir__job->fn(NULL, heap[i].t->weir__job);
    weir_free(heap);
    return n;
}

/* ------------------------------------------------------------ arm / cancel */

/*
 * An arm made a new earliest deadline (its seq_cst store of `timer_next` is
 * sequenced before this). Make sure a parked runtime re-reads it:
 *   - a timekeeper holds the role (seq_cst load, the load half of the
 *     store-buffering pair described at the top): bump the epoch, which makes
 *     its futex_wait return if it has not slept yet (its key is older), and
 *     wake it with the TIMER bit, which only the timekeeper waits for, so the
 *     other sleepers stay asleep. It re-parks with the new deadline.
 *   - nobody holds it: workers are either all awake (they poll) or some are
 *     parked without the role. weir__notify() then wakes one sleeper unless a
 *     worker spins; the woken sleeper re-parks and claims the role. A spinner
 *     carries the obligation: it either parks (and claims the role, then
 *     reads `timer_next` after its seq_cst decrement of `spinning`, which
 *     follows our fence: park.c's argument) or finds work, and then, as the
 *     last spinner, wakes a sleeper itself (weir__spin_exit()).
 */
static void wake_for_timer(weir_runtime *rt)
{
    if (atomic_load_explicit(&rt->timekeeper, memory_order_seq_cst)) {
        /* release: like weir__notify(), a sleeper that reads the new epoch
         * sees what came before it (the new deadline). */
        atomic_fetch_add_explicit(&rt->epoch, 1, memory_order_release);
        weir__futex_wake_bits(&rt->epoch, 1, WEIR__WAKE_TIMER);
        return;
    }
    weir__notify(rt);
}

int weir_submit_at(weir_runtime *rt, weir_job *job, uint64_t deadline_ns, weir_timer *t)
{
    if (!rt || !job || !t)
        return weir__error(-EINVAL, "weir_submit_at: %s is NULL",
                           !rt    ? "runtime"
                           : !job ? "job"
                                  : "timer");
    if (!job->fn)
        return weir__error(-EINVAL, "weir_submit_at: job has no function (use weir_job_init)");
    /* relaxed: a misuse check, as in weir_submit() */
    int32_t deps = atomic_load_explicit(&job->deps, memory_order_relaxed);
    if (deps > 0)
        return weir__error(-EINVAL, "weir_submit_at: the job waits for %d dependencies", (int)deps);
    pthread_mutex_lock(&rt->timer_lock);
    /* seq_cst load of `stopping`, but the lock is what makes the refusal
     * exact: destroy closes the heap under it once the workers stopped, so
     * an arm that read RUNNING just before destroy's CAS is either in the
     * heap at that point (dropped and counted) or sees `timers_closed`. */
    int st = atomic_load_explicit(&rt->stopping, memory_order_seq_cst);
    if (rt->timers_closed || st != WEIR__RT_RUNNING) {
        pthread_mutex_unlock(&rt->timer_lock);
        return weir__error(-ESHUTDOWN, "weir_submit_at: the runtime %s",
                           st == WEIR__RT_DESTROYED ? "was destroyed" : "is being destroyed");
    }
    if (get_state(t) == WEIR_TIMER_ARMED) {
        pthread_mutex_unlock(&rt->timer_lock);
        return weir__error(-EBUSY, "weir_submit_at: the timer is armed already");
    }
    uint64_t old_deadline = t->deadline_ns;
    t->deadline_ns = deadline_ns;
    t->weir__seq = rt->timer_seq;
    if (heap_insert(rt, t) != 0) {
        t->deadline_ns = old_deadline;
        pthread_mutex_unlock(&rt->timer_lock);
        return weir__error(-ENOMEM, "weir_submit_at: out of memory for the timer heap (%zu armed)",
                           rt->timer_len);
    }
    rt->timer_seq++;
    t->weir__job = job;
    t->weir__rt = rt;
    set_state(t, WEIR_TIMER_ARMED);
    bool earliest = heap_root(rt) == t;
    if (earliest)
        publish_next(rt);
    pthread_mutex_unlock(&rt->timer_lock);
    if (earliest)
        wake_for_timer(rt);
    return 0;
}

int weir_submit_after(weir_runtime *rt, weir_job *job, uint64_t delay_ns, weir_timer *t)
{
    uint64_t now = weir__now_ns();
    uint64_t deadline = delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns;
    return weir_submit_at(rt, job, deadline, t);
}

int weir_timer_cancel(weir_runtime *rt, weir_timer *t)
{
    if (!rt || !t)
        return weir__error(-EINVAL, "weir_timer_cancel: %s is NULL", !rt ? "runtime" : "timer");
    pthread_mutex_lock(&rt->timer_lock);
    weir_timer_state s = get_state(t);
    int err = 0;
    if (s == WEIR_TIMER_ARMED && !rt->timers_closed) {
        bool was_root = t->weir__index == 0;
        heap_remove_at(rt, t->weir__index);
        set_state(t, WEIR_TIMER_CANCELLED);
        /* A later deadline needs no wake-up: a timekeeper sleeping until the
         * old one wakes early, finds nothing due and sleeps again. */
        if (was_root)
            publish_next(rt);
    } else if (s == WEIR_TIMER_FIRED) {
        err = -EALREADY;
    } else if (s == WEIR_TIMER_DROPPED || rt->timers_closed) {
        err = -ESHUTDOWN;
    } else {
        err = -ENOENT;
    }
    pthread_mutex_unlock(&rt->timer_lock);
    switch (err) {
    case -EALREADY:
        return weir__error(err, "weir_timer_cancel: the timer fired already");
    case -ESHUTDOWN:
        return weir__error(err, "weir_timer_cancel: the runtime was destroyed (timer dropped)");
    case -ENOENT:
        return weir__error(err, "weir_timer_cancel: the timer is not armed");
    default:
        return 0;
    }
}

/* ------------------------------------------------------------ firing */

unsigned weir__timers_poll(weir_worker *w)
{
    weir_runtime *rt = w->rt;
    /* relaxed: a hint (see the top); the decision is made under the lock */
    uint64_t next = atomic_load_explicit(&rt->timer_next, memory_order_relaxed);
    if (WEIR_LIKELY(next == UINT64_MAX))
        return 0;
    uint64_t now = weir__now_ns();
    if (now < next)
        return 0;
    pthread_mutex_lock(&rt->timer_lock);
    /* The whole batch is FIRED before any of its jobs is visible (they are
     * pushed after the unlock), so that a job that runs finds every timer
     * due before its own fired (the order promise of timer.h). A timer is
     * not read again once FIRED: its owner may free or re-arm it. */
    weir_job *jobs[FIRE_BATCH];
    unsigned n = 0;
    while (n < FIRE_BATCH && rt->timer_len && rt->timer_heap[0].deadline <= now) {
        weir_timer *t = rt->timer_heap[0].t;
        heap_remove_at(rt, 0);
        jobs[n++] = t->weir__job;
        set_state(t, WEIR_TIMER_FIRED);
    }
    if (n)
        publish_next(rt);
    pthread_mutex_unlock(&rt->timer_lock);
    /* Push the latest first, so that the earliest is on top of our deque:
     * we take (LIFO) in deadline order, thieves steal the latest. The lock
     * is not needed for that: the jobs are ours to submit now. */
    for (unsigned i = n; i-- > 0;) {
        if (WEIR_UNLIKELY(weir__jd_push(&w->jd, jobs[i]) != 0))
            weir__inject(rt, jobs[i]); /* our deque cannot grow: never allocates */
        else
            WEIR__INC(w, jobs_submitted, 1);
    }
    /* More than the one job we are about to run: let a sleeper help. */
    if (n > 1)
        weir__notify(rt);
    return n;
}
