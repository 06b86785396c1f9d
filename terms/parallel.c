/*
 * weir terms — data-parallel stages: ordered replicas of stateless terms.
 *
 * `weir_parallel(t, width)` marks a run of function / map / filter terms
 * as data-parallel. The compiler makes it the head of its own stage (a
 * stream input); the serial terms after it (1-in/1-out terms and sinks) fuse
 * behind it as the stage's *serial tail*. The stage's one activation at a
 * time becomes the *dispatcher*:
 *
 *   dispatch  claim the next batch of input, records [claim, claim + n), in
 *             place in the input stream, give it the next sequence number
 *             and a slot (slot = slots[seq % nslots]), and submit the slot's
 *             job: a *replica* runs the replicated nodes over those records
 *             on whatever worker takes the job, into the slot's own output
 *             buffer (its shadow stage: copies of the nodes with their own
 *             scratch, counters and error).
 *   complete  the replica stores DONE (release) in the slot and notifies the
 *             stage, which runs the dispatcher again.
 *   commit    the dispatcher loads DONE (acquire) and, in sequence order
 *             (ordered), or as they complete (unordered), pushes each slot's
 *             output through the serial tail into the output stream; then it
 *             advances its input cursor past the batch (in sequence order in
 *             both cases: the replicas read the input in place) and the slot
 *             is free for a new batch.
 *
 * Bounds: at most `width` replicas run at once and at most `nslots`
 * (2 x width) batches are dispatched but not released, so the reorder
 * buffer holds at most nslots batch outputs and the input stream at most
 * nslots x B records beyond the cursor, all counted in the statistics. A
 * full output stream stops the commit (the dispatcher waits for space, as
 * any producer), and so, once every slot waits, the dispatch.
 *
 * Why this shape. The dispatcher is the only writer of the output stream and
 * of the input cursor, so both keep their single-producer / single-consumer
 * protocols (stream.c) unchanged; ordering costs one sequence number per
 * batch and no lock; a replica touches shared state once per batch (the
 * DONE store and a notify). It is oneTBB's serial_in_order -> parallel ->
 * serial_in_order filter chain, with the serial filters fused into one
 * activation and batches instead of single-record tokens.
 *
 * Memory orders.
 *   slot.state  RUNNING: dispatcher, relaxed, before the submit (the
 *               runtime's submit / run hand-off orders the slot's fields,
 *               written before it, with the replica). DONE: the replica,
 *               release, after writing its output and counters; the
 *               dispatcher's acquire load pairs with it, so the output it
 *               commits and the counters it absorbs are complete. The next
 *               dispatch of the slot happens after that acquire, so the
 *               replica's last writes to the slot precede its reuse.
 *   wake-up     the replica's weir__stage_notify() after the DONE store: its
 *               acq_rel fetch_or (exec.c) releases DONE to the activation it
 *               causes, or finds the dispatcher running, whose final CAS to
 *               IDLE then fails and it runs again: no completion is missed.
 *   lifetime    the stage cannot end while a slot is RUNNING (the dispatcher
 *               ends only when every dispatched batch was observed DONE), so
 *               the pipeline is alive when a replica starts. After its DONE
 *               store the stage may end and the pipeline be destroyed: the
 *               replica registers as a watcher first (relaxed increment,
 *               sequenced before the release store of DONE that the ending
 *               dispatcher acquires, so destroy's acquire load cannot miss
 *               it) and leaves with a release decrement, as an idle stage
 *               does (exec.c). The deadlock watch counts each replica busy
 *               from dispatch (relaxed increment) to after its notify.
 *   cancel      a replica checks the pipeline's cancel flag between records
 *               (relaxed, as stage.c); the dispatcher stops dispatching and
 *               ends once the replicas in flight have come back.
 *
 * Threads mode gives the stage `width` threads of its own (the honest
 * thread-per-replica baseline): a small queue under a mutex, started at the
 * first dispatch, stopped and joined by the dispatcher before it ends.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct weir__par_threads {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    weir__slot **q; /* ring of nslots: at most nslots batches are in flight */
    unsigned qhead, qn, cap;
    bool quit;
    bool tried; /* threads were started (or failed to start) */
    unsigned nstarted;
    pthread_t *tids;
};

static inline bool weir__par_cancelled(const weir_pipeline *p)
{
    /* relaxed: as in stage.c, cancel notifies every stage afterwards */
    return atomic_load_explicit(&((weir_pipeline *)p)->cancelled, memory_order_relaxed);
}

/* ---------------------------------------------------------------- replica */

static void weir__slot_job(weir_worker *w, weir_job *job)
{
    weir__slot *sl = job->arg;
    weir__stage *s = sl->stage, *sh = sl->shadow;
    weir_pipeline *p = s->p;
    const weir__stream *st = s->inputs[0].stream;
    weir__stage *saved = weir__current_stage;
    /* a join from inside a replica's callback is refused as from a stage */
    weir__current_stage = s;
    const bool timing = p->cfg.timing;
    uint64_t t0 = timing ? weir__terms_now_ns() : 0;
    if (!weir__par_cancelled(p))
        weir__run_records(sh, st, sl->begin, (size_t)sl->n);
    if (timing)
        sh->ns += weir__terms_now_ns() - t0;
    weir__current_stage = saved;
    if (sh->err) {
        /* First error wins and cancels the pipeline: the other replicas
         * stop between records, the dispatcher ends once they are back. */
        weir_term *t = sh->nodes[sh->err_node < sh->nnodes ? sh->err_node : 0].term;
        weir__pipeline_fail(p, t, sh->err, sh->err_msg, w);
    }
    /* Hand-off: see the header comment ("lifetime", "wake-up"). */
    atomic_fetch_add_explicit(&p->watchers, 1, memory_order_relaxed);
    atomic_store_explicit(&sl->state, WEIR__SL_DONE, memory_order_release);
    weir__stage_notify(s, w);
    weir__stage_unbusy(s, w);
    atomic_fetch_sub_explicit(&p->watchers, 1, memory_order_release);
}

/* ------------------------------------------------- threads mode: replicas */

static void *weir__par_thread(void *arg)
{
    weir__par_threads *th = arg;
    pthread_mutex_lock(&th->mu);
    for (;;) {
        while (th->qn == 0 && !th->quit)
            pthread_cond_wait(&th->cv, &th->mu);
        if (th->qn == 0)
            break; /* quit, and nothing left */
        weir__slot *sl = th->q[th->qhead];
        th->qhead = (th->qhead + 1) % th->cap;
        th->qn--;
        pthread_mutex_unlock(&th->mu);
        weir__slot_job(NULL, &sl->job);
        pthread_mutex_lock(&th->mu);
    }
    pthread_mutex_unlock(&th->mu);
    return NULL;
}

static void weir__par_threads_start(weir__stage *s)
{
    weir__par *pa = s->par;
    weir__par_threads *th = pa->threads;
    th->tried = true;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return;
    size_t stack = s->p->cfg.thread_stack ? s->p->cfg.thread_stack : 256 * 1024;
    pthread_attr_setstacksize(&attr, stack);
    for (unsigned i = 0; i < pa->width; i++) {
        int r = pthread_create(&th->tids[i], &attr, weir__par_thread, th);
        if (r != 0) {
            weir__pipeline_fail(s->p, s->nodes[0].term, -r,
                                "cannot start a replica thread of a parallel term", NULL);
            break;
        }
        th->nstarted++;
    }
    pthread_attr_destroy(&attr);
}

static void weir__par_submit(weir__stage *s, weir__slot *sl, weir_worker *w)
{
    weir__par *pa = s->par;
    weir__par_threads *th = pa->threads;
    if (th) {
        if (!th->tried)
            weir__par_threads_start(s);
        if (th->nstarted == 0) {
            weir__slot_job(NULL, &sl->job); /* no thread: run it here */
            return;
        }
        pthread_mutex_lock(&th->mu);
        th->q[(th->qhead + th->qn) % pa->nslots] = sl;
        th->qn++;
        pthread_cond_signal(&th->cv);
        pthread_mutex_unlock(&th->mu);
        return;
    }
    if (w) {
        weir_worker_submit(w, &sl->job);
        return;
    }
    int r = weir_submit(s->p->rt, &sl->job);
    if (r < 0) {
        /* The runtime is shutting down under a running pipeline: record it
         * and run the replica here; it sees the cancel and ends at once. */
        weir__pipeline_fail(s->p, s->nodes[0].term, r,
                            "cannot schedule a replica (runtime shut down?)", NULL);
        weir__slot_job(NULL, &sl->job);
    }
}

void weir__par_shutdown(weir__stage *s)
{
    weir__par_threads *th = s->par ? s->par->threads : NULL;
    if (!th || th->nstarted == 0)
        return;
    pthread_mutex_lock(&th->mu);
    th->quit = true;
    pthread_cond_broadcast(&th->cv);
    pthread_mutex_unlock(&th->mu);
    for (unsigned i = 0; i < th->nstarted; i++)
        pthread_join(th->tids[i], NULL);
    th->nstarted = 0;
}

/* ------------------------------------------------------------- dispatcher */

/* Add a completed replica's counters to the stage's nodes (dispatcher, after
 * the acquire load of DONE). */
static void weir__par_absorb(weir__stage *s, weir__slot *sl)
{
    weir__stage *sh = sl->shadow;
    weir__derive_counts(sh);
    for (unsigned i = 0; i < sh->nnodes; i++) {
        weir__node *r = &s->nodes[i], *c = &sh->nodes[i];
        if (i == 0)
            r->in += c->in;
        if (r->kind != WEIR__K_MAP)
            r->out += c->out;
        r->ns += c->ns;
        c->in = c->out = c->extra = c->ns = 0;
    }
    s->ns += sh->ns; /* replica time counts as the stage's */
    sh->ns = 0;
}

/* Push the rest of a slot's output through the serial tail (or into the
 * output stream). @return true when all of it went on. */
static bool weir__par_commit(weir__stage *s, weir__slot *sl)
{
    weir__stage *sh = sl->shadow;
    const unsigned end = s->par->end;
    const size_t osz = s->nodes[end - 1].term->out_size;
    while (sl->ci < sh->coll_n && !s->err) {
        const char *rec = sh->coll + sl->ci * osz;
        size_t left = sh->coll_n - sl->ci;
        size_t k = weir__push_run(s, end, rec, osz, left);
        sl->ci += k;
        if (k < left && !s->err)
            return false; /* the output is full: wait for space */
    }
    return true;
}

/* Free slot `sl` (the oldest): the cursor moves past its batch. */
static void weir__par_release(weir__stage *s, weir__slot *sl)
{
    s->inputs[0].tail = sl->begin + sl->n;
    s->par->release++;
}

unsigned weir__par_running(const weir__stage *s)
{
    return s->par->running;
}

static void weir__par_publish(weir__par *pa)
{
    uint64_t waiting = 0;
    for (uint64_t q = pa->release; q < pa->next; q++)
        if (pa->slots[q % pa->nslots].seen_done)
            waiting++;
    if (waiting > pa->max_reorder)
        pa->max_reorder = waiting;
    if (pa->running > pa->max_running)
        pa->max_running = pa->running;
    /* relaxed: monitoring counters with a single writer (the dispatcher) */
    atomic_store_explicit(&pa->st_running, pa->running, memory_order_relaxed);
    atomic_store_explicit(&pa->st_max_running, pa->max_running, memory_order_relaxed);
    atomic_store_explicit(&pa->st_reorder, waiting, memory_order_relaxed);
    atomic_store_explicit(&pa->st_max_reorder, pa->max_reorder, memory_order_relaxed);
    atomic_store_explicit(&pa->st_batches, pa->next, memory_order_relaxed);
}

int weir__par_step(weir__stage *s, weir_worker *w, bool cancelled)
{
    weir__par *pa = s->par;
    weir__input *in = &s->inputs[0];
    weir__stream *st = in->stream;

    /* 1. Completions. acquire: pairs with the replica's release of DONE. */
    for (uint64_t q = pa->release; q < pa->next; q++) {
        weir__slot *sl = &pa->slots[q % pa->nslots];
        if (sl->seen_done ||
            atomic_load_explicit(&sl->state, memory_order_acquire) != WEIR__SL_DONE)
            continue;
        sl->seen_done = true;
        pa->running--;
        weir__par_absorb(s, sl);
    }
    if (cancelled) {
        weir__par_publish(pa);
        return pa->running ? WEIR__STEP_WAIT : WEIR__STEP_ENDED;
    }

    /* 2. Commit, then release in sequence order. */
    bool blocked = false;
    const uint64_t released = pa->release;
    if (pa->ordered) {
        while (pa->release < pa->next && !s->err) {
            weir__slot *sl = &pa->slots[pa->release % pa->nslots];
            if (!sl->seen_done)
                break;
            if (!weir__par_commit(s, sl)) {
                blocked = true;
                break;
            }
            weir__par_release(s, sl);
        }
    } else {
        for (uint64_t q = pa->release; q < pa->next && !s->err; q++) {
            weir__slot *sl = &pa->slots[q % pa->nslots];
            if (!sl->seen_done || sl->out_done)
                continue;
            if (!weir__par_commit(s, sl)) {
                blocked = true;
                break;
            }
            sl->out_done = true;
        }
        while (pa->release < pa->next && pa->slots[pa->release % pa->nslots].out_done)
            weir__par_release(s, &pa->slots[pa->release % pa->nslots]);
    }
    if (pa->release != released)
        weir__stream_advance(st, in->cursor, in->tail, w);
    if (s->err) {
        weir__par_publish(pa);
        return WEIR__STEP_ERROR;
    }

    /* 3. Dispatch, while a replica and a slot are free. A full output does
     * not stop it: the replicas work ahead into the reorder slots. */
    bool at_end;
    uint64_t avail = weir__stream_avail(st, pa->claim, &at_end);
    const uint64_t B = s->p->cfg.batch;
    while (avail && pa->running < pa->width && pa->next - pa->release < pa->nslots) {
        uint64_t n = avail < B ? avail : B;
        weir__slot *sl = &pa->slots[pa->next % pa->nslots];
        weir__stage *sh = sl->shadow;
        sl->seq = pa->next;
        sl->begin = pa->claim;
        sl->n = n;
        sl->seen_done = sl->out_done = false;
        sl->ci = 0;
        sh->coll_n = 0;
        sh->err = 0;
        weir_free(sh->err_msg);
        sh->err_msg = NULL;
        /* relaxed: the submit below hands the slot to the replica */
        atomic_store_explicit(&sl->state, WEIR__SL_RUNNING, memory_order_relaxed);
        pa->next++;
        pa->claim += n;
        avail -= n;
        pa->running++;
        /* the deadlock watch: a replica is busy until after its notify
         * (relaxed: an RMW, see weir__stage_notify) */
        atomic_fetch_add_explicit(&s->p->busy, 1, memory_order_relaxed);
        weir__par_submit(s, sl, w);
    }
    weir__par_publish(pa);
    if (at_end && pa->release == pa->next && !blocked)
        return WEIR__STEP_ENDED;
    return WEIR__STEP_WAIT;
}

/* ------------------------------------------------------------------ build */

int weir__par_build(weir__stage *s, unsigned end, unsigned width, bool ordered)
{
    weir_pipeline *p = s->p;
    weir__par *pa = weir_calloc(1, sizeof *pa);
    if (!pa)
        return -ENOMEM;
    s->par = pa;
    if (width == 0)
        width = weir_runtime_workers(p->rt);
    if (width == 0)
        width = 1;
    pa->end = end;
    pa->width = width;
    pa->nslots = 2 * width;
    pa->ordered = ordered;
    atomic_init(&pa->st_running, 0);
    atomic_init(&pa->st_max_running, 0);
    atomic_init(&pa->st_reorder, 0);
    atomic_init(&pa->st_max_reorder, 0);
    atomic_init(&pa->st_batches, 0);
    pa->slots = weir_aligned_alloc(WEIR_CACHELINE, pa->nslots * sizeof *pa->slots);
    if (!pa->slots)
        return -ENOMEM;
    memset((void *)pa->slots, 0, pa->nslots * sizeof *pa->slots);
    for (unsigned k = 0; k < pa->nslots; k++) {
        weir__slot *sl = &pa->slots[k];
        atomic_init(&sl->state, 0);
        sl->stage = s;
        weir_job_init(&sl->job, weir__slot_job, sl, 0);
        size_t ssz = (sizeof(weir__stage) + WEIR_CACHELINE - 1) / WEIR_CACHELINE * WEIR_CACHELINE;
        weir__stage *sh = weir_aligned_alloc(WEIR_CACHELINE, ssz);
        if (!sh)
            return -ENOMEM;
        memset((void *)sh, 0, sizeof *sh);
        sl->shadow = sh;
        atomic_init(&sh->state, WEIR__ST_RUNNING);
        sh->p = p;
        sh->id = s->id;
        sh->head = WEIR__H_INPUT;
        sh->collect = true;
        sh->nodes = weir_calloc(end, sizeof *sh->nodes);
        if (!sh->nodes)
            return -ENOMEM;
        sh->nnodes = end;
        sh->vec = !p->cfg.profile;
        for (unsigned i = 0; i < end; i++) {
            weir__node *c = &sh->nodes[i];
            const weir__node *r = &s->nodes[i];
            c->stage = sh;
            c->idx = i;
            c->kind = r->kind;
            c->state = r->state;
            c->fn = r->fn;
            c->term = r->term;
            if (c->kind == WEIR__K_MAP) {
                c->tmp = weir_malloc(c->term->out_size);
                if (!c->tmp)
                    return -ENOMEM;
                if (c->term->out_size > sh->vec_size)
                    sh->vec_size = c->term->out_size;
            } else if (c->kind != WEIR__K_FILTER) {
                sh->vec = false; /* a function term: record by record */
            }
        }
        weir__stage_bind_emits(sh);
    }
    if (p->cfg.mode == WEIR_EXEC_THREADS) {
        weir__par_threads *th = weir_calloc(1, sizeof *th);
        if (!th)
            return -ENOMEM;
        pa->threads = th;
        th->cap = pa->nslots;
        th->q = weir_calloc(pa->nslots, sizeof *th->q);
        th->tids = weir_calloc(width, sizeof *th->tids);
        if (!th->q || !th->tids)
            return -ENOMEM;
        pthread_mutex_init(&th->mu, NULL);
        pthread_cond_init(&th->cv, NULL);
    }
    return 0;
}

void weir__par_free(weir__stage *s)
{
    weir__par *pa = s->par;
    if (!pa)
        return;
    weir__par_shutdown(s);
    for (unsigned k = 0; pa->slots && k < pa->nslots; k++) {
        weir__stage *sh = pa->slots[k].shadow;
        if (!sh)
            continue;
        for (unsigned i = 0; sh->nodes && i < sh->nnodes; i++)
            weir_free(sh->nodes[i].tmp);
        weir_free(sh->nodes);
        weir_free(sh->coll);
        weir_free(sh->err_msg);
        weir_free(sh);
    }
    weir_free(pa->slots);
    if (pa->threads) {
        pthread_mutex_destroy(&pa->threads->mu);
        pthread_cond_destroy(&pa->threads->cv);
        weir_free(pa->threads->q);
        weir_free(pa->threads->tids);
        weir_free(pa->threads);
    }
    weir_free(pa);
    s->par = NULL;
}
