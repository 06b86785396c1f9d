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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct weir__par_threads {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    weir_job **q; /* ring of cap: at most nslots batches and nshards shard jobs queued */
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
    const bool traced = WEIR_UNLIKELY(weir_trace_enabled());
    if (traced) {
        char name[40];
        weir__trace_stage_name(sh, "replica: ", name, sizeof name);
        weir_trace_begin(name);
    }
    if (!weir__par_cancelled(p) && weir__run_records(sh, st, sl->begin, (size_t)sl->n))
        weir__collect_seal(sh);
    if (traced)
        weir_trace_end();
    if (timing) {
        uint64_t el = weir__terms_now_ns() - t0;
        sh->ns += el;
        /* cheap records: skip the per-record cancel check (stage.c) */
        if (sl->n >= 16)
            sh->check_cancel = el > sl->n * WEIR__CHECK_NS;
    }
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
        weir_job *job = th->q[th->qhead];
        th->qhead = (th->qhead + 1) % th->cap;
        th->qn--;
        pthread_mutex_unlock(&th->mu);
        job->fn(NULL, job);
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
    /* relaxed: a statistics count (weir_pipeline_stats.threads) */
    atomic_store_explicit(&pa->st_threads, th->nstarted, memory_order_relaxed);
}

/* Run `job` (a replica or a shard) on a worker, or on the stage's threads. */
static void weir__par_submit(weir__stage *s, weir_job *job, weir_worker *w)
{
    weir__par *pa = s->par;
    weir__par_threads *th = pa->threads;
    if (th) {
        if (!th->tried)
            weir__par_threads_start(s);
        if (th->nstarted == 0) {
            job->fn(NULL, job); /* no thread: run it here */
            return;
        }
        pthread_mutex_lock(&th->mu);
        th->q[(th->qhead + th->qn) % th->cap] = job;
        th->qn++;
        pthread_cond_signal(&th->cv);
        pthread_mutex_unlock(&th->mu);
        return;
    }
    if (w) {
        weir_worker_submit(w, job);
        return;
    }
    int r = weir_submit(s->p->rt, job);
    if (r < 0) {
        /* The runtime is shutting down under a running pipeline: record it
         * and run the job here; it sees the cancel and ends at once. */
        weir__pipeline_fail(s->p, s->nodes[0].term, r,
                            "cannot schedule a replica (runtime shut down?)", NULL);
        job->fn(NULL, job);
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

/* ------------------------------------------------------------ keyed shards */

/* splitmix64's finaliser: a user key (a counter, a weak hash) spread over the
 * shards evenly. */
static inline uint64_t weir__mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Shard `sd` runs its records of batch `sl` (the ones the dispatcher routed
 * to it), in input order, into the slot's buffer for this shard. The last
 * shard to finish its part completes the slot. */
static void weir__shard_batch(weir__shard *sd, weir__slot *sl, weir_worker *w)
{
    weir__stage *s = sd->stage, *cx = sd->ctx;
    weir_pipeline *p = s->p;
    const weir__stream *st = s->inputs[0].stream;
    const unsigned i = sd->idx;
    const bool timing = p->cfg.timing;
    uint64_t t0 = timing ? weir__terms_now_ns() : 0;
    const bool traced = WEIR_UNLIKELY(weir_trace_enabled());
    if (traced) {
        char name[40], prefix[24];
        snprintf(prefix, sizeof prefix, "shard %u: ", i);
        weir__trace_stage_name(cx, prefix, name, sizeof name);
        weir_trace_begin(name);
    }
    cx->coll = sl->obuf[i];
    cx->coll_cap = sl->ocap[i];
    cx->coll_n = 0;
    cx->collb = sl->obufb[i];
    cx->collb_cap = sl->obcap[i];
    cx->collb_n = 0;
    weir__node *n0 = &cx->nodes[0];
    const uint32_t *sh_of = sl->sh_of;
    if (n0->kind == WEIR__K_SPAWN) {
        /* sub-pipelines per key (spawn.c) */
        uint64_t now = weir__terms_now_ns();
        if (sl->sweep)
            weir__spawn_sweep(cx, now);
        for (uint64_t k = 0; k < sl->n; k++) {
            if (sh_of[k] != i)
                continue;
            if (WEIR_UNLIKELY(weir__par_cancelled(p)))
                break;
            size_t before = cx->coll_n;
            n0->in++;
            weir__spawn_push(cx, sl->key_of[k], weir__stream_slot(st, sl->begin + k), now);
            sl->cnt[k] = (uint32_t)(cx->coll_n - before);
            if (WEIR_UNLIKELY(cx->err))
                break;
        }
        weir__spawn_done(cx);
    }
    for (uint64_t k = 0; n0->kind != WEIR__K_SPAWN && k < sl->n; k++) {
        if (sh_of[k] != i)
            continue;
        if (WEIR_UNLIKELY(weir__par_cancelled(p)))
            break;
        size_t before = cx->coll_n;
        n0->in++;
        weir__push(cx, 0, weir__stream_slot(st, sl->begin + k));
        sl->cnt[k] = (uint32_t)(cx->coll_n - before);
        if (WEIR_UNLIKELY(cx->err))
            break;
    }
    if (traced)
        weir_trace_end();
    weir__collect_seal(cx);
    sl->obuf[i] = cx->coll;
    sl->ocap[i] = cx->coll_cap;
    sl->on[i] = cx->coll_n;
    sl->obufb[i] = cx->collb;
    sl->obcap[i] = cx->collb_cap;
    cx->coll = cx->collb = NULL;
    cx->coll_cap = cx->coll_n = cx->collb_cap = cx->collb_n = 0;
    if (cx->err) {
        weir__pipeline_fail(p, n0->term, cx->err, cx->err_msg, w);
        cx->err = 0;
        weir_free(cx->err_msg);
        cx->err_msg = NULL;
    }
    if (timing)
        cx->ns += weir__terms_now_ns() - t0;
    cx->activations++;
    /* monitoring (relaxed): single writer, this shard */
    weir__derive_counts(cx);
    atomic_store_explicit(&n0->st_in, n0->in, memory_order_relaxed);
    atomic_store_explicit(&n0->st_out, n0->out, memory_order_relaxed);
    atomic_store_explicit(&cx->st_ns, cx->ns, memory_order_relaxed);
    atomic_store_explicit(&cx->st_activations, cx->activations, memory_order_relaxed);
    /* acq_rel: the shards' writes to the slot form a release sequence the
     * last one acquires, then releases as a whole with DONE */
    if (atomic_fetch_sub_explicit(&sl->pending, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&sl->state, WEIR__SL_DONE, memory_order_release);
        weir__stage_notify(s, w);
    }
}

/*
 * A shard's job: the activation protocol of a pool stage (exec.c) over the
 * shard's queue. The notify that made it runnable pushed a batch first, and
 * that batch cannot complete before this shard ran its part, so the stage is
 * live and the pipeline alive when the job starts; it registers as a
 * watcher for its whole run, because completing a batch may let the stage
 * end (and the pipeline be destroyed) before its final CAS.
 */
static void weir__shard_job(weir_worker *w, weir_job *job)
{
    weir__shard *sd = job->arg;
    weir__stage *s = sd->stage;
    weir_pipeline *p = s->p;
    const unsigned nslots = s->par->nslots;
    /* relaxed: an RMW; destroy's acquire load pairs with the release below */
    atomic_fetch_add_explicit(&p->watchers, 1, memory_order_relaxed);
    for (;;) {
        /* acquire: pairs with the notify's acq_rel fetch_or */
        atomic_exchange_explicit(&sd->state, WEIR__ST_RUNNING, memory_order_acquire);
        /* acquire: the slot's fields, written before the dispatcher's
         * release store of fhead */
        uint64_t head = atomic_load_explicit(&sd->fhead, memory_order_acquire);
        while (sd->ftail < head) {
            weir__slot *sl = sd->fifo[sd->ftail % nslots];
            sd->ftail++;
            weir__shard_batch(sd, sl, w);
        }
        uint32_t exp = WEIR__ST_RUNNING;
        /* acq_rel: release our private writes to the next activation;
         * acquire on failure: a notify came after our look, run again */
        if (atomic_compare_exchange_strong_explicit(&sd->state, &exp, WEIR__ST_IDLE,
                                                    memory_order_acq_rel, memory_order_acquire))
            break;
    }
    weir__stage_unbusy(s, w); /* counted busy by the notify that made us runnable */
    /* release: our last access to the pipeline happens before destroy's
     * acquire load sees the count drop */
    atomic_fetch_sub_explicit(&p->watchers, 1, memory_order_release);
}

/* Dispatcher: the shard has a new batch in its queue. */
static void weir__shard_notify(weir__stage *s, weir__shard *sd, weir_worker *w)
{
    /* acq_rel: release the queued batch to the activation we submit (or
     * that runs now and fails its CAS); as weir__stage_notify() */
    uint32_t old = atomic_fetch_or_explicit(&sd->state, WEIR__ST_NOTIFIED, memory_order_acq_rel);
    if (old != WEIR__ST_IDLE)
        return;
    /* the deadlock watch: busy from here to after the shard goes idle */
    atomic_fetch_add_explicit(&s->p->busy, 1, memory_order_relaxed);
    weir__par_submit(s, &sd->job, w);
}

/* Route the records of the batch in `sl` to the shards and queue it there. */
static void weir__keyed_dispatch(weir__stage *s, weir__slot *sl, weir_worker *w)
{
    weir__par *pa = s->par;
    const weir__stream *st = s->inputs[0].stream;
    const uint64_t stamp = sl->seq + 1;
    const uint64_t k_ = pa->nshards;
    sl->ntouched = 0;
    for (uint64_t k = 0; k < sl->n; k++) {
        const void *rec = weir__stream_slot(st, sl->begin + k);
        uint64_t key = pa->key(pa->key_arg, rec);
        uint32_t h = (uint32_t)(weir__mix(key) % k_);
        sl->sh_of[k] = h;
        if (sl->key_of)
            sl->key_of[k] = key;
        if (pa->touch[h] != stamp) {
            pa->touch[h] = stamp;
            sl->touched[sl->ntouched++] = h;
            sl->on[h] = sl->oci[h] = 0;
        }
    }
    /* relaxed: published to the shards by the release stores of fhead */
    atomic_store_explicit(&sl->pending, sl->ntouched, memory_order_relaxed);
    for (unsigned j = 0; j < sl->ntouched; j++) {
        weir__shard *sd = &pa->shards[sl->touched[j]];
        uint64_t h = atomic_load_explicit(&sd->fhead, memory_order_relaxed); /* ours */
        sd->fifo[h % pa->nslots] = sl;
        /* release: the slot's fields before the shard reads them */
        atomic_store_explicit(&sd->fhead, h + 1, memory_order_release);
        weir__shard_notify(s, sd, w);
    }
}

/* weir_spawn's idle sweep: a batch of no records queued to every shard,
 * whose idle sub-pipelines end (their final outputs committed shard by
 * shard, in sequence with the batches around it). */
static void weir__keyed_sweep(weir__stage *s, weir__slot *sl, weir_worker *w)
{
    weir__par *pa = s->par;
    sl->ntouched = pa->nshards;
    for (unsigned h = 0; h < pa->nshards; h++) {
        sl->touched[h] = h;
        sl->on[h] = sl->oci[h] = 0;
    }
    /* relaxed: published to the shards by the release stores of fhead */
    atomic_store_explicit(&sl->pending, sl->ntouched, memory_order_relaxed);
    for (unsigned h = 0; h < pa->nshards; h++) {
        weir__shard *sd = &pa->shards[h];
        uint64_t q = atomic_load_explicit(&sd->fhead, memory_order_relaxed); /* ours */
        sd->fifo[q % pa->nslots] = sl;
        /* release: the slot's fields before the shard reads them */
        atomic_store_explicit(&sd->fhead, q + 1, memory_order_release);
        weir__shard_notify(s, sd, w);
    }
}

/* Commit the rest of a keyed batch: in input order (record by record, each
 * record's outputs from its shard's buffer) or shard by shard. */
static bool weir__keyed_commit(weir__stage *s, weir__slot *sl)
{
    weir__par *pa = s->par;
    const size_t osz = s->nodes[0].term->out_size;
    if (osz == 0)
        return true; /* sink shards: nothing comes out */
    if (pa->ordered && !sl->sweep) {
        while (sl->ci < sl->n && !s->err) {
            uint32_t h = sl->sh_of[sl->ci];
            size_t left = sl->cnt[sl->ci] - sl->cpart;
            if (left) {
                size_t k = weir__push_run(s, pa->end, sl->obuf[h] + sl->oci[h] * osz, osz, left);
                sl->oci[h] += k;
                sl->cpart += k;
                if (k == 0 && !s->err)
                    return false; /* full: push_run asked to be notified */
                if (k < left)
                    continue; /* the same record, more room may be there */
            }
            sl->ci++;
            sl->cpart = 0;
        }
    } else {
        while (sl->ci < sl->ntouched && !s->err) {
            uint32_t h = sl->touched[sl->ci];
            size_t left = sl->on[h] - sl->oci[h];
            if (left) {
                size_t k = weir__push_run(s, pa->end, sl->obuf[h] + sl->oci[h] * osz, osz, left);
                sl->oci[h] += k;
                if (k == 0 && !s->err)
                    return false; /* full: push_run asked to be notified */
                if (k < left)
                    continue;
            }
            sl->ci++;
        }
    }
    return true;
}

int weir__par_finish(weir__stage *s, weir_worker *w)
{
    weir__par *pa = s->par;
    weir_pipeline *p = s->p;
    const size_t osz = s->nodes[0].term->out_size;
    while (pa->fin_next < pa->nshards) {
        weir__stage *cx = pa->shards[pa->fin_next].ctx;
        weir__node *n0 = &cx->nodes[0];
        if (!pa->fin_called) {
            pa->fin_called = true;
            pa->fin_ci = 0;
            cx->coll_n = 0;
            cx->collb_n = 0;
            if (n0->kind == WEIR__K_SPAWN && !weir__par_cancelled(p)) {
                /* every live sub-pipeline of the shard ends (spawn.c) */
                uint64_t out0 = n0->out;
                int r = weir__spawn_end_all(cx);
                weir__collect_seal(cx);
                if (r < 0 || cx->err) {
                    weir__pipeline_fail(p, n0->term, cx->err ? cx->err : r, cx->err_msg, w);
                    return WEIR__STEP_ENDED;
                }
                atomic_store_explicit(&n0->st_out, n0->out, memory_order_relaxed);
                s->nodes[0].out += n0->out - out0;
            } else if (n0->term->finish && !weir__par_cancelled(p)) {
                const bool sink = n0->kind == WEIR__K_SINK;
                int r = n0->term->finish(n0->state, sink ? NULL : &n0->emit);
                if (r < 0 || cx->err) {
                    weir__pipeline_fail(p, n0->term, cx->err ? cx->err : r, cx->err_msg, w);
                    return WEIR__STEP_ENDED;
                }
                /* the shard's own statistics, and the stage's count */
                weir__derive_counts(cx);
                weir__collect_seal(cx);
                atomic_store_explicit(&n0->st_out, n0->out, memory_order_relaxed);
                if (n0->kind == WEIR__K_MAP)
                    s->nodes[0].extra += cx->coll_n;
                else
                    s->nodes[0].out += cx->coll_n;
            }
        }
        while (osz && pa->fin_ci < cx->coll_n && !s->err) {
            size_t left = cx->coll_n - pa->fin_ci;
            size_t k = weir__push_run(s, pa->end, cx->coll + pa->fin_ci * osz, osz, left);
            pa->fin_ci += k;
            if (k == 0 && !s->err)
                return WEIR__STEP_WAIT;
        }
        if (s->err)
            return WEIR__STEP_ERROR;
        pa->fin_next++;
        pa->fin_called = false;
    }
    return WEIR__STEP_ENDED;
}

/* ------------------------------------------------------------- dispatcher */

/* Add a completed replica's counters to the stage's nodes (dispatcher, after
 * the acquire load of DONE). */
static void weir__par_absorb(weir__stage *s, weir__slot *sl)
{
    if (s->par->nshards) {
        /* the shards keep their own statistics; the stage counts what came
         * out of them as shard 0's node's output, for the serial tail */
        weir__node *r = &s->nodes[0];
        r->in += sl->n;
        if (r->kind != WEIR__K_MAP)
            for (unsigned j = 0; j < sl->ntouched; j++)
                r->out += sl->on[sl->touched[j]];
        return;
    }
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
    if (s->par->nshards)
        return weir__keyed_commit(s, sl);
    weir__stage *sh = sl->shadow;
    const unsigned end = s->par->end;
    const size_t osz = s->nodes[end - 1].term->out_size;
    while (sl->ci < sh->coll_n && !s->err) {
        const char *rec = sh->coll + sl->ci * osz;
        size_t left = sh->coll_n - sl->ci;
        size_t k = weir__push_run(s, end, rec, osz, left);
        sl->ci += k;
        if (k == 0 && !s->err)
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

/* weir_spawn with an idle timeout: every sweep_ns (half the timeout, so a
 * sub-pipeline ends within 1.5 x the timeout of its last record), while
 * sub-pipelines live, send a sweep (weir__keyed_sweep), and ask the stage's
 * wake-up (time.c) for the next one. At the end of the input the finish
 * ends them all: no more sweeps. */
static void weir__par_sweep(weir__stage *s, bool at_end, weir_worker *w)
{
    weir__par *pa = s->par;
    s->nodes[0].wake_at = 0;
    if (at_end)
        return;
    uint64_t live = 0, spawned, ended;
    for (unsigned h = 0; h < pa->nshards; h++) {
        uint64_t l = 0;
        weir__spawn_shard_stats(pa->shards[h].ctx->nodes[0].term, &l, &spawned, &ended);
        live += l;
    }
    if (!live && pa->next == pa->release)
        return; /* nothing to sweep, nothing in flight that may make some */
    uint64_t now = weir__terms_now_ns();
    if (!pa->next_sweep)
        pa->next_sweep = now + pa->sweep_ns;
    if (now >= pa->next_sweep && live && pa->next - pa->release < pa->nslots) {
        weir__slot *sl = &pa->slots[pa->next % pa->nslots];
        sl->seq = pa->next;
        sl->begin = pa->claim;
        sl->n = 0;
        sl->seen_done = sl->out_done = false;
        sl->sweep = true;
        sl->ci = 0;
        sl->cpart = 0;
        /* relaxed: the shards see it after their acquire of fhead */
        atomic_store_explicit(&sl->state, WEIR__SL_RUNNING, memory_order_relaxed);
        pa->next++;
        pa->running++;
        weir__keyed_sweep(s, sl, w);
        pa->next_sweep = now + pa->sweep_ns;
    }
    s->nodes[0].wake_at = pa->next_sweep;
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
commit:
    if (pa->ordered || pa->nshards) {
        /* keyed stages always commit batch by batch: per-key order */
        while (pa->release < pa->next && !s->err) {
            weir__slot *sl = &pa->slots[pa->release % pa->nslots];
            if (!sl->seen_done)
                break;
            /* a barrier before this batch passes first, at its position */
            if (WEIR_UNLIKELY(s->bpend_n) && weir__bar_par_release(s) != WEIR__STEP_PROGRESS) {
                blocked = true;
                break;
            }
            if (!weir__par_commit(s, sl)) {
                blocked = true;
                break;
            }
            weir__par_release(s, sl);
        }
    } else {
        /* a pending barrier: no batch after it is committed before it passed
         * (it passes once every batch before it is released, below) */
        const uint64_t bar_seq =
            WEIR_UNLIKELY(s->bpend_n) ? s->bpend_seq[s->bpend_head] : UINT64_MAX;
        for (uint64_t q = pa->release; q < pa->next && q < bar_seq && !s->err; q++) {
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
    if (WEIR_UNLIKELY(s->bpend_n) && !s->err && !blocked) {
        /* checkpoint barriers whose batches are all committed (barrier.c);
         * one that passed may let done batches after it commit */
        unsigned before = s->bpend_n;
        int r = weir__bar_par_release(s);
        if (r == WEIR__STEP_WAIT)
            blocked = true;
        else if (s->bpend_n < before && r == WEIR__STEP_PROGRESS)
            goto commit;
    }
    if (s->err) {
        weir__par_publish(pa);
        return WEIR__STEP_ERROR;
    }

    /* 3. Dispatch, while a replica and a slot are free. A full output does
     * not stop it: the replicas work ahead into the reorder slots. */
    bool at_end;
    uint64_t avail = weir__stream_avail(st, pa->claim, &at_end);
    const uint64_t B = s->p->cfg.batch;
    /* a barrier is queued behind the batches claimed before it (barrier.c):
     * read after head and ended; no batch is claimed across one */
    uint64_t bn = weir__bar_next(in);
    while (WEIR_UNLIKELY(bn == pa->claim)) {
        weir__bar_input(s, 0, w);
        bn = weir__bar_next(in);
    }
    while (avail && (pa->nshards || pa->running < pa->width) &&
           pa->next - pa->release < pa->nslots) {
        uint64_t n = avail < B ? avail : B;
        if (WEIR_UNLIKELY(bn - pa->claim < n))
            n = bn - pa->claim;
        weir__slot *sl = &pa->slots[pa->next % pa->nslots];
        sl->seq = pa->next;
        sl->begin = pa->claim;
        sl->n = n;
        sl->seen_done = sl->out_done = false;
        sl->sweep = false;
        sl->ci = 0;
        sl->cpart = 0;
        if (pa->nshards) {
            /* relaxed: the shards see it after their acquire of fhead */
            atomic_store_explicit(&sl->state, WEIR__SL_RUNNING, memory_order_relaxed);
            pa->next++;
            pa->claim += n;
            avail -= n;
            pa->running++;
            weir__keyed_dispatch(s, sl, w);
            while (WEIR_UNLIKELY(bn == pa->claim)) {
                weir__bar_input(s, 0, w);
                bn = weir__bar_next(in);
            }
            continue;
        }
        weir__stage *sh = sl->shadow;
        sh->coll_n = 0;
        sh->collb_n = 0;
        sh->err = 0;
        weir_free(sh->err_msg);
        sh->err_msg = NULL;
        /* relaxed: the submit below hands the slot to the replica */
        atomic_store_explicit(&sl->state, WEIR__SL_RUNNING, memory_order_relaxed);
        pa->next++;
        pa->claim += n;
        avail -= n;
        while (WEIR_UNLIKELY(bn == pa->claim)) {
            weir__bar_input(s, 0, w);
            bn = weir__bar_next(in);
        }
        pa->running++;
        /* the deadlock watch: a replica is busy until after its notify
         * (relaxed: an RMW, see weir__stage_notify) */
        atomic_fetch_add_explicit(&s->p->busy, 1, memory_order_relaxed);
        weir__par_submit(s, &sl->job, w);
    }
    if (WEIR_UNLIKELY(s->bpend_n) && !blocked && weir__bar_par_release(s) == WEIR__STEP_WAIT)
        blocked = true; /* a barrier just claimed with nothing in flight before it */
    if (WEIR_UNLIKELY(pa->sweep_ns))
        weir__par_sweep(s, at_end, w);
    weir__par_publish(pa);
    if (at_end && pa->release == pa->next && !blocked && WEIR_UNLIKELY(s->bpend_n)) {
        int r = weir__bar_par_release(s);
        if (r != WEIR__STEP_PROGRESS)
            return r;
    }
    if (at_end && pa->release == pa->next && !blocked)
        return pa->nshards ? weir__par_finish(s, w) : WEIR__STEP_ENDED;
    return WEIR__STEP_WAIT;
}

/* ------------------------------------------------------------------ build */

/* A context that runs nodes copied from `from` [0, end) for a replica or a
 * shard, appending their output to its coll buffer. */
weir__stage *weir__shadow_new(weir__stage *s, weir__node *from, unsigned end)
{
    weir_pipeline *p = s->p;
    size_t ssz = (sizeof(weir__stage) + WEIR_CACHELINE - 1) / WEIR_CACHELINE * WEIR_CACHELINE;
    weir__stage *sh = weir_aligned_alloc(WEIR_CACHELINE, ssz);
    if (!sh)
        return NULL;
    memset((void *)sh, 0, sizeof *sh);
    atomic_init(&sh->state, WEIR__ST_RUNNING);
    atomic_init(&sh->st_activations, 0);
    atomic_init(&sh->st_ns, 0);
    sh->p = p;
    sh->id = s->id;
    sh->head = WEIR__H_INPUT;
    sh->collect = true;
    sh->check_cancel = true;
    sh->nodes = weir_calloc(end, sizeof *sh->nodes);
    if (!sh->nodes) {
        weir_free(sh);
        return NULL;
    }
    sh->nnodes = end;
    sh->vec = !p->cfg.profile;
    for (unsigned i = 0; i < end; i++) {
        weir__node *c = &sh->nodes[i];
        const weir__node *r = &from[i];
        c->stage = sh;
        c->idx = i;
        c->kind = r->kind;
        c->out_var = r->term->out_var;
        c->state = r->state;
        c->fn = r->fn;
        c->term = r->term;
        atomic_init(&c->st_in, 0);
        atomic_init(&c->st_out, 0);
        atomic_init(&c->st_ns, 0);
        if (c->kind == WEIR__K_MAP) {
            c->tmp = weir_malloc(c->term->out_size);
            if (!c->tmp)
                sh->vec = false, sh->err = -ENOMEM;
            if (c->term->out_var)
                sh->vec = false; /* its output lasts until its next call */
            if (c->term->out_size > sh->vec_size)
                sh->vec_size = c->term->out_size;
        } else if (c->kind != WEIR__K_FILTER) {
            sh->vec = false; /* a function term: record by record */
        }
    }
    weir__stage_bind_emits(sh);
    return sh;
}

void weir__shadow_free(weir__stage *sh)
{
    if (!sh)
        return;
    for (unsigned i = 0; sh->nodes && i < sh->nnodes; i++) {
        weir_free(sh->nodes[i].tmp);
        weir_free(sh->nodes[i].rbuf);
    }
    weir_free(sh->nodes);
    weir_free(sh->coll);
    weir_free(sh->collb);
    weir_free(sh->err_msg);
    weir_free(sh);
}

static int weir__keyed_build(weir__stage *s, weir_term *g)
{
    weir__par *pa = s->par;
    const unsigned k_ = (unsigned)g->nchildren;
    const size_t B = s->p->cfg.batch;
    pa->key = g->key;
    pa->key_arg = g->key_arg;
    /* a spawn term's idle timeout: sweeps at half of it */
    pa->sweep_ns = weir__spawn_idle_ns(g->children[0]) / 2;
    if (weir__spawn_idle_ns(g->children[0]) && !pa->sweep_ns)
        pa->sweep_ns = 1;
    pa->touch = weir_calloc(k_, sizeof *pa->touch);
    pa->shards = weir_aligned_alloc(WEIR_CACHELINE, k_ * sizeof *pa->shards);
    if (!pa->shards)
        return -ENOMEM;
    /* zeroed at once: weir__par_free() walks the shards of a partial build */
    memset((void *)pa->shards, 0, k_ * sizeof *pa->shards);
    pa->nshards = k_;
    if (!pa->touch)
        return -ENOMEM;
    for (unsigned i = 0; i < k_; i++) {
        weir__shard *sd = &pa->shards[i];
        weir_term *t = g->children[i];
        atomic_init(&sd->state, WEIR__ST_IDLE);
        atomic_init(&sd->fhead, 0);
        sd->stage = s;
        sd->idx = i;
        weir_job_init(&sd->job, weir__shard_job, sd, 0);
        sd->fifo = weir_calloc(pa->nslots, sizeof *sd->fifo);
        if (!sd->fifo)
            return -ENOMEM;
        /* the shard's term, in a context of its own */
        weir__node tmpl = s->nodes[0];
        tmpl.term = t;
        tmpl.kind = t->kind;
        tmpl.state = t->state;
        tmpl.fn = t->fn;
        sd->ctx = weir__shadow_new(s, &tmpl, 1);
        if (!sd->ctx || sd->ctx->err)
            return -ENOMEM;
        sd->ctx->vec = false; /* per record: the outputs of each record are counted */
        if (i > 0) {
            t->stage = s; /* statistics read the shard's context (stats.c) */
            t->node = 0;
        }
    }
    for (unsigned k = 0; k < pa->nslots; k++) {
        weir__slot *sl = &pa->slots[k];
        sl->sh_of = weir_calloc(B, sizeof *sl->sh_of);
        sl->cnt = weir_calloc(B, sizeof *sl->cnt);
        sl->touched = weir_calloc(k_ < B || g->children[0]->kind == WEIR__K_SPAWN ? k_ : B,
                                  sizeof *sl->touched);
        sl->obuf = weir_calloc(k_, sizeof *sl->obuf);
        sl->on = weir_calloc(k_, sizeof *sl->on);
        sl->ocap = weir_calloc(k_, sizeof *sl->ocap);
        sl->oci = weir_calloc(k_, sizeof *sl->oci);
        sl->obufb = weir_calloc(k_, sizeof *sl->obufb);
        if (g->children[0]->kind == WEIR__K_SPAWN &&
            !(sl->key_of = weir_calloc(B, sizeof *sl->key_of)))
            return -ENOMEM;
        sl->obcap = weir_calloc(k_, sizeof *sl->obcap);
        if (!sl->sh_of || !sl->cnt || !sl->touched || !sl->obuf || !sl->on || !sl->ocap ||
            !sl->oci || !sl->obufb || !sl->obcap)
            return -ENOMEM;
    }
    return 0;
}

int weir__par_build(weir__stage *s, unsigned end, unsigned width, bool ordered, weir_term *keyed)
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
    if (keyed) {
        /* batches in flight: enough to keep every worker on some shard */
        unsigned wk = weir_runtime_workers(p->rt);
        unsigned m = width < wk ? width : wk;
        pa->nslots = 2 * (m > 2 ? m : 2);
    }
    pa->ordered = ordered;
    atomic_init(&pa->st_running, 0);
    atomic_init(&pa->st_max_running, 0);
    atomic_init(&pa->st_reorder, 0);
    atomic_init(&pa->st_max_reorder, 0);
    atomic_init(&pa->st_batches, 0);
    atomic_init(&pa->st_threads, 0);
    pa->slots = weir_aligned_alloc(WEIR_CACHELINE, pa->nslots * sizeof *pa->slots);
    if (!pa->slots)
        return -ENOMEM;
    memset((void *)pa->slots, 0, pa->nslots * sizeof *pa->slots);
    for (unsigned k = 0; k < pa->nslots; k++) {
        weir__slot *sl = &pa->slots[k];
        atomic_init(&sl->state, 0);
        sl->stage = s;
        weir_job_init(&sl->job, weir__slot_job, sl, 0);
        if (keyed)
            continue; /* the shards are the contexts */
        sl->shadow = weir__shadow_new(s, s->nodes, end);
        if (!sl->shadow || sl->shadow->err)
            return -ENOMEM;
    }
    if (keyed) {
        int r = weir__keyed_build(s, keyed);
        if (r < 0)
            return r;
    }
    if (p->cfg.mode == WEIR_EXEC_THREADS) {
        weir__par_threads *th = weir_calloc(1, sizeof *th);
        if (!th)
            return -ENOMEM;
        pthread_mutex_init(&th->mu, NULL);
        pthread_cond_init(&th->cv, NULL);
        pa->threads = th;
        th->cap = pa->nslots + pa->nshards;
        th->q = weir_calloc(th->cap, sizeof *th->q);
        th->tids = weir_calloc(width, sizeof *th->tids);
        if (!th->q || !th->tids)
            return -ENOMEM;
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
        weir__slot *sl = &pa->slots[k];
        weir__shadow_free(sl->shadow);
        for (unsigned i = 0; sl->obuf && i < pa->nshards; i++)
            weir_free(sl->obuf[i]);
        for (unsigned i = 0; sl->obufb && i < pa->nshards; i++)
            weir_free(sl->obufb[i]);
        weir_free(sl->obufb);
        weir_free(sl->obcap);
        weir_free(sl->key_of);
        weir_free(sl->sh_of);
        weir_free(sl->cnt);
        weir_free(sl->touched);
        weir_free(sl->obuf);
        weir_free(sl->on);
        weir_free(sl->ocap);
        weir_free(sl->oci);
    }
    weir_free(pa->slots);
    for (unsigned i = 0; pa->shards && i < pa->nshards; i++) {
        weir__shadow_free(pa->shards[i].ctx);
        weir_free(pa->shards[i].fifo);
    }
    weir_free(pa->shards);
    weir_free(pa->touch);
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
