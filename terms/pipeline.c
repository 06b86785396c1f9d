/*
 * weir terms — pipeline lifecycle: create (compile), start, join, stop,
 * cancel, destroy, and the first-error record.
 *
 * Termination: `live` counts the stages that have not finished. A stage
 * finishes once (weir__end in stage.c) and its last access to the pipeline
 * is the decrement; the stage that brings it to zero sets the latch join
 * waits on. Every notification a stage sends targets a stage of the same
 * pipeline while the sender is still live, so the latch cannot be set (and
 * the pipeline freed) under a notifier's feet. weir_pipeline_start() holds
 * one more count while it creates the stages' threads, so that a join on
 * another thread never sees the end before every thread is recorded for
 * pthread_join() (issue 8: it used to skip, and leak, the last one).
 */
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <sched.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Copy `text` trimmed of surrounding white space into buf (as the runtime's
 * WEIR_* parsers do); false if it does not fit. */
static bool weir__trim(const char *text, char *buf, size_t n)
{
    while (isspace((unsigned char)*text))
        text++;
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    if (len >= n)
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    return true;
}

WEIR_API int weir_parse_exec_mode(const char *text, weir_exec_mode *out)
{
    if (!text || !out)
        return weir__terms_error(-EINVAL, "weir_parse_exec_mode: %s is NULL",
                                 text ? "out" : "text");
    char b[16];
    if (!weir__trim(text, b, sizeof b))
        b[0] = '\0';
    if (strcasecmp(b, "pool") == 0)
        *out = WEIR_EXEC_POOL;
    else if (strcasecmp(b, "threads") == 0)
        *out = WEIR_EXEC_THREADS;
    else if (strcasecmp(b, "hybrid") == 0)
        *out = WEIR_EXEC_HYBRID;
    else
        return weir__terms_error(-EINVAL,
                                 "execution mode: invalid value '%s' (expected pool, threads or "
                                 "hybrid)",
                                 text);
    return 0;
}

/* WEIR_STATS as the runtime reads it: 1/true/yes/on, any case, trimmed. */
static bool weir__env_true(const char *v)
{
    char b[8];
    if (!v || !weir__trim(v, b, sizeof b))
        return false;
    return strcmp(b, "1") == 0 || strcasecmp(b, "true") == 0 || strcasecmp(b, "yes") == 0 ||
           strcasecmp(b, "on") == 0;
}

WEIR_API const char *weir_exec_mode_name(weir_exec_mode m)
{
    switch (m) {
    case WEIR_EXEC_POOL:
        return "pool";
    case WEIR_EXEC_THREADS:
        return "threads";
    case WEIR_EXEC_HYBRID:
        return "hybrid";
    }
    return "?";
}

#define WEIR__MODE_INVALID ((weir_exec_mode)-1)

WEIR_API void weir_pipeline_config_init(weir_pipeline_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->batch = 256;
    cfg->capacity = 1024;
    cfg->byte_capacity = UINT64_C(1) << 20;
    cfg->mode = WEIR_EXEC_POOL;
    cfg->timing = true;
    cfg->profile = false;
    cfg->starvation_ns = 100u * 1000 * 1000;
    cfg->slice_ns = 50u * 1000;
    cfg->print_stats = weir__env_true(getenv("WEIR_STATS"));
    const char *ex = getenv("WEIR_EXEC");
    char eb[2];
    if (ex && weir__trim(ex, eb, sizeof eb) && eb[0] == '\0')
        ex = NULL; /* empty or blank: no change, as for the runtime's variables */
    if (ex && weir_parse_exec_mode(ex, &cfg->mode) < 0)
        cfg->mode = WEIR__MODE_INVALID; /* reported by create, which can fail */
}

static int weir__check_config(const weir_pipeline_config *c, const weir_runtime *rt)
{
    if (c->batch == 0 || c->batch > (1u << 20))
        return weir__terms_error(-EINVAL,
                                 "pipeline config: batch: invalid value %u (expected 1..%u)",
                                 c->batch, 1u << 20);
    if (c->capacity == 0 || c->capacity > (1u << 30))
        return weir__terms_error(-EINVAL,
                                 "pipeline config: capacity: invalid value %u (expected 1..%u)",
                                 c->capacity, 1u << 30);
    if (c->byte_capacity < 64 || c->byte_capacity > WEIR_MAX_BYTE_CAPACITY)
        return weir__terms_error(-EINVAL,
                                 "pipeline config: byte_capacity: invalid value %llu (expected "
                                 "64..%llu)",
                                 (unsigned long long)c->byte_capacity,
                                 (unsigned long long)WEIR_MAX_BYTE_CAPACITY);
    if (c->mode != WEIR_EXEC_POOL && c->mode != WEIR_EXEC_THREADS && c->mode != WEIR_EXEC_HYBRID) {
        const char *ex = getenv("WEIR_EXEC");
        if (c->mode == WEIR__MODE_INVALID && ex)
            return weir__terms_error(
                -EINVAL, "WEIR_EXEC: invalid value '%s' (expected pool, threads or hybrid)", ex);
        return weir__terms_error(-EINVAL, "pipeline config: mode: invalid value %d", (int)c->mode);
    }
    if (c->thread_stack != 0 && c->thread_stack < 64u * 1024)
        return weir__terms_error(-EINVAL,
                                 "pipeline config: thread_stack: invalid value %zu (expected 0 "
                                 "for the default, or at least 65536)",
                                 c->thread_stack);
    if (!rt && c->mode != WEIR_EXEC_THREADS)
        return weir__terms_error(-EINVAL,
                                 "weir_pipeline_create: runtime is NULL (only the threads mode "
                                 "runs without one; this pipeline's mode is %s)",
                                 weir_exec_mode_name(c->mode));
    return 0;
}

WEIR_API int weir_pipeline_create(weir_runtime *rt, weir_term *root,
                                  const weir_pipeline_config *cfg, weir_pipeline **out)
{
    if (!out)
        return weir__terms_error(-EINVAL, "weir_pipeline_create: out is NULL");
    if (!root) {
        /* Usually a constructor failed further up: keep its message. */
        char prev[400];
        snprintf(prev, sizeof prev, "%s", weir_terms_last_error());
        return weir__terms_error(-EINVAL, "weir_pipeline_create: term is NULL%s%s%s",
                                 prev[0] ? " (the last term-layer error was: " : "", prev,
                                 prev[0] ? ")" : "");
    }
    if (root->owner != WEIR__FREE)
        return weir__terms_error(-EBUSY, "weir_pipeline_create: term '%s' already belongs to %s",
                                 root->name,
                                 root->owner == WEIR__IN_PIPELINE ? "a pipeline" : "a composite");
    weir_pipeline_config c;
    if (cfg)
        c = *cfg;
    else
        weir_pipeline_config_init(&c);
    int r = weir__check_config(&c, rt);
    if (r < 0)
        return r;
    /* The pipeline keeps `rt` and may be destroyed after it: attach, so that
     * the handle stays valid until weir_pipeline_destroy() detaches (the
     * runtime's "Lifetime"). Every failure below detaches again. */
    if (rt && (r = weir_runtime_attach(rt)) < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", weir_last_error());
        return weir__terms_error(r, "weir_pipeline_create: cannot attach to the runtime (%s)", why);
    }

    weir_pipeline *p = weir_calloc(1, sizeof *p);
    if (!p) {
        weir_runtime_detach(rt);
        return weir__terms_error(-ENOMEM, "weir_pipeline_create: out of memory");
    }
    p->rt = rt;
    p->cfg = c;
    p->root = root;
    atomic_init(&p->phase, WEIR__P_CREATED);
    atomic_init(&p->stopping, false);
    atomic_init(&p->cancelled, false);
    atomic_init(&p->live, 0);
    atomic_init(&p->err, 0);
    atomic_init(&p->starvations, 0);
    pthread_mutex_init(&p->errmu, NULL);
    weir_latch_init(&p->done);
    r = weir__compile(p);
    if (r < 0) {
        pthread_mutex_destroy(&p->errmu);
        weir_free(p);
        weir_runtime_detach(rt);
        return r;
    }
    root->owner = WEIR__IN_PIPELINE;
    *out = p;
    return 0;
}

void weir__pipeline_stage_done(weir_pipeline *p)
{
    /* acq_rel: each stage releases its writes (sink outputs, statistics);
     * the last one acquires them all (the decrements form a release
     * sequence) before it sets the latch, which releases them to join. */
    if (atomic_fetch_sub_explicit(&p->live, 1, memory_order_acq_rel) == 1)
        weir_latch_set(&p->done);
}

void weir__pipeline_notify_all(weir_pipeline *p, bool sources_only, weir_worker *w)
{
    weir__pipeline_busy(p); /* see exec.c, "Deadlock watch" */
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (sources_only && s->head != WEIR__H_PULL && s->head != WEIR__H_BLOCKING)
            continue;
        weir__stage_notify(s, w);
    }
    weir__pipeline_unbusy(p, w);
}

void weir__pipeline_interrupt_sources(weir_pipeline *p)
{
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        weir__node *n0 = &s->nodes[0];
        if (s->head != WEIR__H_BLOCKING || !n0->term->interrupt)
            continue;
        /* relaxed: decides who calls it; the flag the source then reads
         * (stopping / cancelled) was stored before, in program order, and
         * the user's wake-up (a mutex, a pipe) orders it before the
         * source's weir_emit_stopping(). */
        if (!atomic_exchange_explicit(&s->interrupted, true, memory_order_relaxed))
            n0->term->interrupt(n0->state);
    }
}

/* Record the first error; later ones are dropped. Returns true if this call
 * recorded it. */
static bool weir__set_error(weir_pipeline *p, int err, const char *msg)
{
    bool first = false;
    pthread_mutex_lock(&p->errmu);
    /* relaxed under the mutex: the mutex orders writers; readers use the
     * acquire load below, which pairs with the release store here. */
    if (atomic_load_explicit(&p->err, memory_order_relaxed) == 0) {
        snprintf(p->errmsg, sizeof p->errmsg, "%s", msg);
        /* release: pairs with the acquire in weir_pipeline_error(), so the
         * message is complete when err is seen non-zero. */
        atomic_store_explicit(&p->err, err, memory_order_release);
        first = true;
    }
    pthread_mutex_unlock(&p->errmu);
    return first;
}

static void weir__cancel_all(weir_pipeline *p, weir_worker *w)
{
    /* relaxed: the notifications below order it before the activations
     * that must see it (acq_rel fetch_or / mutex). */
    if (!atomic_exchange_explicit(&p->cancelled, true, memory_order_relaxed)) {
        weir__pipeline_notify_all(p, false, w);
        weir__pipeline_interrupt_sources(p);
    }
}

void weir__pipeline_shutdown(weir_pipeline *p, weir_worker *w)
{
    /* relaxed: a fast exit when the pipeline already failed or was
     * cancelled; weir__set_error() decides the race under its mutex. */
    if (atomic_load_explicit(&p->err, memory_order_relaxed) != 0)
        return;
    if (weir__set_error(p, -ESHUTDOWN,
                        "the runtime is being destroyed (weir_runtime_destroy) while the pipeline "
                        "runs"))
        weir__cancel_all(p, w);
}

void weir__pipeline_fail(weir_pipeline *p, weir_term *t, int err, const char *detail,
                         weir_worker *w)
{
    char msg[512], eb[128];
    if (detail)
        snprintf(msg, sizeof msg, "term '%s': %s", t->name, detail);
    else
        snprintf(msg, sizeof msg, "term '%s': callback returned %d (%s)", t->name, err,
                 weir__errtext(err, eb, sizeof eb));
    weir__set_error(p, err, msg);
    weir__cancel_all(p, w);
}

static int weir__need_started(const weir_pipeline *p, const char *what)
{
    if (!p)
        return weir__terms_error(-EINVAL, "%s: pipeline is NULL", what);
    /* acquire: pairs with the release store of STARTED in
     * weir_pipeline_start(): `live` is set before anyone acts. */
    if (atomic_load_explicit(&((weir_pipeline *)p)->phase, memory_order_acquire) != WEIR__P_STARTED)
        return weir__terms_error(-EINVAL, "%s: the pipeline was not started", what);
    return 0;
}

WEIR_API int weir_pipeline_start(weir_pipeline *p)
{
    if (!p)
        return weir__terms_error(-EINVAL, "weir_pipeline_start: pipeline is NULL");
    if (weir_runtime_stopping(p->rt))
        return weir__terms_error(-ESHUTDOWN, "weir_pipeline_start: the runtime is being destroyed");
    int exp = WEIR__P_CREATED;
    /* relaxed: only decides which caller starts; STARTED below publishes. */
    if (!atomic_compare_exchange_strong_explicit(&p->phase, &exp, WEIR__P_STARTING,
                                                 memory_order_relaxed, memory_order_relaxed))
        return weir__terms_error(-EALREADY, "weir_pipeline_start: the pipeline was started before");
    /* `live` must be set before any stage can run and finish: stop, cancel
     * and join refuse to act until they see STARTED. One more than the
     * stages: start itself holds the pipeline until it has created every
     * thread and written their `started` flags (the weir__pipeline_stage_done()
     * at its end), so
     * a join that runs concurrently with start (on another thread) cannot
     * see the end before every thread it has to pthread_join() is known,
     * and never skips (leaks) one. */
    atomic_store_explicit(&p->live, (int)p->nstages + 1, memory_order_relaxed);
    /* The deadlock watch (exec.c): a thread stage counts as busy from now
     * until it first sleeps, like a notified pool stage. relaxed: the
     * threads are created below (pthread_create orders these stores before
     * them) and no pool stage runs before the notifications at the end. */
    int busy = 0;
    for (unsigned k = 0; k < p->nstages; k++) {
        if (p->stages[k]->thread) {
            atomic_store_explicit(&p->stages[k]->state, WEIR__ST_RUNNING, memory_order_relaxed);
            busy++;
        }
    }
    atomic_store_explicit(&p->busy, busy, memory_order_relaxed);
    /* the stall watch measures silence from the start */
    uint64_t t0 = weir__terms_now_ns();
    for (unsigned k = 0; k < p->nstreams; k++) {
        p->streams[k]->stall_ns = p->cfg.starvation_ns;
        atomic_store_explicit(&p->streams[k]->last_publish_ns, t0, memory_order_relaxed);
    }
    atomic_store_explicit(&p->watchers, 0, memory_order_relaxed);
    /* release: pairs with the acquire loads of phase in stop/cancel/join. */
    atomic_store_explicit(&p->phase, WEIR__P_STARTED, memory_order_release);
    if (p->nstages == 0) {
        weir__pipeline_stage_done(p); /* start's hold: the end */
        return 0;
    }
    /* Hold a token (exec.c, "Deadlock watch") from before the first thread
     * runs until every pool source is notified: a thread stage may finish
     * and its consumers go idle while the sources below are not notified
     * yet, which must not read as "every stage waits". */
    weir__pipeline_busy(p);
    int err = 0;
    unsigned k;
    for (k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (!s->thread)
            continue;
        err = weir__exec_thread_start(s);
        if (err < 0)
            break;
    }
    if (err < 0) {
        /* Stages whose thread never started can never run: end them here
         * (they are not running, so this thread may), after cancelling so
         * the ones that did start finish too. */
        char eb[128], msg[256];
        snprintf(msg, sizeof msg, "cannot start a thread for stage %u ('%s'): %s", k,
                 p->stages[k]->nodes[0].term->name, weir__errtext(err, eb, sizeof eb));
        weir__set_error(p, err, msg);
        weir__cancel_all(p, NULL);
        for (; k < p->nstages; k++)
            if (p->stages[k]->thread)
                weir__stage_abandon(p->stages[k]);
        /* Pool stages that are IDLE still need one activation to see the
         * cancel: the notify above submitted them. */
        weir__pipeline_unbusy(p, NULL);
        weir__terms_error(err, "%s", msg);
        weir__pipeline_stage_done(p); /* start's hold: the last access to p */
        return err;
    }
    for (k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (!s->thread && s->head == WEIR__H_PULL)
            weir__stage_notify(s, NULL);
    }
    weir__pipeline_unbusy(p, NULL);
    /* Drop start's hold on `live`: the threads' `started` flags are written
     * (exec_threads.c), and the acq_rel decrement releases them to the stage
     * that sets the latch, hence to join. Once the stages are done this sets
     * the latch itself; it is start's last access to p (a concurrent join
     * may then return and the caller destroy the pipeline). */
    weir__pipeline_stage_done(p);
    return 0;
}

static void weir__join_threads(weir_pipeline *p)
{
    pthread_mutex_lock(&p->errmu);
    if (!p->joined) {
        for (unsigned k = 0; k < p->nstages; k++)
            weir__exec_thread_join(p->stages[k]);
        p->joined = true;
    }
    pthread_mutex_unlock(&p->errmu);
}

static int weir__join_check(weir_pipeline *p, const char *what)
{
    int r = weir__need_started(p, what);
    if (r < 0)
        return r;
    if (weir__current_stage || (p->rt && weir_runtime_self(p->rt)))
        return weir__terms_error(-EDEADLK,
                                 "%s: called from a worker or a term callback; it would block the "
                                 "thread that has to run the pipeline",
                                 what);
    return 0;
}

WEIR_API int weir_pipeline_join(weir_pipeline *p)
{
    int r = weir__join_check(p, "weir_pipeline_join");
    if (r < 0)
        return r;
    weir_latch_wait(&p->done);
    weir__join_threads(p);
    /* acquire: pairs with the release in weir__set_error(). */
    return atomic_load_explicit(&p->err, memory_order_acquire);
}

WEIR_API int weir_pipeline_join_for(weir_pipeline *p, uint64_t timeout_ns)
{
    int r = weir__join_check(p, "weir_pipeline_join_for");
    if (r < 0)
        return r;
    if (!weir_latch_wait_for(&p->done, timeout_ns))
        return -ETIMEDOUT;
    weir__join_threads(p);
    /* acquire: pairs with the release in weir__set_error(). */
    return atomic_load_explicit(&p->err, memory_order_acquire);
}

WEIR_API int weir_pipeline_run(weir_pipeline *p)
{
    int r = weir_pipeline_start(p);
    if (r < 0 && r != -EAGAIN)
        return r;
    return weir_pipeline_join(p);
}

WEIR_API int weir_pipeline_stop(weir_pipeline *p)
{
    int r = weir__need_started(p, "weir_pipeline_stop");
    if (r < 0)
        return r;
    /* relaxed: the notifications below carry it to the sources. */
    if (!atomic_exchange_explicit(&p->stopping, true, memory_order_relaxed)) {
        weir__pipeline_notify_all(p, true, NULL);
        weir__pipeline_interrupt_sources(p);
    }
    return 0;
}

WEIR_API int weir_pipeline_cancel(weir_pipeline *p)
{
    int r = weir__need_started(p, "weir_pipeline_cancel");
    if (r < 0)
        return r;
    /* After the end, a cancel changes nothing: join keeps its result. */
    if (weir_latch_is_set(&p->done))
        return 0;
    weir__set_error(p, -ECANCELED, "cancelled by weir_pipeline_cancel()");
    weir__cancel_all(p, NULL);
    return 0;
}

WEIR_API const char *weir_pipeline_error(const weir_pipeline *p)
{
    if (!p)
        return "";
    /* acquire: pairs with the release in weir__set_error(). */
    if (atomic_load_explicit(&((weir_pipeline *)p)->err, memory_order_acquire) == 0)
        return "";
    return p->errmsg;
}

WEIR_API void weir_pipeline_destroy(weir_pipeline *p)
{
    if (!p)
        return;
    /* acquire: pairs with the release store of STARTED in start(). */
    if (atomic_load_explicit(&p->phase, memory_order_acquire) == WEIR__P_STARTED) {
        if (!weir_latch_is_set(&p->done))
            weir_pipeline_cancel(p);
        weir_latch_wait(&p->done);
        weir__join_threads(p);
        /* acquire: pairs with the watchers' release decrements (exec.c,
         * "Deadlock watch"): a stage that went idle just before the end may
         * still be checking the pipeline. */
        while (atomic_load_explicit(&p->watchers, memory_order_acquire) != 0)
            sched_yield();
    }
    if (p->cfg.print_stats)
        weir_pipeline_print_stats(p, stderr);
    weir__compile_free(p);
    weir__term_free_tree(p->root);
    pthread_mutex_destroy(&p->errmu);
    weir_runtime *rt = p->rt;
    weir_free(p);
    /* The very last step: every stage has finished and every thread of the
     * pipeline was joined above, so nothing of it can reach the runtime any
     * more. When the runtime was destroyed first, this frees its handle. */
    weir_runtime_detach(rt);
}
