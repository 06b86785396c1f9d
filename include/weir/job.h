/*
 * weir — detached jobs, dependency counters and latches.
 *
 * A job is a caller-owned descriptor (no allocation per submit): a function,
 * a user pointer, a dependency counter and an optional successor. Submitting
 * a job schedules one run of `fn` on some worker. A job may be submitted
 * again once its previous run has started (typically from inside its own
 * `fn`), which is how the term layer re-activates a term.
 *
 * Dependency counters: weir_job_init(&c, fn, arg, 2) makes `c` wait for two
 * weir_job_release() calls; weir_job_then(&a, &c) makes the runtime release
 * `c` right after `a`'s function returns. "Run C when A and B are done":
 *
 *   weir_job_init(&c, fc, NULL, 2);
 *   weir_job_init(&a, fa, NULL, 0); weir_job_then(&a, &c);
 *   weir_job_init(&b, fb, NULL, 0); weir_job_then(&b, &c);
 *   weir_submit(rt, &a); weir_submit(rt, &b);
 *
 * | operation            | who may call            | concurrently with            |
 * |----------------------|-------------------------|------------------------------|
 * | weir_job_init        | owner of the memory     | nothing on that job          |
 * | weir_job_then        | owner, before submit    | nothing on that job          |
 * | weir_submit          | any thread              | anything, other jobs         |
 * | weir_worker_submit   | worker `w` only         | anything, other jobs         |
 * | weir_job_release     | any thread              | other releases of that job   |
 * | weir_latch_set/wait  | any thread              | each other                   |
 */
#ifndef WEIR_JOB_H
#define WEIR_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weir_job weir_job;

/** A job's body. `w` is the worker running it. The job's memory may be reused
 *  or freed by `fn` itself (after it read what it needs), unless the job has a
 *  successor (weir_job_then), which the runtime reads before calling `fn`. */
typedef void (*weir_job_fn)(weir_worker *w, weir_job *job);

struct weir_job {
    weir_job_fn fn;
    void *arg;                 /**< user data, untouched by weir */
    weir_job *then;            /**< released after fn returns (NULL = none) */
    WEIR_ATOMIC(int32_t) deps; /**< outstanding dependencies */
    int32_t weir__flags;       /**< private */
    void *weir__next;          /**< private: injection queue link */
};

/** Prepare a job that becomes runnable after `deps` calls of weir_job_release()
 *  (0 = runnable now, submit it with weir_submit()). */
WEIR_API void weir_job_init(weir_job *job, weir_job_fn fn, void *arg, int32_t deps);

/** After `job`'s function returns, release `next` once. */
static inline void weir_job_then(weir_job *job, weir_job *next)
{
    job->then = next;
}

/**
 * Schedule one run of `job` on `rt`. From a worker of `rt` the job goes to that
 * worker's own deque (other workers may steal it); from any other thread it
 * goes through the runtime's injection queue. Wakes a sleeping worker.
 * @return 0; -EINVAL for NULL arguments, a job without function, or a job
 *         that still waits for dependencies (weir_job_release() submits it);
 *         -ESHUTDOWN once weir_runtime_destroy() has begun (from a thread
 *         that is not one of its workers).
 */
WEIR_API int weir_submit(weir_runtime *rt, weir_job *job);

/** weir_submit() for code that runs on worker `w` (a job body or task): skips
 *  the thread-local lookup. Never fails. */
WEIR_API void weir_worker_submit(weir_worker *w, weir_job *job);

/**
 * Drop one dependency of `job`; when the count reaches zero the job is
 * submitted. @return 1 if this call submitted the job, 0 if dependencies
 * remain, -EINVAL if the count was already zero (a release too many; the job
 * is not submitted twice).
 */
WEIR_API int weir_job_release(weir_runtime *rt, weir_job *job);

/**
 * A one-shot event a thread can block on (futex based, no spinning after a
 * short while). Any thread may set it; waiting threads return once it is set.
 */
typedef struct weir_latch {
    WEIR_ATOMIC(uint32_t) state;
} weir_latch;

WEIR_API void weir_latch_init(weir_latch *l);
WEIR_API void weir_latch_set(weir_latch *l);
WEIR_API void weir_latch_wait(weir_latch *l);
/** Wait at most `timeout_ns`. @return true if the latch is set. */
WEIR_API bool weir_latch_wait_for(weir_latch *l, uint64_t timeout_ns);
static inline bool weir_latch_is_set(weir_latch *l)
{
    /* acquire: pairs with the release in weir_latch_set(), so what the setter
     * wrote before setting is visible to the caller. */
    /* 1 = set; 0 and 2 (a waiter may sleep, e.g. after a timed-out wait)
     * both mean "not set" */
    return WEIR__LOAD(&l->state, acquire) == 1;
}

#ifdef __cplusplus
}
#endif
#endif /* WEIR_JOB_H */
