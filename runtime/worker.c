/*
 * A worker: pin, then loop — own jobs, injected jobs, steal (nearest victims
 * first, frames before jobs), spin for a while, park.
 */
#include <stdio.h>
#include <string.h>

#include "scheduler.h"
#include "tracing.h"

static _Thread_local weir_worker *tls_self;

weir_worker *weir__self(void)
{
    return tls_self;
}

weir_worker *weir_runtime_self(const weir_runtime *rt)
{
    weir_worker *w = tls_self;
    return (w && w->rt == rt) ? w : NULL;
}

weir_runtime *weir_worker_runtime(const weir_worker *w)
{
    return w->rt;
}

unsigned weir_worker_index(const weir_worker *w)
{
    return w->index;
}

void weir__run_job(weir_worker *w, weir_job *job)
{
    /* read before fn: fn may free or resubmit the job */
    weir_job *next = job->then;
    if (weir__tracing())
        weir__trace_job(w, job);
    else
        job->fn(w, job);
    WEIR__INC(w, tasks_run, 1);
    if (next)
        (void)weir_job_release(w->rt, next);
}

/* Try victim v once: its public frames, then its jobs. */
static bool try_victim(weir_worker *w, weir_worker *v, weir_frame *sp, bool frames_only)
{
    WEIR__INC(w, steal_attempts, 1);
    int r = weir__fj_steal(w, v, sp);
    if (r == WEIR__STEAL_OK) {
        WEIR__INC(w, steals, 1);
        WEIR__INC(w, tasks_stolen, 1);
        return true;
    }
    if (!frames_only) {
        weir_job *job;
        int rj = weir__jd_steal(&v->jd, &job);
        if (rj == WEIR__STEAL_OK) {
            if (weir__tracing())
                weir__trace_steal(v->index);
            WEIR__INC(w, steals, 1);
            WEIR__INC(w, tasks_stolen, 1);
            weir__found_work(w);
            weir__run_job(w, job);
            return true;
        }
        if (rj == WEIR__STEAL_LOST)
            r = WEIR__STEAL_LOST;
    }
    if (r == WEIR__STEAL_LOST)
        WEIR__INC(w, steal_contended, 1);
    else
        WEIR__INC(w, steal_empty, 1);
    return false;
}

bool weir__steal_round(weir_worker *w, weir_frame *sp, bool frames_only)
{
    weir_runtime *rt = w->rt;
    unsigned lo = 0;
    for (unsigned c = 0; c < 3; c++) {
        unsigned hi = w->class_end[c];
        unsigned n = hi - lo;
        if (n) {
            unsigned start = (unsigned)(weir__rand(&w->rng) % n);
            for (unsigned k = 0; k < n; k++) {
                weir_worker *v = rt->workers[w->victims[lo + (start + k) % n]];
                if (try_victim(w, v, sp, frames_only))
                    return true;
            }
        }
        lo = hi;
    }
    return false;
}

/* One pass over every source of work. */
static bool find_work(weir_worker *w)
{
    weir_job *job;
    /* Fairness. Taking our newest job first (LIFO) is what keeps caches warm,
     * but a job that resubmits itself for ever (a term stage that never has
     * to wait) would then run alone: the injection queue and our older jobs
     * would starve. So every 32 passes we look at the injection queue first,
     * and 16 passes later we take our *oldest* job (a steal from our own
     * deque's top). Other workers' deques are reached by stealing below. */
    unsigned tick = ++w->tick % 32;
    if (WEIR_UNLIKELY(tick == 0 || tick == 16)) {
        job = NULL;
        if (tick == 0) {
            /* Due timers, at least every 32 passes even while our deque
             * stays full (the lateness bound of docs/design.md, "Timers"):
             * their jobs go to our deque, taken below. */
            weir__timers_poll(w);
            job = weir__inject_take(w->rt, w);
        } else if (weir__jd_steal(&w->jd, &job) != WEIR__STEAL_OK) {
            job = NULL;
        }
        if (job) {
            weir__found_work(w);
            weir__run_job(w, job);
            return true;
        }
    }
    job = weir__jd_take(&w->jd);
    if (job) {
        weir__found_work(w);
        weir__run_job(w, job);
        return true;
    }
    job = weir__inject_take(w->rt, w);
    if (job) {
        weir__found_work(w);
        weir__run_job(w, job);
        return true;
    }
    /* Nothing local: due timers before stealing (one relaxed load when no
     * timer is armed, a clock read when one is). */
    if (weir__timers_poll(w) && (job = weir__jd_take(&w->jd)) != NULL) {
        weir__found_work(w);
        weir__run_job(w, job);
        return true;
    }
    return weir__steal_round(w, w->segs[0], false);
}

void *weir__worker_main(void *arg)
{
    weir_worker *w = arg;
    weir_runtime *rt = w->rt;
    tls_self = w;
    char track[32];
    snprintf(track, sizeof track, "worker %u", w->index);
    weir_trace_thread_name(track);
    if (w->pu >= 0)
        atomic_store_explicit(&w->pinned, weir__pin_self(&rt->topo, w->pu) == 0,
                              memory_order_relaxed);
    /* acq_rel: the last worker to start releases create(), which then reads
     * every `pinned` (the latch's release/acquire carries them) */
    if (atomic_fetch_add_explicit(&rt->started, 1, memory_order_acq_rel) + 1 == rt->nworkers)
        weir_latch_set(&rt->all_started);

    uint64_t t_busy = weir__now_ns();
    atomic_store_explicit(&w->ctr.since_ns, t_busy, memory_order_relaxed);
    for (;;) {
        if (find_work(w))
            continue;
        /* idle: spin through `spin` failed rounds, then park */
        uint64_t t_idle = weir__now_ns();
        WEIR__INC(w, busy_ns, t_idle - t_busy);
        atomic_store_explicit(&w->ctr.since_ns, t_idle, memory_order_relaxed);
        atomic_store_explicit(&w->ctr.idle, 1, memory_order_relaxed);
        bool found = false;
        weir__spin_enter(w);
        for (unsigned s = 0; !found; s++) {
            if (find_work(w)) {
                found = true;
                break;
            }
            /* seq_cst, both loads: the Dekker pair with weir_submit() from
             * outside (runtime/job.c) — a submitter that read RUNNING is
             * seen here in flight, and we wait for its injection. */
            if (atomic_load_explicit(&rt->stopping, memory_order_seq_cst)) {
                /* drain: stop only when no outside submit is in flight and
                 * a full pass found nothing */
                if (atomic_load_explicit(&rt->submitters, memory_order_seq_cst) == 0 &&
                    !weir__work_pending(rt, NULL)) {
                    weir__found_work(w); /* leave the spinning count */
                    goto out;
                }
            }
            if (s >= rt->cfg.spin) {
                weir__park(w);
                s = 0;
            } else {
                weir__cpu_relax();
            }
        }
        t_busy = weir__now_ns();
        WEIR__INC(w, idle_ns, t_busy - t_idle);
        atomic_store_explicit(&w->ctr.since_ns, t_busy, memory_order_relaxed);
        atomic_store_explicit(&w->ctr.idle, 0, memory_order_relaxed);
    }
out:
    tls_self = NULL;
    return NULL;
}
