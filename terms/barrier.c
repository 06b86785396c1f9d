/*
 * weir terms — checkpoint barriers: in-band markers that tell a source when
 * everything it emitted before a point has reached every sink.
 *
 * The data path. A checkpointing blocking source (weir_term_on_checkpoint)
 * calls weir_emit_barrier(): barrier (src, id) is appended to its output
 * stream's barrier queue at position p_head, i.e. before the next record.
 * A consumer that reaches that position (its tail == pos) handles the
 * barrier before it reads record pos, and publishes that it did (its
 * cursor's `bdone`):
 *
 *   one input   the stage passes the barrier at once (weir__bar_pass): a
 *               batch sink at the end of its chain is flushed, the terms'
 *               barrier callbacks run in chain order (their emits go first),
 *               then the barrier goes into the stage's own output queue at
 *               the position of its next record (spilled records included),
 *               or, for a stage with no output (a sink, or nobody reads),
 *               it is acknowledged.
 *   several     (merge, zip) a barrier is passed once it arrived on every
 *               input that carries its source's barriers and has not ended:
 *               per source, a ring of counts of inputs past each id. The
 *               inputs that delivered it first are not blocked (Flink's
 *               at-least-once barrier handling, without alignment): records
 *               behind the barrier on a fast input may go out before it,
 *               which only makes an acknowledgement later, never early, and
 *               cannot deadlock a zip whose inputs' barriers sit at
 *               different record positions.
 *   parallel    (weir_parallel, weir_keyed, weir_spawn) the dispatcher never
 *               claims a batch across a barrier; a barrier it reaches is
 *               queued with the sequence number of the next batch and passed
 *               once every batch before it was committed and released.
 *
 * Acknowledgement. Each terminal stage (no output stream) that a source's
 * barriers reach acknowledges each barrier once; the source knows how many
 * (`expected`, counted at compile). The last acknowledgement of id k calls
 * the source's checkpoint function; calls are made in id order under the
 * source's mutex (a sink acknowledges in order, so barrier k + 1 completes
 * after k, but the two completing threads may race to the call).
 *
 * Memory orders.
 *   queue head   producer: entry written, then head stored release; the
 *                consumer's acquire load (weir__bar_next) pairs with it. A
 *                barrier before record p is appended before record p is
 *                written and so before the release of the stream head that
 *                publishes p: a consumer that acquired that head sees the
 *                entry. weir__bar_next is read after the stream's head and
 *                `ended` (so a barrier after the last record is seen before
 *                the end).
 *   bdone        consumer: store seq_cst after handling an entry; producer:
 *                acquire loads (the entries before the smallest bdone may be
 *                rewritten). A full queue is the Dekker handshake of
 *                stream.c on `waiting` / `bdone` (seq_cst on all four
 *                accesses): the producer stores waiting = 1 and re-reads the
 *                bdones; a consumer stores bdone and then reads waiting, and
 *                notifies the producer when it takes the request.
 *   acks         fetch_add acq_rel: the acknowledgements of an id form a
 *                release sequence, so the thread that makes the last one
 *                has seen every sink's work before its own; `completed` is
 *                stored release under the mutex, after the id's counter slot
 *                was reset, and the source's acquire load in
 *                weir_emit_barrier() pairs with it (a slot is reused only
 *                for an id WEIR_CHECKPOINTS_IN_FLIGHT later).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define IN_FLIGHT WEIR_CHECKPOINTS_IN_FLIGHT

/* ------------------------------------------------------------- completion */

static void weir__ckpt_ack(weir_pipeline *p, uint32_t src, uint64_t id)
{
    weir__ckpt *c = &p->ckpt[src];
    /* acq_rel: see the top */
    uint32_t n = atomic_fetch_add_explicit(&c->acks[id % IN_FLIGHT], 1, memory_order_acq_rel) + 1;
    if (n < c->expected)
        return;
    pthread_mutex_lock(&c->mu);
    uint64_t done = atomic_load_explicit(&c->completed, memory_order_relaxed);
    c->ready |= UINT64_C(1) << (id - done - 1); /* id - done <= IN_FLIGHT */
    while (c->ready & 1) {
        c->ready >>= 1;
        done++;
        atomic_store_explicit(&c->acks[done % IN_FLIGHT], 0, memory_order_relaxed);
        /* release: pairs with the source's acquire (weir_emit_barrier) */
        atomic_store_explicit(&c->completed, done, memory_order_release);
        c->t->checkpoint(c->t->state, done);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ queue */

static uint64_t weir__barq_min_done(const weir__stream *st, memory_order mo)
{
    uint64_t m = UINT64_MAX;
    for (unsigned i = 0; i < st->ncons; i++) {
        uint64_t d = atomic_load_explicit(&st->cursors[i].bdone, mo);
        if (d < m)
            m = d;
    }
    return m;
}

/* Room for one more entry in st's queue; when there is none, a consumer has
 * been asked to notify the producer stage. */
static bool weir__barq_room(weir__stream *st)
{
    weir__barq *q = st->barq;
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* ours */
    if (h - q->tail < WEIR__BARQ)
        return true;
    /* acquire: the consumers have read the entries before their bdone */
    uint64_t m = weir__barq_min_done(st, memory_order_acquire);
    q->tail = m < h ? m : h;
    if (h - q->tail < WEIR__BARQ)
        return true;
    /* seq_cst: the Dekker handshake with weir__bar_done() */
    atomic_store_explicit(&q->waiting, 1, memory_order_seq_cst);
    m = weir__barq_min_done(st, memory_order_seq_cst);
    q->tail = m < h ? m : h;
    if (h - q->tail < WEIR__BARQ) {
        uint32_t one = 1;
        atomic_compare_exchange_strong_explicit(&q->waiting, &one, 0, memory_order_relaxed,
                                                memory_order_relaxed);
        return true;
    }
    return false;
}

static void weir__barq_push(weir__stream *st, uint32_t src, uint64_t id, uint64_t pos)
{
    weir__barq *q = st->barq;
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed); /* ours */
    weir__barrier *e = &q->e[h % WEIR__BARQ];
    e->pos = pos;
    e->id = id;
    e->src = src;
    /* release: pairs with the acquire in weir__bar_next() */
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
}

/* Consumer: input i handled its next entry. */
static void weir__bar_done(weir__stage *s, unsigned i, weir_worker *w)
{
    weir__input *in = &s->inputs[i];
    weir__stream *st = in->stream;
    in->bidx++;
    /* seq_cst: the Dekker handshake with weir__barq_room() */
    atomic_store_explicit(&st->cursors[in->cursor].bdone, in->bidx, memory_order_seq_cst);
    if (atomic_load_explicit(&st->barq->waiting, memory_order_seq_cst)) {
        uint32_t one = 1;
        if (atomic_compare_exchange_strong_explicit(&st->barq->waiting, &one, 0,
                                                    memory_order_relaxed, memory_order_relaxed))
            weir__stage_notify(st->producer, w);
    }
}

/* ------------------------------------------------------------------- pass */

/* Barrier b passes stage s: flush, the barrier callbacks of nodes
 * [from, nnodes), then forward or acknowledge. Nothing is done (WAIT) while
 * the output's queue is full, so a retry repeats no callback. */
static int weir__bar_pass(weir__stage *s, const weir__barrier *b, unsigned from)
{
    /* A cancelled pipeline has dropped records (a batch or a replica cut
     * short): no barrier passes any more, so no checkpoint completes for
     * records that never arrived. relaxed: a replica or shard that saw the
     * cancel stored DONE after its load, and the dispatcher's acquire of
     * DONE precedes this load, which by read-read coherence sees it too. */
    if (atomic_load_explicit(&s->p->cancelled, memory_order_relaxed))
        return WEIR__STEP_PROGRESS;
    if (s->out && !weir__barq_room(s->out))
        return WEIR__STEP_WAIT;
    weir__stage_flush_sinks(s);
    for (unsigned i = from; i < s->nnodes && !s->err; i++) {
        weir__node *n = &s->nodes[i];
        if (!n->term->on_barrier)
            continue;
        const bool sink = n->kind == WEIR__K_SINK || n->kind == WEIR__K_BATCH_SINK;
        int r = n->term->on_barrier(n->state, sink ? NULL : &n->emit);
        if (r < 0)
            weir__note_err(s, i, r);
        weir__stage_flush_sinks(s); /* what the callback emitted */
    }
    if (s->err)
        return WEIR__STEP_ERROR;
    if (s->out) {
        weir__barq_push(s->out, b->src, b->id, s->out->p_head + s->spill_n);
        s->bar_pushed = true;
    } else {
        weir__ckpt_ack(s->p, b->src, b->id);
    }
    return WEIR__STEP_PROGRESS;
}

/* Several inputs: forward every id of `src` that every carrying input has
 * passed. */
static int weir__bar_forward(weir__stage *s, uint32_t src)
{
    uint32_t *cnt = &s->bcnt[(size_t)src * IN_FLIGHT];
    while (s->balive[src]) {
        uint64_t id = s->bfwd[src] + 1;
        if (cnt[id % IN_FLIGHT] < s->balive[src])
            break;
        weir__barrier b = {0, id, src};
        int r = weir__bar_pass(s, &b, 0);
        if (r != WEIR__STEP_PROGRESS) {
            s->bar_stalled = r == WEIR__STEP_WAIT;
            return r;
        }
        cnt[id % IN_FLIGHT] = 0;
        s->bfwd[src] = id;
    }
    return WEIR__STEP_PROGRESS;
}

int weir__bar_retry(weir__stage *s)
{
    s->bar_stalled = false;
    for (uint32_t src = 0; src < s->p->nckpt; src++) {
        if (!(s->ckmask & (UINT64_C(1) << src)))
            continue;
        int r = weir__bar_forward(s, src);
        if (r != WEIR__STEP_PROGRESS)
            return r;
    }
    return WEIR__STEP_PROGRESS;
}

int weir__bar_input(weir__stage *s, unsigned i, weir_worker *w)
{
    weir__input *in = &s->inputs[i];
    const weir__barrier b = in->stream->barq->e[in->bidx % WEIR__BARQ];
    if (s->par) {
        /* the dispatcher: after the batches claimed so far */
        unsigned cap = s->p->nckpt * IN_FLIGHT;
        if (s->bpend_n == cap)
            return WEIR__STEP_WAIT; /* cannot happen: at most cap in flight */
        unsigned k = (s->bpend_head + s->bpend_n) % cap;
        s->bpend[k] = b;
        s->bpend_seq[k] = s->par->next;
        s->bpend_n++;
        weir__bar_done(s, i, w);
        return WEIR__STEP_PROGRESS;
    }
    if (s->ninputs == 1) {
        int r = weir__bar_pass(s, &b, 0);
        if (r == WEIR__STEP_PROGRESS)
            weir__bar_done(s, i, w);
        return r;
    }
    const unsigned nc = s->p->nckpt;
    s->bpassed[(size_t)i * nc + b.src] = b.id;
    s->bcnt[(size_t)b.src * IN_FLIGHT + b.id % IN_FLIGHT]++;
    weir__bar_done(s, i, w);
    return weir__bar_forward(s, b.src);
}

int weir__bar_input_ended(weir__stage *s, unsigned i, weir_worker *w)
{
    (void)w;
    if (s->ninputs < 2 || !s->bcnt)
        return WEIR__STEP_PROGRESS;
    const unsigned nc = s->p->nckpt;
    const uint64_t m = s->inputs[i].stream->ckmask;
    for (uint32_t src = 0; src < nc; src++) {
        if (!(m & (UINT64_C(1) << src)))
            continue;
        /* its passes of ids not forwarded yet no longer count */
        uint64_t last = s->bpassed[(size_t)i * nc + src];
        for (uint64_t id = s->bfwd[src] + 1; id <= last; id++)
            s->bcnt[(size_t)src * IN_FLIGHT + id % IN_FLIGHT]--;
        s->balive[src]--;
        int r = weir__bar_forward(s, src);
        if (r != WEIR__STEP_PROGRESS)
            return r;
    }
    return WEIR__STEP_PROGRESS;
}

int weir__bar_par_release(weir__stage *s)
{
    const unsigned cap = s->p->nckpt * IN_FLIGHT;
    while (s->bpend_n && s->bpend_seq[s->bpend_head] <= s->par->release) {
        int r = weir__bar_pass(s, &s->bpend[s->bpend_head], s->par->end);
        if (r != WEIR__STEP_PROGRESS)
            return r;
        s->bpend_head = (s->bpend_head + 1) % cap;
        s->bpend_n--;
    }
    return WEIR__STEP_PROGRESS;
}

/* ------------------------------------------------------------------ source */

WEIR_API int weir_emit_barrier(weir_emit *e, uint64_t *id)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    weir_pipeline *p = s->p;
    weir_term *t = n->term;
    if (!id || !t->checkpoint || s->head != WEIR__H_BLOCKING || n->idx != 0)
        return weir__terms_error(-EINVAL,
                                 "weir_emit_barrier: term '%s' is not a checkpointing "
                                 "blocking source (weir_term_on_checkpoint)",
                                 t->name);
    if (weir_emit_stopping(e))
        return -ECANCELED;
    if (s->err)
        return s->err;
    weir__ckpt *c = &p->ckpt[t->ckpt];
    uint64_t next = c->next_id + 1;
    /* acquire: pairs with the release of completed (the slot is reset) */
    if (next - atomic_load_explicit(&c->completed, memory_order_acquire) > IN_FLIGHT)
        return -EBUSY;
    if (s->out && !weir__barq_room(s->out))
        return -EBUSY;
    c->next_id = next;
    *id = next;
    if (!s->out) {
        weir__ckpt_ack(p, t->ckpt, next);
        return 0;
    }
    weir__barq_push(s->out, t->ckpt, next, s->out->p_head);
    /* the consumers see it even if no record follows for a while */
    weir__notify_consumers(s, NULL);
    return 0;
}

WEIR_API weir_term *weir_term_on_checkpoint(weir_term *t, weir_checkpoint_fn fn)
{
    if (!t)
        return NULL;
    if (t->owner != WEIR__FREE) {
        weir__terms_error(-EBUSY, "weir_term_on_checkpoint: term '%s' is already composed",
                          t->name);
        return NULL;
    }
    if (t->kind != WEIR__K_BLOCKING || !fn) {
        weir__terms_error(-EINVAL,
                          "weir_term_on_checkpoint: %s '%s' %s (only blocking sources inject "
                          "barriers)",
                          t->kind_name, t->name, fn ? "cannot checkpoint" : "gets a NULL function");
        weir_term_destroy(t);
        return NULL;
    }
    t->checkpoint = fn;
    return t;
}

WEIR_API weir_term *weir_term_on_barrier(weir_term *t, weir_barrier_fn fn)
{
    if (!t)
        return NULL;
    if (t->owner != WEIR__FREE) {
        weir__terms_error(-EBUSY, "weir_term_on_barrier: term '%s' is already composed", t->name);
        return NULL;
    }
    switch (t->kind) {
    case WEIR__K_FUNCTION:
    case WEIR__K_MAP:
    case WEIR__K_FILTER:
    case WEIR__K_SINK:
    case WEIR__K_BATCH_SINK:
        if (fn) {
            t->on_barrier = fn;
            return t;
        }
        break;
    default:
        break;
    }
    weir__terms_error(-EINVAL,
                      "weir_term_on_barrier: %s '%s' %s (function, map, filter, sink and batch "
                      "sink terms only)",
                      t->kind_name, t->name, fn ? "cannot take barriers" : "gets a NULL function");
    weir_term_destroy(t);
    return NULL;
}

/* ---------------------------------------------------------------- compile */

int weir__barriers_build(weir_pipeline *p)
{
    unsigned n = 0;
    for (unsigned k = 0; k < p->nterms; k++) {
        weir_term *t = p->terms[k];
        if (!t->checkpoint)
            continue;
        if (n == 64)
            return weir__terms_error(-EINVAL, "more than 64 checkpointing sources ('%s')", t->name);
        t->ckpt = n++;
    }
    if (!n)
        return 0;
    p->ckpt = weir_calloc(n, sizeof *p->ckpt);
    if (!p->ckpt)
        return -ENOMEM;
    p->nckpt = n;
    for (unsigned k = 0; k < p->nterms; k++) {
        weir_term *t = p->terms[k];
        if (!t->checkpoint)
            continue;
        weir__ckpt *c = &p->ckpt[t->ckpt];
        c->t = t;
        atomic_init(&c->completed, 0);
        for (unsigned j = 0; j < IN_FLIGHT; j++)
            atomic_init(&c->acks[j], 0);
        pthread_mutex_init(&c->mu, NULL);
    }
    /* Which sources' barriers reach each stage: a fixpoint over the stage
     * graph (a few passes: it is acyclic). */
    for (bool changed = true; changed;) {
        changed = false;
        for (unsigned k = 0; k < p->nstages; k++) {
            weir__stage *s = p->stages[k];
            uint64_t m = 0;
            const weir_term *h = s->nodes[0].term;
            if (s->head == WEIR__H_BLOCKING && h->checkpoint)
                m |= UINT64_C(1) << h->ckpt;
            for (unsigned i = 0; i < s->ninputs; i++)
                if (s->inputs[i].stream)
                    m |= s->inputs[i].stream->producer->ckmask;
            if (m != s->ckmask) {
                s->ckmask = m;
                changed = true;
            }
        }
    }
    for (unsigned k = 0; k < p->nstreams; k++) {
        weir__stream *st = p->streams[k];
        st->ckmask = st->producer->ckmask;
        if (!st->ckmask)
            continue;
        st->barq = weir_aligned_alloc(WEIR_CACHELINE, sizeof *st->barq);
        if (!st->barq)
            return -ENOMEM;
        memset((void *)st->barq, 0, sizeof *st->barq);
        atomic_init(&st->barq->head, 0);
        atomic_init(&st->barq->waiting, 0);
        for (unsigned i = 0; i < st->ncons; i++)
            atomic_init(&st->cursors[i].bdone, 0);
    }
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (!s->ckmask)
            continue;
        if (!s->out)
            for (unsigned b = 0; b < n; b++)
                if (s->ckmask & (UINT64_C(1) << b))
                    p->ckpt[b].expected++;
        if (s->ninputs > 1) {
            s->bpassed = weir_calloc((size_t)s->ninputs * n, sizeof *s->bpassed);
            s->bfwd = weir_calloc(n, sizeof *s->bfwd);
            s->bcnt = weir_calloc((size_t)n * IN_FLIGHT, sizeof *s->bcnt);
            s->balive = weir_calloc(n, sizeof *s->balive);
            if (!s->bpassed || !s->bfwd || !s->bcnt || !s->balive)
                return -ENOMEM;
            for (unsigned i = 0; i < s->ninputs; i++)
                for (unsigned b = 0; b < n; b++)
                    if (s->inputs[i].stream && (s->inputs[i].stream->ckmask & (UINT64_C(1) << b)))
                        s->balive[b]++;
        }
        if (s->par) {
            s->bpend = weir_calloc((size_t)n * IN_FLIGHT, sizeof *s->bpend);
            s->bpend_seq = weir_calloc((size_t)n * IN_FLIGHT, sizeof *s->bpend_seq);
            if (!s->bpend || !s->bpend_seq)
                return -ENOMEM;
        }
    }
    return 0;
}

void weir__barriers_free(weir_pipeline *p)
{
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (!s)
            continue;
        weir_free(s->bpassed);
        weir_free(s->bfwd);
        weir_free(s->bcnt);
        weir_free(s->balive);
        weir_free(s->bpend);
        weir_free(s->bpend_seq);
        s->bpassed = s->bfwd = NULL;
        s->bcnt = NULL;
        s->balive = NULL;
        s->bpend = NULL;
        s->bpend_seq = NULL;
    }
    for (unsigned k = 0; k < p->nstreams; k++) {
        weir_free(p->streams[k]->barq);
        p->streams[k]->barq = NULL;
    }
    for (unsigned b = 0; b < p->nckpt; b++)
        pthread_mutex_destroy(&p->ckpt[b].mu);
    weir_free(p->ckpt);
    p->ckpt = NULL;
    p->nckpt = 0;
}
