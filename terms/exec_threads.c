/*
 * weir terms — thread execution: the THREADS mode (one OS thread per term,
 * nothing fused: the model the seed measured), the sources of the HYBRID
 * mode, and blocking sources in every mode.
 *
 * A thread runs the same activation as the pool (stage.c) in a loop; where
 * a pool stage would go IDLE, the thread sleeps on its condition variable
 * until notified. The notification flag is set under the mutex, so a notify
 * between the activation's last look and the wait is not lost: the wait sees
 * the flag and the loop runs again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static void *weir__stage_thread(void *arg)
{
    weir__stage *s = arg;
    weir__trace_stage_thread(s);
    if (s->head == WEIR__H_BLOCKING) {
        weir_trace_begin("blocking source");
        weir__stage_run_blocking(s);
        weir_trace_end();
        return NULL;
    }
    for (;;) {
        weir__run r = WEIR_UNLIKELY(weir_trace_enabled()) ? weir__stage_run_traced(s, NULL)
                                                          : weir__stage_run(s, NULL);
        if (r == WEIR__FINISHED)
            return NULL;
        if (r == WEIR__WAIT)
            weir__exec_thread_wait(s);
    }
}

/* A wait until a deadline the activation asked for (time.c): the thread
 * stays busy (it will run again by itself), as a pool stage's armed timer
 * keeps a busy token. The condition variable runs on CLOCK_MONOTONIC
 * (compile.c). */
static void weir__exec_thread_wait_until(weir__thread *th, uint64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
    while (!th->flag && weir__terms_now_ns() < deadline)
        if (pthread_cond_timedwait(&th->cv, &th->mu, &ts) == ETIMEDOUT)
            break;
    th->flag = false;
}

void weir__exec_thread_wait(weir__stage *s)
{
    weir__thread *th = s->thread;
    pthread_mutex_lock(&th->mu);
    if (th->deadline) {
        uint64_t d = th->deadline;
        th->deadline = 0;
        weir__exec_thread_wait_until(th, d);
        pthread_mutex_unlock(&th->mu);
        return;
    }
    if (!th->flag) {
        /* Going to sleep with nothing pending: leave the deadlock watch's
         * `busy` count (exec.c, "Deadlock watch"). IDLE and `sleeping` are
         * set under the mutex, so the notify that wakes us sees them and
         * counts us busy again. release: pairs with the acquire load of the
         * scan in weir__unbusy_check(). The decrement happens outside the
         * mutex: a deadlock verdict cancels the pipeline, which notifies
         * this stage too. Our thread is joined before the pipeline is
         * freed, so touching `p` here needs no watcher registration. */
        th->sleeping = true;
        atomic_store_explicit(&s->state, WEIR__ST_IDLE, memory_order_release);
        pthread_mutex_unlock(&th->mu);
        weir__stage_unbusy(s, NULL);
        pthread_mutex_lock(&th->mu);
    }
    while (!th->flag)
        pthread_cond_wait(&th->cv, &th->mu);
    th->flag = false;
    pthread_mutex_unlock(&th->mu);
}

int weir__exec_thread_start(weir__stage *s)
{
    weir__thread *th = s->thread;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -EAGAIN;
    /* The stack is the C library's (mmap), outside the weir_allocator hook. */
    size_t stack = s->p->cfg.thread_stack ? s->p->cfg.thread_stack : 256 * 1024;
    pthread_attr_setstacksize(&attr, stack);
    int r = pthread_create(&th->tid, &attr, weir__stage_thread, s);
    pthread_attr_destroy(&attr);
    if (r != 0)
        return -r;
    /* Plain store: read only by weir__exec_thread_join(), after the
     * pipeline's latch, which weir_pipeline_start() cannot let be set before
     * it has returned from here (its hold on `live`, pipeline.c), so a join
     * on another thread sees every thread that was created. */
    th->started = true;
    return 0;
}

/* After the pipeline's latch (join, destroy), under the pipeline's errmu. */
void weir__exec_thread_join(weir__stage *s)
{
    if (s->thread && s->thread->started) {
        pthread_join(s->thread->tid, NULL);
        s->thread->started = false;
    }
}

void weir__exec_thread_free(weir__stage *s)
{
    if (!s->thread)
        return;
    pthread_mutex_destroy(&s->thread->mu);
    pthread_cond_destroy(&s->thread->cv);
    weir_free(s->thread);
    s->thread = NULL;
}
