/*
 * weir — timers: run a job at or after a deadline, holding no worker.
 *
 * A timer is a caller-owned descriptor (no allocation per timer, like a
 * weir_job). Arming it with weir_submit_at() or weir_submit_after() from any
 * thread puts it in the runtime's timer heap; once its deadline has passed, a
 * worker submits its job to its own deque, and the job runs like any
 * submitted job. Nothing waits for the deadline: no thread per timer, no
 * worker blocked. An idle runtime with armed timers sleeps until the earliest
 * deadline (one parked worker, the timekeeper, sleeps with that timeout).
 *
 *   weir_timer t;
 *   weir_timer_init(&t);
 *   weir_job_init(&job, flush, ctx, 0);
 *   weir_submit_after(rt, &job, 5000000, &t);   // run flush() in 5 ms
 *   ...
 *   if (weir_timer_cancel(rt, &t) == 0) { ... it will not run ... }
 *
 * A job is never run before its deadline (CLOCK_MONOTONIC, weir_now_ns()); how
 * late it may run is described in docs/design.md ("Timers"). Timers fire
 * (their jobs are submitted) in the order of their deadlines, equal deadlines
 * in the order they were armed: when a timer's job runs, every timer that was
 * armed and due before it has fired. Jobs fired at different moments may run
 * in any order, like any submitted jobs. A job may re-arm its own timer
 * (periodic use): from inside the job the timer is FIRED and can be armed
 * again.
 *
 * Destroy: timers that fire before weir_runtime_destroy() has stopped the
 * workers have their jobs run by the drain. Arms after destroy began are
 * refused (-ESHUTDOWN). Every timer still armed when the workers have
 * stopped is dropped: its job never runs (unless weir_timer_run_on_drop()
 * asked for it), weir_timer_status() reports WEIR_TIMER_DROPPED, and destroy
 * logs a warning with their number (weir_set_log()). Nothing is lost
 * silently.
 *
 * | operation           | who may call            | concurrently with                |
 * |---------------------|-------------------------|----------------------------------|
 * | weir_timer_init     | owner of the memory     | nothing on that timer            |
 * | weir_submit_at      | any thread, workers too | cancel, firing, status; not with |
 * | weir_submit_after   |                         | another arm of the same timer    |
 * | weir_timer_cancel   | any thread              | arm, firing, other cancels       |
 * | weir_timer_status   | any thread              | anything                         |
 * | weir_now_ns         | any thread              | anything                         |
 */
#ifndef WEIR_TIMER_H
#define WEIR_TIMER_H

#include <stdint.h>

#include "common.h"
#include "job.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where a timer is in its life (weir_timer_status()). */
typedef enum weir_timer_state {
    WEIR_TIMER_IDLE = 0,  /**< initialised, never armed */
    WEIR_TIMER_ARMED,     /**< waiting for its deadline */
    WEIR_TIMER_FIRED,     /**< its deadline passed and its job was submitted */
    WEIR_TIMER_CANCELLED, /**< weir_timer_cancel() removed it before it fired */
    WEIR_TIMER_DROPPED,   /**< still armed when the runtime stopped: never fired */
} weir_timer_state;

/**
 * A timer. The caller owns the memory, which must stay valid while the timer
 * is armed (until it fires, is cancelled or is dropped by destroy). Only
 * `deadline_ns` is meant to be read by the caller; the other fields are the
 * runtime's.
 */
typedef struct weir_timer {
    uint64_t deadline_ns;              /**< the deadline of the last arm (CLOCK_MONOTONIC, ns) */
    weir_job *weir__job;               /**< private: the job to submit */
    weir_runtime *weir__rt;            /**< private: the runtime it was armed on */
    uint64_t weir__seq;                /**< private: arm order, breaks deadline ties */
    size_t weir__index;                /**< private: position in the heap */
    WEIR_ATOMIC(uint32_t) weir__state; /**< private: a weir_timer_state */
    bool weir__run_on_drop;            /**< private: weir_timer_run_on_drop() */
} weir_timer;

/** Prepare a timer (state WEIR_TIMER_IDLE). A zero-filled weir_timer is also
 *  a valid idle timer. */
WEIR_API void weir_timer_init(weir_timer *t);

/**
 * Arm `t` to submit `job` to `rt` once CLOCK_MONOTONIC reaches `deadline_ns`
 * (a deadline in the past fires at the next opportunity). Any thread, workers
 * included. The job follows weir_submit()'s rules: it must not be submitted
 * elsewhere until the timer fired and its run has started (a job re-arming
 * its own timer is the periodic pattern). Allocates only when the number of
 * timers armed on `rt` reaches a new high (the heap array doubles), never
 * per timer.
 * @return 0; -EINVAL for NULL arguments, a job without function, or a job
 *         that still waits for dependencies; -EBUSY if `t` is armed already;
 *         -ENOMEM if the heap array could not grow (nothing was armed);
 *         -ESHUTDOWN once weir_runtime_destroy() has begun (also from its
 *         workers, so that a periodic timer ends with the runtime).
 */
WEIR_API int weir_submit_at(weir_runtime *rt, weir_job *job, uint64_t deadline_ns, weir_timer *t);

/** weir_submit_at() with the deadline weir_now_ns() + `delay_ns` (saturating).
 *  @return as weir_submit_at(). */
WEIR_API int weir_submit_after(weir_runtime *rt, weir_job *job, uint64_t delay_ns, weir_timer *t);

/**
 * Cancel an armed timer. Exactly one of "cancelled" and "fired" happens to
 * each arm, also when the deadline passes during the call: if this returns
 * 0 the job will not be submitted by this arm; if it returns -EALREADY the
 * job was (or is being) submitted and runs. `rt` must be the runtime `t` was
 * armed on. Any thread.
 * @return 0 (cancelled: state WEIR_TIMER_CANCELLED); -EALREADY if the timer
 *         fired; -ENOENT if it is not armed (idle, or cancelled already);
 *         -ESHUTDOWN if the runtime's destroy dropped it (or `rt` was
 *         destroyed); -EINVAL for NULL arguments.
 */
WEIR_API int weir_timer_cancel(weir_runtime *rt, weir_timer *t);

/** The state of `t` (any thread, no runtime needed: readable after the
 *  runtime was destroyed). A FIRED state seen here happens after the timer
 *  fired, not necessarily after its job ran. */
WEIR_API weir_timer_state weir_timer_status(const weir_timer *t);

/**
 * Ask that `t`'s job run even if weir_runtime_destroy() drops the timer:
 * then, after the workers have stopped, destroy calls the job on its own
 * thread (worker NULL) and the status still reads WEIR_TIMER_DROPPED. For a
 * layer that must learn of the shutdown from its timer (the term layer: a
 * stage waiting only for its timer). Set before arming; it stays set.
 */
WEIR_API void weir_timer_run_on_drop(weir_timer *t);

/** CLOCK_MONOTONIC in nanoseconds: the clock of every deadline. */
WEIR_API uint64_t weir_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_TIMER_H */
