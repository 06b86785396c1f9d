/*
 * Detached jobs: submission (own deque or injection queue), dependency
 * counters, latches, and fork-join roots started from outside the runtime.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "scheduler.h"
#include "tracing.h"

/* liburcu 0.13's uatomic operations are inline assembly and volatile
 * accesses, which ThreadSanitizer cannot see: tell it that enqueuing a job
 * happens-before dequeuing it (the queue's own barriers guarantee it). */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TSAN_RELEASE(p) __tsan_release(p)
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define TSAN_RELEASE(p) ((void)(p))
#define TSAN_ACQUIRE(p) ((void)(p))
#endif

_Static_assert(sizeof(struct cds_wfcq_node) == sizeof(void *),
               "weir_job.weir__next must be able to hold a cds_wfcq_node");

static inline struct cds_wfcq_node *node_of(weir_job *job)
{
    return (struct cds_wfcq_node *)(void *)&job->weir__next;
}

static inline weir_job *job_of(struct cds_wfcq_node *n)
{
    return (weir_job *)(void *)((char *)n - offsetof(weir_job, weir__next));
}

void weir_job_init(weir_job *job, weir_job_fn fn, void *arg, int32_t deps)
{
    job->fn = fn;
    job->arg = arg;
    job->then = NULL;
    atomic_init(&job->deps, deps);
    job->weir__flags = 0;
    job->weir__next = NULL;
}

void weir__inject(weir_runtime *rt, weir_job *job)
{
    cds_wfcq_node_init(node_of(job));
    TSAN_RELEASE(job);
    /* cds_wfcq_enqueue is wait-free and a full barrier (uatomic_xchg), so the
     * job's contents are visible to the worker that dequeues it. */
    cds_wfcq_enqueue(&rt->ihead, &rt->itail, node_of(job));
}

bool weir__inject_maybe_nonempty(weir_runtime *rt)
{
    return !cds_wfcq_empty(&rt->ihead, &rt->itail);
}

weir_job *weir__inject_take(weir_runtime *rt, weir_worker *w)
{
    if (cds_wfcq_empty(&rt->ihead, &rt->itail))
        return NULL;
    /* Take the whole queue in one splice (one lock round trip per batch, not
     * per job), keep the first job to run, and push the rest onto our own
     * deque where the other workers can steal them. */
    struct __cds_wfcq_head h;
    struct cds_wfcq_tail t;
    __cds_wfcq_init(&h, &t);
    /* the dequeue lock serialises workers taking from the queue; enqueuers
     * are wait-free and never take it */
    cds_wfcq_dequeue_lock(&rt->ihead, &rt->itail);
    enum cds_wfcq_ret r = __cds_wfcq_splice_blocking(&h, &t, &rt->ihead, &rt->itail);
    cds_wfcq_dequeue_unlock(&rt->ihead, &rt->itail);
    if (r == CDS_WFCQ_RET_SRC_EMPTY)
        return NULL;
    weir_job *first = NULL;
    struct cds_wfcq_node *n;
    /* `h` is ours alone: the lock-free dequeue needs no mutual exclusion */
    while ((n = __cds_wfcq_dequeue_blocking(&h, &t)) != NULL) {
        weir_job *job = job_of(n);
        TSAN_ACQUIRE(job);
        WEIR__INC(w, injected, 1);
        if (!first)
            first = job;
        else if (weir__jd_push(&w->jd, job) != 0)
            weir__inject(rt, job); /* our deque cannot grow: back to the queue */
    }
    if (first && weir__jd_maybe_nonempty(&w->jd))
        weir__notify(rt);
    return first;
}

void weir_worker_submit(weir_worker *w, weir_job *job)
{
    if (WEIR_UNLIKELY(weir__jd_push(&w->jd, job) != 0)) {
        /* the local deque could not grow: the injection queue is intrusive
         * and never allocates */
        weir__inject(w->rt, job);
    } else {
        WEIR__INC(w, jobs_submitted, 1);
    }
    weir__notify(w->rt);
}

int weir_submit(weir_runtime *rt, weir_job *job)
{
    if (!rt || !job)
        return weir__error(-EINVAL, "weir_submit: %s is NULL", rt ? "job" : "runtime");
    if (!job->fn)
        return weir__error(-EINVAL, "weir_submit: job has no function (use weir_job_init)");
    /* relaxed: a misuse check; the releaser that reaches 0 submits itself */
    int32_t deps = atomic_load_explicit(&job->deps, memory_order_relaxed);
    if (deps > 0)
        return weir__error(-EINVAL,
                           "weir_submit: the job waits for %d dependencies "
                           "(weir_job_release() submits it when they are done)",
                           (int)deps);
    weir_worker *w = weir_runtime_self(rt);
    if (w) {
        /* workers may submit while destroy drains: it runs their jobs too */
        weir_worker_submit(w, job);
        return 0;
    }
    /* A submit racing with destroy must either be refused or be run by the
     * drain: announce ourselves, then look at `stopping`. seq_cst on both
     * (a Dekker pair with destroy's seq_cst CAS of `stopping` and the
     * worker's seq_cst loads of `stopping` then `submitters` before it
     * leaves the drain, runtime/worker.c): if we read RUNNING, our increment
     * precedes destroy's CAS in the single order of seq_cst operations, so
     * a worker that saw STOPPING sees us in flight and stays. Nonzero
     * `stopping` is STOPPING or DESTROYED (the handle kept alive by an
     * attachment, see runtime.c, "Lifetime"). Two uncontended RMWs on the
     * outside-submit path only; workers submit without them. */
    atomic_fetch_add_explicit(&rt->submitters, 1, memory_order_seq_cst);
    int st = atomic_load_explicit(&rt->stopping, memory_order_seq_cst);
    if (st != WEIR__RT_RUNNING) {
        /* relaxed: we touched nothing the workers need */
        atomic_fetch_sub_explicit(&rt->submitters, 1, memory_order_relaxed);
        return weir__error(-ESHUTDOWN, "weir_submit: the runtime %s",
                           st == WEIR__RT_DESTROYED ? "was destroyed" : "is being destroyed");
    }
    weir__inject(rt, job);
    weir__notify(rt);
    /* release: pairs with the worker's seq_cst (so acquire) load of
     * `submitters` in its drain: once it reads our decrement, its look at
     * the injection queue sees the job. */
    atomic_fetch_sub_explicit(&rt->submitters, 1, memory_order_release);
    return 0;
}

int weir_job_release(weir_runtime *rt, weir_job *job)
{
    if (!rt || !job)
        return weir__error(-EINVAL, "weir_job_release: %s is NULL", rt ? "job" : "runtime");
    /* acq_rel: every releaser's writes happen-before the run of the job —
     * release by each releaser, acquire by the last one, which submits. */
    int32_t old = atomic_fetch_sub_explicit(&job->deps, 1, memory_order_acq_rel);
    if (old > 1)
        return 0;
    if (old < 1) {
        atomic_fetch_add_explicit(&job->deps, 1, memory_order_relaxed);
        return weir__error(-EINVAL, "weir_job_release: the job has no dependency left to release");
    }
    int err = weir_submit(rt, job);
    return err ? err : 1;
}

/* ------------------------------------------------------------ latches */

void weir_latch_init(weir_latch *l)
{
    atomic_init(&l->state, 0);
}

/* state: 0 = not set, 2 = not set and somebody may sleep, 1 = set */
void weir_latch_set(weir_latch *l)
{
    /* release: pairs with the acquire in waiters' loads */
    uint32_t old = atomic_exchange_explicit(&l->state, 1, memory_order_release);
    if (old == 2)
        weir__futex_wake(&l->state, INT_MAX);
}

static bool latch_wait(weir_latch *l, const struct timespec *deadline)
{
    for (int spin = 0; spin < 200; spin++) {
        if (atomic_load_explicit(&l->state, memory_order_acquire) == 1)
            return true;
        weir__cpu_relax();
    }
    for (;;) {
        uint32_t s = atomic_load_explicit(&l->state, memory_order_acquire);
        if (s == 1)
            return true;
        if (s == 0 && !atomic_compare_exchange_strong_explicit(
                          &l->state, &s, 2, memory_order_acquire, memory_order_acquire)) {
            if (s == 1)
                return true;
        }
        struct timespec rel, *relp = NULL;
        if (deadline) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t ns = (deadline->tv_sec - now.tv_sec) * 1000000000LL +
                         (deadline->tv_nsec - now.tv_nsec);
            if (ns <= 0)
                return atomic_load_explicit(&l->state, memory_order_acquire) == 1;
            rel.tv_sec = ns / 1000000000LL;
            rel.tv_nsec = ns % 1000000000LL;
            relp = &rel;
        }
        weir__futex_wait(&l->state, 2, relp);
    }
}

void weir_latch_wait(weir_latch *l)
{
    latch_wait(l, NULL);
}

bool weir_latch_wait_for(weir_latch *l, uint64_t timeout_ns)
{
    struct timespec d;
    clock_gettime(CLOCK_MONOTONIC, &d);
    d.tv_sec += (time_t)(timeout_ns / 1000000000ULL);
    d.tv_nsec += (long)(timeout_ns % 1000000000ULL);
    if (d.tv_nsec >= 1000000000L) {
        d.tv_sec++;
        d.tv_nsec -= 1000000000L;
    }
    return latch_wait(l, &d);
}

/* ------------------------------------------------------------ remote roots */

typedef struct root_ctx {
    weir_job job;
    weir_frame *frame;
    weir_latch done;
} root_ctx;

static void root_job(weir_worker *w, weir_job *job)
{
    root_ctx *c = (root_ctx *)(void *)job;
    w->fj_depth++;
    if (weir__tracing())
        weir__trace_root(w, w->segs[0], c->frame);
    else
        ((weir__frame_fn)c->frame->run)(w, w->segs[0], c->frame);
    w->fj_depth--;
    weir_latch_set(&c->done);
}

int weir__fj_run_root_remote(weir_runtime *rt, weir_frame *root)
{
    root_ctx c;
    weir_job_init(&c.job, root_job, NULL, 0);
    c.frame = root;
    weir_latch_init(&c.done);
    int err = weir_submit(rt, &c.job);
    if (err)
        return err;
    weir_latch_wait(&c.done);
    return 0;
}
