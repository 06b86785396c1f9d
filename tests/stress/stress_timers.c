/*
 * Timer stress: arm / cancel / fire races on several threads, then destroy
 * with timers still armed. Two outside threads arm timers (deadlines 0-2 ms
 * away) on slots they own, re-arming each slot once its previous outcome is
 * settled; a third thread cancels random slots; a few periodic timers re-arm
 * themselves from inside their jobs (worker arms) until destroy refuses them.
 * Exact accounting at the end, per slot and in total:
 *
 *   armed == fired + cancelled + dropped
 *
 * where `dropped` counts the timers destroy dropped (WEIR_TIMER_DROPPED), and
 * no job ever runs before its deadline. One summary line; exit 1 on a broken
 * invariant. Run it under ThreadSanitizer.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"

#include "stress_common.h"

#define ARMERS    2
#define SLOTS     128 /* per arming thread */
#define PERIODICS 4

typedef struct slot {
    weir_job job;
    weir_timer timer;
    _Atomic int busy; /* 1 from the arm until the job ran or a cancel won */
    _Atomic long armed, fired, cancelled, refused;
} slot;

static weir_runtime *rt;
static slot slots[ARMERS * SLOTS + PERIODICS];
static _Atomic long early;
static _Atomic int stop_threads;
static unsigned long seed;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check_deadline(slot *s)
{
    /* the arm happened-before this run (the heap's lock, then the deque),
     * and nobody re-arms the slot before `busy` is cleared below */
    if (weir_now_ns() < s->timer.deadline_ns)
        atomic_fetch_add_explicit(&early, 1, memory_order_relaxed);
}

static void slot_fn(weir_worker *w, weir_job *j)
{
    (void)w;
    slot *s = (slot *)(void *)j;
    check_deadline(s);
    atomic_fetch_add_explicit(&s->fired, 1, memory_order_relaxed);
    /* release: pairs with the arming thread's acquire load of busy; the
     * slot's next arm follows this run */
    atomic_store_explicit(&s->busy, 0, memory_order_release);
}

/* A periodic timer: its job re-arms it, 100 us later, until refused. */
static void periodic_fn(weir_worker *w, weir_job *j)
{
    (void)w;
    slot *s = (slot *)(void *)j;
    check_deadline(s);
    atomic_fetch_add_explicit(&s->fired, 1, memory_order_relaxed);
    int r = weir_submit_after(rt, &s->job, 100000, &s->timer);
    if (r == 0)
        atomic_fetch_add_explicit(&s->armed, 1, memory_order_relaxed);
    else if (r == -ESHUTDOWN)
        atomic_fetch_add_explicit(&s->refused, 1, memory_order_relaxed);
    else
        fprintf(stderr, "stress_timers: periodic re-arm: %s\n", weir_strerror(r));
}

static void *armer_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t r = seed * 2654435761u + id + 1;
    slot *mine = &slots[id * SLOTS];
    while (!atomic_load_explicit(&stop_threads, memory_order_relaxed)) {
        slot *s = &mine[rnd(&r) % SLOTS];
        /* acquire: pairs with the release stores of busy (job, canceller) */
        if (atomic_load_explicit(&s->busy, memory_order_acquire))
            continue;
        atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
        int e = weir_submit_after(rt, &s->job, rnd(&r) % 2000000, &s->timer);
        if (e == 0) {
            atomic_fetch_add_explicit(&s->armed, 1, memory_order_relaxed);
        } else {
            fprintf(stderr, "stress_timers: arm: %s (%s)\n", weir_strerror(e), weir_last_error());
            atomic_store_explicit(&s->busy, 0, memory_order_relaxed);
        }
        if (rnd(&r) % 64 == 0)
            usleep(50);
    }
    return NULL;
}

static void *canceller_main(void *arg)
{
    (void)arg;
    uint64_t r = seed * 40503u + 7;
    while (!atomic_load_explicit(&stop_threads, memory_order_relaxed)) {
        slot *s = &slots[rnd(&r) % (ARMERS * SLOTS)];
        int e = weir_timer_cancel(rt, &s->timer);
        if (e == 0) {
            atomic_fetch_add_explicit(&s->cancelled, 1, memory_order_relaxed);
            /* release: the arming thread may reuse the slot */
            atomic_store_explicit(&s->busy, 0, memory_order_release);
        } else if (e != -EALREADY && e != -ENOENT) {
            fprintf(stderr, "stress_timers: cancel: %s\n", weir_strerror(e));
        }
        if (rnd(&r) % 16 == 0)
            usleep(20);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    stress_opts o;
    int rc = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (rc)
        return rc;
    seed = o.seed;
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = o.workers ? o.workers : 2;
    if (weir_runtime_create(&cfg, &rt) != 0) {
        fprintf(stderr, "stress_timers: %s\n", weir_last_error());
        return 1;
    }
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        bool periodic = i >= ARMERS * SLOTS;
        weir_job_init(&slots[i].job, periodic ? periodic_fn : slot_fn, NULL, 0);
        weir_timer_init(&slots[i].timer);
    }
    for (unsigned p = 0; p < PERIODICS; p++) {
        slot *s = &slots[ARMERS * SLOTS + p];
        if (weir_submit_after(rt, &s->job, 0, &s->timer) != 0) {
            fprintf(stderr, "stress_timers: %s\n", weir_last_error());
            return 1;
        }
        atomic_fetch_add_explicit(&s->armed, 1, memory_order_relaxed);
    }
    pthread_t th[ARMERS + 1];
    for (unsigned i = 0; i < ARMERS; i++)
        pthread_create(&th[i], NULL, armer_main, (void *)(uintptr_t)i);
    pthread_create(&th[ARMERS], NULL, canceller_main, NULL);
    double end = stress_now() + o.seconds;
    while (stress_now() < end)
        usleep(10000);
    atomic_store_explicit(&stop_threads, 1, memory_order_relaxed);
    for (unsigned i = 0; i <= ARMERS; i++)
        pthread_join(th[i], NULL);
    /* destroy with timers in flight: some fire in the drain, the rest are
     * dropped; the periodic ones are refused their next arm or dropped */
    weir_runtime_destroy(rt);

    long armed = 0, fired = 0, cancelled = 0, dropped = 0, refused = 0, bad_slots = 0;
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        slot *s = &slots[i];
        long a = atomic_load(&s->armed), f = atomic_load(&s->fired), c = atomic_load(&s->cancelled);
        long d = weir_timer_status(&s->timer) == WEIR_TIMER_DROPPED;
        if (a != f + c + d) {
            if (bad_slots++ < 5)
                fprintf(stderr,
                        "stress_timers: slot %zu: armed %ld != fired %ld + cancelled %ld + "
                        "dropped %ld\n",
                        i, a, f, c, d);
        }
        armed += a;
        fired += f;
        cancelled += c;
        dropped += d;
        refused += atomic_load(&s->refused);
    }
    long e = atomic_load(&early);
    bool ok = bad_slots == 0 && e == 0 && armed == fired + cancelled + dropped && fired > 0 &&
              cancelled > 0;
    printf("stress_timers: %s workers=%u seconds=%g seed=%lu armed=%ld fired=%ld cancelled=%ld "
           "dropped=%ld refused=%ld early=%ld bad_slots=%ld\n",
           ok ? "ok" : "FAILED", cfg.workers, o.seconds, o.seed, armed, fired, cancelled, dropped,
           refused, e, bad_slots);
    return ok ? 0 : 1;
}
