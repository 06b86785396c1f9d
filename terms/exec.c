/*
 * weir terms — pool execution: the activation state machine.
 *
 * Each stage embeds one weir_job. Its `state` word guarantees at most one
 * activation at a time and no lost wake-up:
 *
 *   notify:  old = fetch_or(state, NOTIFIED)
 *            old == IDLE  -> this notifier made it runnable: submit the job
 *            otherwise    -> it is queued, running, or DONE: nothing to do
 *   run:     exchange(state, RUNNING)          (clears NOTIFIED: we look now)
 *            activation (at most B records)
 *            PROGRESS -> run again until the time slice is used up, then
 *                        resubmit; state stays RUNNING (nobody else submits)
 *            WAIT     -> CAS(RUNNING -> IDLE); if it fails a notification
 *                        arrived after we looked: resubmit
 *            FINISHED -> DONE was set inside the activation; never touch
 *                        the stage again
 *
 * Every change a notifier makes (records published, a tail advanced, a flag
 * set) happens before its fetch_or; the activation's exchange or its failed
 * CAS reads that fetch_or's value (or a later one in the modification order
 * of `state`), so it sees the change. A stage with nothing to do is IDLE and
 * costs nothing: 10 000 idle branches are 10 000 words in memory.
 *
 * Memory orders: fetch_or acq_rel (release: the notifier's writes to the
 * activation; acquire: the previous activation's writes, which the CAS to
 * IDLE released, to the job it submits); exchange acquire (pairs with that
 * fetch_or); CAS acq_rel (release: this activation's private writes to the
 * next one; acquire on failure: what the late notifier wrote).
 */
#include "internal.h"

static void weir__submit(weir__stage *s, weir_worker *w);
static void weir__unbusy_check(weir_pipeline *p, weir_worker *w);

static void weir__stage_job(weir_worker *w, weir_job *job)
{
    weir__stage *s = job->arg;
    /* acquire: pairs with the acq_rel fetch_or of the notify that submitted
     * us (or with our own resubmit, which is in program order). */
    atomic_exchange_explicit(&s->state, WEIR__ST_RUNNING, memory_order_acquire);
    if (WEIR_UNLIKELY(weir_runtime_stopping(s->p->rt)))
        weir__pipeline_shutdown(s->p, w);
    weir__run r;
    /* Run activations back to back while they make progress, up to the
     * time slice: a resubmit is a deque push that wakes an idle worker to
     * steal the stage, which then bounces between cores for no gain when it
     * is the only work. Each activation still publishes its batch and
     * notifies its consumers, which other workers can steal meanwhile. */
    const uint64_t slice = s->p->cfg.slice_ns;
    const bool timing = s->p->cfg.timing;
    uint64_t t0 = slice ? weir__terms_now_ns() : 0;
    for (;;) {
        r = WEIR_UNLIKELY(weir_trace_enabled()) ? weir__stage_run_traced(s, w)
                                                : weir__stage_run(s, w);
        if (r != WEIR__PROGRESS || !slice)
            break;
        /* With timing on, the activation has just read the clock. */
        uint64_t now = timing ? s->last_now : weir__terms_now_ns();
        if (now - t0 >= slice)
            break;
    }
    if (r == WEIR__FINISHED)
        return;
    if (r == WEIR__WAIT) {
        weir_pipeline *p = s->p;
        /* Once we are IDLE another worker may run us to the end and the
         * pipeline may be destroyed: register as a watcher first (destroy
         * waits for watchers), and touch only `p` afterwards.
         * relaxed: the stage is running, the pipeline cannot be freed yet. */
        atomic_fetch_add_explicit(&p->watchers, 1, memory_order_relaxed);
        uint32_t exp = WEIR__ST_RUNNING;
        /* acq_rel: release our writes to whoever submits us next (its
         * fetch_or acquires them); acquire on failure: see above. */
        bool idle = atomic_compare_exchange_strong_explicit(
            &s->state, &exp, WEIR__ST_IDLE, memory_order_acq_rel, memory_order_acquire);
        if (idle)
            weir__unbusy_check(p, w);
        /* release: our last access to the pipeline happens before destroy's
         * acquire load sees the count drop. */
        atomic_fetch_sub_explicit(&p->watchers, 1, memory_order_release);
        if (idle)
            return;
    }
    if (timing)
        atomic_store_explicit(&s->queued_at, weir__terms_now_ns(), memory_order_relaxed);
    weir__submit(s, w);
}

static void weir__submit(weir__stage *s, weir_worker *w)
{
    if (w) {
        /* Stages are only ever submitted to their pipeline's runtime, so a
         * worker passed down from a job body belongs to it. */
        weir_worker_submit(w, &s->job);
        return;
    }
    int r = weir_submit(s->p->rt, &s->job);
    if (r < 0) {
        /* The runtime is shutting down under a running pipeline (a misuse):
         * record it, and run the activation here so the stage still ends
         * (it sees the cancel and finishes) and join cannot hang. */
        weir__pipeline_fail(s->p, s->nodes[0].term, r,
                            "cannot schedule the stage (runtime shut down?)", NULL);
        weir__stage_job(NULL, &s->job);
    }
}

void weir__exec_pool_init(weir__stage *s)
{
    weir_job_init(&s->job, weir__stage_job, s, 0);
    atomic_init(&s->state, WEIR__ST_IDLE);
}

void weir__stage_notify(weir__stage *s, weir_worker *w)
{
    if (s->thread) {
        weir__thread *th = s->thread;
        pthread_mutex_lock(&th->mu);
        th->flag = true;
        if (th->sleeping) {
            /* The deadlock watch: the sleeper left `busy`; count it again on
             * its behalf, before our own decrement (we are busy ourselves:
             * a running stage or an API call's token), so `busy` cannot pass
             * through 0 between our notify and its waking. relaxed: an RMW
             * (see notify below); the state store is read by the scan of
             * weir__unbusy_check(), release: pairs with its acquire load. */
            th->sleeping = false;
            atomic_fetch_add_explicit(&s->p->busy, 1, memory_order_relaxed);
            atomic_store_explicit(&s->state, WEIR__ST_RUNNING, memory_order_release);
        }
        pthread_cond_signal(&th->cv);
        pthread_mutex_unlock(&th->mu);
        return;
    }
    /* acq_rel: see the header comment of this file. */
    uint32_t old = atomic_fetch_or_explicit(&s->state, WEIR__ST_NOTIFIED, memory_order_acq_rel);
    if (old != WEIR__ST_IDLE)
        return;
    /* relaxed: an RMW; the stage's own decrement happens after its job runs,
     * which the submit below orders after this increment. */
    atomic_fetch_add_explicit(&s->p->busy, 1, memory_order_relaxed);
    if (s->p->cfg.timing)
        atomic_store_explicit(&s->queued_at, weir__terms_now_ns(), memory_order_relaxed);
    weir__submit(s, w);
}

/*
 * Deadlock watch. A stage waits only for a stream event (input, or space)
 * that another stage produces, and `busy` counts the stages that are
 * notified or running. Notify increments it when it takes a stage out of
 * IDLE; a stage decrements it after it went back to IDLE (the CAS above) or
 * finished (weir__end). A stage on its own thread (threads and hybrid modes,
 * blocking sources) counts as busy while awake: it is RUNNING from start,
 * goes IDLE and decrements when it goes to sleep with no notification
 * pending (weir__exec_thread_wait, under its mutex), and the notify that
 * wakes it sets it RUNNING and increments on its behalf (above). A blocking
 * source inside its own callback is awake, so a pipeline waiting on a slow
 * source is never mistaken for a deadlock. A
 * stage always notifies the stages its progress unblocks *before* it goes
 * idle, so `busy` cannot pass through 0 while work remains. If it reaches 0
 * with stages still live, and every live stage is IDLE, nothing will ever
 * notify them: that is a deadlock of bounded streams (e.g. a zip fed by two
 * branches of one source, one of which filters: the zip waits on the empty
 * side while the full side holds the source back). Fail the pipeline with
 * -EDEADLK instead of hanging; join returns it. A stop or cancel racing with
 * the check makes a stage non-IDLE first, so it is never misread. A thread
 * that notifies several stages in a row (start, stop, cancel) holds a token
 * of its own (weir__pipeline_busy/unbusy) for the whole loop: otherwise the
 * first stages could run and go idle before the later ones are notified.
 */
void weir__stage_unbusy(weir__stage *s, weir_worker *w)
{
    weir__unbusy_check(s->p, w);
}

void weir__pipeline_busy(weir_pipeline *p)
{
    /* relaxed: RMWs; the caller holds the pipeline (a started pipeline
     * whose API call is in progress), see weir__stage_notify() for busy */
    atomic_fetch_add_explicit(&p->watchers, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->busy, 1, memory_order_relaxed);
}

void weir__pipeline_unbusy(weir_pipeline *p, weir_worker *w)
{
    weir__unbusy_check(p, w);
    /* release: see the stage path in weir__stage_job() */
    atomic_fetch_sub_explicit(&p->watchers, 1, memory_order_release);
}

static void weir__unbusy_check(weir_pipeline *p, weir_worker *w)
{
    /* acq_rel: the last decrement sees every stage's state as written
     * before its own decrement (the decrements form a release sequence). */
    if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) != 1)
        return;
    /* acquire: pairs with the release in weir__pipeline_stage_done(). */
    if (atomic_load_explicit(&p->live, memory_order_acquire) <= 0)
        return;
    weir__stage *waiting = NULL;
    unsigned idle = 0;
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *t = p->stages[k];
        /* acquire: pairs with the acq_rel state changes of notify / idle. */
        uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
        if (st & WEIR__ST_DONE)
            continue; /* finished (a finishing stage marks itself first) */
        if (st != WEIR__ST_IDLE)
            return; /* notified or running: not stuck */
        idle++;
        /* name a zip or merge if there is one: that is where it locks */
        if (t->ninputs > 0 && (!waiting || (waiting->ninputs < 2 && t->ninputs > 1)))
            waiting = t;
    }
    if (idle == 0)
        return; /* the last stage finishing: the normal end */
    /* seq_cst: a notify that slipped in after our scan made `busy` > 0 */
    if (atomic_load_explicit(&p->busy, memory_order_seq_cst) != 0)
        return;
    if (!waiting)
        waiting = p->stages[0];
    weir__pipeline_fail(p, waiting->nodes[0].term, -EDEADLK,
                        "pipeline deadlocked: every unfinished stage waits for input or for "
                        "space in a bounded stream (a zip or merge fed by branches of one "
                        "source that change the rate needs a larger stream capacity)",
                        w);
}
