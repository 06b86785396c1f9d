/*
 * weir runtime — the scheduler's private structures: workers, the runtime,
 * the job deque and the parking eventcount. Never installed.
 */
#ifndef WEIR_RUNTIME_SCHEDULER_H
#define WEIR_RUNTIME_SCHEDULER_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE /* liburcu's inline (static) implementation of cds_wfcq */
#endif
#include <pthread.h>
#include <urcu/wfcqueue.h>

/* ------------------------------------------------------------ job deque */

/*
 * A classic Chase–Lev deque of weir_job pointers (detached work), after
 * Lê, Pop, Cohen, Zappa Nardelli, PPoPP 2013, with the two standalone
 * seq_cst fences replaced by seq_cst accesses to `bottom` and `top` (same
 * cost on x86, and a formulation ThreadSanitizer models). Growable; a
 * retired array may still be read by a thief that loaded the old pointer,
 * so retired arrays are kept on a list until the deque is destroyed (their
 * total size is below the live array's, since arrays double).
 *
 * | operation        | caller      | may run concurrently with        |
 * |------------------|-------------|----------------------------------|
 * | weir__jd_init    | owner       | nothing                          |
 * | weir__jd_push    | owner only  | weir__jd_steal                   |
 * | weir__jd_take    | owner only  | weir__jd_steal                   |
 * | weir__jd_steal   | any thread  | push, take, other steals         |
 * | weir__jd_destroy | owner       | nothing                          |
 */
typedef struct weir__jarray {
    int64_t cap; /* a power of two */
    struct weir__jarray *retired_next;
    _Atomic(weir_job *) slot[];
} weir__jarray;

typedef struct weir__jobdeque {
    alignas(WEIR_CACHELINE) _Atomic int64_t top;    /* thieves CAS it */
    alignas(WEIR_CACHELINE) _Atomic int64_t bottom; /* owner writes it */
    _Atomic(weir__jarray *) array;
    weir__jarray *retired; /* owner only */
} weir__jobdeque;

enum { WEIR__STEAL_OK = 0, WEIR__STEAL_EMPTY = 1, WEIR__STEAL_LOST = 2 };

int weir__jd_init(weir__jobdeque *d, int64_t cap);
void weir__jd_destroy(weir__jobdeque *d);
/* @return 0 or -ENOMEM (the array could not grow; nothing was pushed). */
int weir__jd_push(weir__jobdeque *d, weir_job *job);
weir_job *weir__jd_take(weir__jobdeque *d);
/* @return WEIR__STEAL_OK with *out set, WEIR__STEAL_EMPTY or WEIR__STEAL_LOST. */
int weir__jd_steal(weir__jobdeque *d, weir_job **out);
/* Approximate emptiness, for the pre-park re-check (seq_cst loads). */
bool weir__jd_maybe_nonempty(weir__jobdeque *d);

/* ------------------------------------------------------------ timers */

/* One entry of the timer heap (timer.c): the key is copied into the array so
 * that a sift compares without touching the timers. */
typedef struct weir__tentry {
    uint64_t deadline, seq;
    weir_timer *t;
} weir__tentry;

/* ------------------------------------------------------------ workers */

#define WEIR__MAX_SEGS 32

typedef struct weir__counters {
    _Atomic uint64_t tasks_run, jobs_submitted, steal_attempts, steals, tasks_stolen, steal_empty,
        steal_contended, leapfrogs, publishes, parks, wakeups, injected, busy_ns, idle_ns;
    /* the open span: since when the worker is busy (idle == 0) or idle, so a
     * reader can add it to busy_ns / idle_ns */
    _Atomic uint64_t since_ns, idle;
} weir__counters;

/* Owner-only increment: a relaxed load and store (never an RMW), so that the
 * counters are cheap enough to stay on. Readers see a recent value. */
#define WEIR__INC(w, field, n)                                                                     \
    atomic_store_explicit(&(w)->ctr.field,                                                         \
                          atomic_load_explicit(&(w)->ctr.field, memory_order_relaxed) + (n),       \
                          memory_order_relaxed)

struct weir_worker {
    struct weir__fj_head fj; /* MUST stay first: include/weir/task.h casts to it */

    /* Owner-private fork-join state (slow paths only). */
    alignas(WEIR_CACHELINE) uint32_t split; /* owner's copy of the split half of fj.ts */
    unsigned cur_seg;                       /* the segment fj.seg_begin/seg_end describe */
    unsigned seg_shift;                     /* log2(cfg.deque_initial) */
    unsigned fj_depth;                      /* > 0 while fork-join code runs here */
    bool spinning;                          /* counted in rt->spinning */
    /* segs[k] holds frames [c0*(2^k-1), c0*(2^(k+1)-1)), c0 = 1 << seg_shift.
     * Written by the owner before any frame in it is published; read by
     * thieves only after a successful CAS on fj.ts (acquire), so plain. */
    weir_frame *segs[WEIR__MAX_SEGS];

    weir__jobdeque jd;

    /* Identity and placement (immutable after create). */
    weir_runtime *rt;
    unsigned index;
    int pu, numa_os, numa, l3;
    _Atomic int pinned; /* written by the worker at start-up */
    pthread_t thread;
    const unsigned *victims; /* plan.victims + index * (n-1) */
    const unsigned *class_end;
    uint64_t rng;
    unsigned tick; /* find_work passes, for fairness (worker.c) */

    /* Statistics: written by this worker only. */
    alignas(WEIR_CACHELINE) weir__counters ctr;
    /* What weir_runtime_stats_reset() saw (one per weir_worker_stats field):
     * readers report ctr - base, so a reset never writes the counters. */
    _Atomic uint64_t stats_base[15];
};

/* The fields whose origin the description reports (describe.c), and the
 * three origins. */
enum {
    WEIR__CFG_WORKERS,
    WEIR__CFG_AFFINITY,
    WEIR__CFG_PLACES,
    WEIR__CFG_NUMA,
    WEIR__CFG_SPIN,
    WEIR__CFG_STATS,
    WEIR__CFG_DEQUE,
    WEIR__CFG_STACK,
    WEIR__CFG_NFIELDS
};
enum { WEIR__SRC_DEFAULT, WEIR__SRC_CONFIG, WEIR__SRC_ENV };

struct weir_runtime {
    unsigned nworkers;
    weir_worker **workers;
    weir__topo topo;
    weir__plan plan;
    weir_config cfg;
    unsigned char cfg_src[WEIR__CFG_NFIELDS]; /* WEIR__SRC_* of each field, set at create */
    unsigned failed_pins;

    /* Parking: an eventcount. `epoch` is the futex word; `waiters` counts
     * workers between prepare-wait and the end of their sleep. Separate
     * lines: every notify reads `waiters`, every wake-up bumps `epoch`. */
    alignas(WEIR_CACHELINE) _Atomic uint32_t epoch;
    alignas(WEIR_CACHELINE) _Atomic uint32_t waiters;
    /* workers in the idle loop looking for work (not parked): while one
     * spins, a notifier need not wake a sleeper (see park.c) */
    _Atomic uint32_t spinning;

    /* Injection queue for submissions from threads that are not workers. */
    alignas(WEIR_CACHELINE) struct cds_wfcq_head ihead;
    alignas(WEIR_CACHELINE) struct cds_wfcq_tail itail;

    /* Timers (timer.c): one 4-ary heap under `timer_lock`, ordered by
     * (deadline, arm order). `timer_next` is the root's deadline (UINT64_MAX
     * when empty), written under the lock, read without it by the workers'
     * cheap check and by a parking worker. `timekeeper` is 1 while a parking
     * worker holds the role of sleeping until `timer_next` (park.c). The
     * heap array, its length and capacity, `timer_seq` and `timers_closed`
     * are guarded by the lock. */
    alignas(WEIR_CACHELINE) _Atomic uint64_t timer_next;
    _Atomic uint32_t timekeeper;
    pthread_mutex_t timer_lock;
    weir__tentry *timer_heap;
    size_t timer_len, timer_cap;
    uint64_t timer_seq;
    bool timers_closed; /* set by destroy once the workers stopped */

    /* Lifecycle state, one of WEIR__RT_*: RUNNING until weir_runtime_destroy()
     * begins, STOPPING while it drains and joins the workers, DESTROYED once
     * it freed everything but this struct (an attached layer still holds the
     * handle; see "Lifetime" in runtime.c). Every nonzero value means
     * "stopping" to the code that only asks that. */
    alignas(WEIR_CACHELINE) _Atomic int stopping;
    /* References to this struct: one held by the owner from create to
     * destroy, plus one per weir_runtime_attach(). Whoever drops the last
     * one frees it (unref() and weir_runtime_detach() in runtime.c). */
    _Atomic unsigned long refs;
    /* Threads inside weir_submit() from outside the workers, between their
     * check of `stopping` and the end of their injection: the workers do
     * not leave destroy's drain while one is in flight (job.c, worker.c). */
    _Atomic int submitters;
    _Atomic unsigned started; /* workers that have pinned themselves */
    weir_latch all_started;
    uint64_t created_ns;
};

enum { WEIR__RT_RUNNING = 0, WEIR__RT_STOPPING = 1, WEIR__RT_DESTROYED = 2 };

/* True once weir_runtime_destroy() has freed the workers, deques, plan and
 * topology of `rt`: only the struct is left, kept alive by an attachment.
 * Calls that would read what was freed check this first.
 * acquire: pairs with the release store of DESTROYED in destroy, so a caller
 * that sees it also sees `workers` NULL. A caller that sees an earlier state
 * and goes on to read the workers must not run concurrently with destroy
 * (that stays a misuse; see runtime.h). */
static inline bool weir__runtime_destroyed(const weir_runtime *r)
{
    return atomic_load_explicit(&((weir_runtime *)r)->stopping, memory_order_acquire) ==
           WEIR__RT_DESTROYED;
}

/* describe.c */
/* Where each field of `cfg` came from (WEIR__SRC_* into src[WEIR__CFG_*]),
 * judged against the build defaults and the environment. @return 0 or
 * -ENOMEM. */
int weir__config_sources(const weir_config *cfg, unsigned char *src);
/* The WEIR_DISPLAY_ENV report of `rt` to the log (level 2: verbose). */
void weir__display_env(const weir_runtime *rt, int level);

/* fjdeque.c */
int weir__fj_init(weir_worker *w, unsigned initial);
void weir__fj_destroy(weir_worker *w);
/* One steal attempt on v's frames; runs the frame on `self` with frame stack
 * top `sp`. @return WEIR__STEAL_OK / _EMPTY / _LOST. */
int weir__fj_steal(weir_worker *self, weir_worker *v, weir_frame *sp);
bool weir__fj_maybe_public(weir_worker *v);
/* Ask v to publish frames at its next spawn (thieves, parking workers). */
void weir__fj_request(weir_worker *v);
/* Run a fork-join root from a thread that is not a worker: inject, block. */
int weir__fj_run_root_remote(weir_runtime *rt, weir_frame *root);

/* worker.c */
void *weir__worker_main(void *arg);
weir_worker *weir__self(void);
void weir__run_job(weir_worker *w, weir_job *job);
/* One round over the victims, nearest first; frames then jobs.
 * `sp` is the frame stack top to run a stolen frame with. */
bool weir__steal_round(weir_worker *w, weir_frame *sp, bool frames_only);

/* park.c */
void weir__notify(weir_runtime *rt);
void weir__notify_all(weir_runtime *rt);
/* Idle-loop bookkeeping: enter counts the worker as spinning; found_work is
 * called right before running work the worker found (it stops counting, and
 * wakes a successor if it was the last spinner and others sleep). */
void weir__spin_enter(weir_worker *w);
/* Sleep until notified (or work appears). Returns at once if work is visible. */
void weir__park(weir_worker *w);
bool weir__work_visible(weir_runtime *rt, weir_worker *self);
/* Work in any queue or public part (ignores `stopping`). */
bool weir__work_pending(weir_runtime *rt, weir_worker *self);
int weir__futex_wait(_Atomic uint32_t *addr, uint32_t val, const struct timespec *rel);
void weir__futex_wake(_Atomic uint32_t *addr, int n);
/* FUTEX_WAIT_BITSET: wait while *addr == val, until `deadline_ns`
 * (CLOCK_MONOTONIC, absolute; UINT64_MAX = no timeout), for a wake whose
 * bits meet `bits`. @return 0 or a negative errno (-EAGAIN, -ETIMEDOUT,
 * -EINTR). */
int weir__futex_wait_bits(_Atomic uint32_t *addr, uint32_t val, uint64_t deadline_ns,
                          uint32_t bits);
/* FUTEX_WAKE_BITSET: wake up to n waiters whose bits meet `bits`. */
void weir__futex_wake_bits(_Atomic uint32_t *addr, int n, uint32_t bits);

/* timer.c */
/* The futex bits a parked worker waits with (park.c): every sleeper waits
 * for WORK; the timekeeper also for TIMER, which an arm that moves the
 * earliest deadline sends so that only the timekeeper wakes. */
enum { WEIR__WAKE_WORK = 1u, WEIR__WAKE_TIMER = 2u };
void weir__timers_init(weir_runtime *rt);
void weir__timers_fini(weir_runtime *rt);
/* Fire the timers that are due (at most a batch): their jobs go to w's job
 * deque, earliest on top. Reads the clock only if a timer is armed.
 * @return the number fired. */
unsigned weir__timers_poll(weir_worker *w);
/* Destroy, once the workers are joined: refuse later arms, drop every armed
 * timer (WEIR_TIMER_DROPPED). @return how many were dropped. */
size_t weir__timers_shutdown(weir_runtime *rt);

/* job.c */
void weir__inject(weir_runtime *rt, weir_job *job);
/* Take every injected job: the first is returned, the others go to w's deque. */
weir_job *weir__inject_take(weir_runtime *rt, weir_worker *w);
bool weir__inject_maybe_nonempty(weir_runtime *rt);

void weir__spin_exit(weir_worker *w);

static inline void weir__found_work(weir_worker *w)
{
    if (w->spinning)
        weir__spin_exit(w);
}

static inline void weir__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t weir__rand(uint64_t *s)
{
    /* xorshift64*: owner-private victim selection */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif /* WEIR_RUNTIME_SCHEDULER_H */
