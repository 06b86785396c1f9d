/*
 * weir terms — one activation of a stage, the same in every execution mode.
 *
 * An activation takes at most B records from the stage's head (a pull
 * source, a stream input, a merge or a zip) and pushes each one through the
 * fused chain depth-first: a function term's emit calls straight into the
 * next term, so there is no buffer between fused terms. The last term's
 * records go to the output stream, or to a small spill buffer when a single
 * input produced more records than the stream had room for (flat-map); the
 * stage takes no new input until the spill has drained. At the end the new
 * records are published and the consumers notified once per activation.
 *
 * weir__stage_run() returns what the scheduler should do next (exec.c for
 * the pool, exec_threads.c for threads): run again, wait for a
 * notification, or nothing (finished).
 *
 * Only one activation of a stage runs at a time (the scheduler guarantees
 * it), so everything below the `state` line of weir__stage is accessed
 * without atomics, except the st_* counters that other threads read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Thread_local weir__stage *weir__current_stage;

/* What a head step found, before the common epilogue decides
 * (WEIR__STEP_*, shared with parallel.c). */
#define STEP_PROGRESS WEIR__STEP_PROGRESS
#define STEP_WAIT     WEIR__STEP_WAIT
#define STEP_ENDED    WEIR__STEP_ENDED
#define STEP_ERROR    WEIR__STEP_ERROR

static inline bool weir__cancelled(const weir_pipeline *p)
{
    /* relaxed: cancel notifies every stage afterwards, and the notification
     * (an acq_rel RMW or a mutex) orders it before the activation it causes. */
    return atomic_load_explicit(&((weir_pipeline *)p)->cancelled, memory_order_relaxed);
}

static inline bool weir__stopping(const weir_pipeline *p)
{
    /* relaxed: as for cancelled. */
    return atomic_load_explicit(&((weir_pipeline *)p)->stopping, memory_order_relaxed);
}

void weir__note_err(weir__stage *s, unsigned node, int err)
{
    if (s->err == 0) {
        s->err = err;
        s->err_node = node;
    }
}

static inline uint32_t weir__want(const weir__stage *s)
{
    /* Hysteresis: a blocked producer waits until it can write a useful
     * amount, not one record, so it is not re-activated per consumer step. */
    uint64_t cap = s->out->cap;
    uint64_t want = s->p->cfg.batch;
    if (want > cap / 2)
        want = cap / 2;
    return want ? (uint32_t)want : 1;
}

/* ---------------------------------------------------------------- output */

/*
 * Every record leaves a stage through the stream's write side (stream.c:
 * weir__stream_put / weir__stream_write / the reserve-commit pair), or, when
 * the stream has no room for the outputs of one input (a flat-map), into the
 * spill buffer, drained into the stream before the stage takes new input.
 * The spill holds fixed records back to back, or, on a variable-size
 * stream, each record as a uint64_t length and its bytes (8-aligned): the
 * bytes a descriptor points to may not outlive the callback that emitted
 * them.
 */

/* The term whose output overflowed names the error. */
/* Node `node` made a variable-size record longer than any stream of the
 * pipeline can hold (every byte ring is p->byte_cap): fail naming it. */
static int weir__msgsize(weir__stage *s, unsigned node, size_t len)
{
    if (s->err == 0) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "record of %zu bytes is larger than its stream can hold (byte_capacity %llu "
                 "bytes: raise weir_pipeline_config.byte_capacity)",
                 len, (unsigned long long)s->p->byte_cap);
        weir_free(s->err_msg);
        s->err_msg = weir_strdup(msg);
    }
    weir__note_err(s, node, -EMSGSIZE);
    return -EMSGSIZE;
}

/* The term that writes the output stream names the error. */
static int weir__out_msgsize(weir__stage *s, size_t len)
{
    return weir__msgsize(s, s->nnodes - 1, len);
}

static inline size_t weir__spill_entry(const weir__stream *o, const void *rec)
{
    return o->var ? 8 + (((const weir_bytes *)rec)->len + 7) / 8 * 8 : o->size;
}

static int weir__spill_push(weir__stage *s, const void *rec)
{
    const weir__stream *o = s->out;
    size_t need = weir__spill_entry(o, rec);
    if (s->spill_cap - s->spill_len < need) {
        size_t cap = s->spill_cap ? s->spill_cap : 64 * o->size;
        while (cap - s->spill_len < need)
            cap *= 2;
        char *n = weir_realloc(s->spill, cap);
        if (!n)
            return -ENOMEM;
        s->spill = n;
        s->spill_cap = cap;
    }
    char *at = s->spill + s->spill_len;
    if (o->var) {
        const weir_bytes *b = rec;
        uint64_t len = b->len;
        memcpy(at, &len, 8);
        if (len)
            memcpy(at + 8, b->data, b->len);
    } else {
        memcpy(at, rec, o->size);
    }
    s->spill_len += need;
    s->spill_n++;
    return 0;
}

bool weir__out_ready(weir__stage *s)
{
    return s->spill_n == 0 &&
           (weir__stream_wfree(s->out) > 0 || weir__stream_space(s->out, weir__want(s)));
}

/* A replica (parallel.c) appends its output to its own growing buffer; the
 * dispatcher commits it in order. A variable-size output keeps descriptors
 * there and the bytes in collb: until weir__collect_seal() a descriptor's
 * data is an offset into collb (which may move as it grows). */
static int weir__collect_oom(weir__stage *s)
{
    if (!s->err_msg)
        s->err_msg = weir_strdup("out of memory in a replica's output buffer");
    weir__note_err(s, s->nnodes - 1, -ENOMEM);
    return -ENOMEM;
}

static int weir__collect(weir__stage *s, const void *rec, size_t size)
{
    if (s->coll_n == s->coll_cap) {
        size_t cap = s->coll_cap ? s->coll_cap * 2 : 64;
        char *n = weir_realloc(s->coll, cap * size);
        if (!n)
            return weir__collect_oom(s);
        s->coll = n;
        s->coll_cap = cap;
    }
    if (WEIR_UNLIKELY(s->nodes[s->nnodes - 1].term->out_var)) {
        const weir_bytes *b = rec;
        size_t need = (b->len + 7) / 8 * 8;
        if (s->collb_cap - s->collb_n < need) {
            size_t cap = s->collb_cap ? s->collb_cap : 4096;
            while (cap - s->collb_n < need)
                cap *= 2;
            char *n = weir_realloc(s->collb, cap);
            if (!n)
                return weir__collect_oom(s);
            s->collb = n;
            s->collb_cap = cap;
        }
        if (b->len)
            memcpy(s->collb + s->collb_n, b->data, b->len);
        weir_bytes *d = (weir_bytes *)(void *)(s->coll + s->coll_n * size);
        d->data = (const void *)(uintptr_t)s->collb_n;
        d->len = b->len;
        s->collb_n += need;
        s->coll_n++;
        return 0;
    }
    memcpy(s->coll + s->coll_n * size, rec, size);
    s->coll_n++;
    return 0;
}

void weir__collect_seal(weir__stage *s)
{
    if (!s->nnodes || !s->nodes[s->nnodes - 1].term->out_var)
        return;
    weir_bytes *d = (weir_bytes *)(void *)s->coll;
    for (size_t k = 0; k < s->coll_n; k++)
        d[k].data = s->collb + (uintptr_t)d[k].data;
}

static int weir__out_write(weir__stage *s, const void *rec)
{
    weir__stream *o = s->out;
    if (!o)
        return WEIR_UNLIKELY(s->collect)
                   ? weir__collect(s, rec, s->nodes[s->nnodes - 1].term->out_size)
                   : 0;
    if (WEIR_LIKELY(s->spill_n == 0)) {
        int r = weir__stream_put(o, rec, weir__want(s));
        if (WEIR_LIKELY(r > 0))
            return 0;
        if (r < 0)
            return weir__out_msgsize(s, ((const weir_bytes *)rec)->len);
    } else if (o->var && ((const weir_bytes *)rec)->len > o->bcap) {
        return weir__out_msgsize(s, ((const weir_bytes *)rec)->len);
    }
    int r = weir__spill_push(s, rec);
    if (r < 0) {
        weir__note_err(s, s->nnodes - 1, r);
        if (!s->err_msg)
            s->err_msg = weir_strdup("out of memory in the spill buffer");
    }
    return r;
}

/* Copy up to n records (`stride` bytes apart; var: descriptors) into the
 * output stream, as far as there is room; when there is none, the stream
 * has asked the consumer to notify the stage. @return records copied. */
static size_t weir__out_copy(weir__stage *s, const char *src, size_t stride, size_t n)
{
    int err = 0;
    size_t k = weir__stream_write(s->out, src, stride, n, weir__want(s), &err);
    if (WEIR_UNLIKELY(err < 0))
        weir__out_msgsize(s, ((const weir_bytes *)(const void *)(src + k * stride))->len);
    return k;
}

/* Move spilled records into the ring. @return true when the spill is empty. */
static bool weir__spill_drain(weir__stage *s)
{
    weir__stream *o = s->out;
    if (!o->var) {
        size_t k = weir__out_copy(s, s->spill + s->spill_head, o->size, s->spill_n);
        s->spill_head += k * o->size;
        s->spill_n -= k;
    } else {
        while (s->spill_n) {
            uint64_t len;
            memcpy(&len, s->spill + s->spill_head, 8);
            weir_bytes b = {s->spill + s->spill_head + 8, (size_t)len};
            if (weir__stream_put(o, &b, weir__want(s)) <= 0)
                break; /* full (a too-large record never entered the spill) */
            s->spill_head += 8 + (size_t)(len + 7) / 8 * 8;
            s->spill_n--;
        }
    }
    if (s->spill_n)
        return false;
    s->spill_head = s->spill_len = 0;
    return true;
}

/* ----------------------------------------------------------------- chain */

static int weir__flush_batch(weir__stage *s, weir__node *n);
static int weir__var_too_big(weir__stage *s, unsigned node, const void *rec);

/* Exclusive per-callback timing for cfg.profile: time spent in deeper
 * callbacks of the same stage is subtracted from the caller's. */
#define WEIR__PROFILED(s, n, call)                                                                 \
    do {                                                                                           \
        uint64_t saved_ = (s)->prof_nested;                                                        \
        (s)->prof_nested = 0;                                                                      \
        uint64_t t0_ = weir__terms_now_ns();                                                       \
        call;                                                                                      \
        uint64_t el_ = weir__terms_now_ns() - t0_;                                                 \
        (n)->ns += el_ - (s)->prof_nested;                                                         \
        (s)->prof_nested = saved_ + el_;                                                           \
    } while (0)

/* Push one record into node i and everything after it. */
int weir__push(weir__stage *s, unsigned i, const void *rec)
{
    const bool prof = s->p->cfg.profile;
    for (; i < s->nnodes; i++) {
        weir__node *n = &s->nodes[i];
        int r;
        /* No per-record counting here: a node's input count is the previous
         * node's output count, and a map's output count is its input count
         * (weir__derive_counts), so a chain of maps counts nothing per record. */
        switch (n->kind) {
        case WEIR__K_FUNCTION:
            if (WEIR_UNLIKELY(prof))
                WEIR__PROFILED(s, n, r = n->fn.function(n->state, rec, &n->emit));
            else
                r = n->fn.function(n->state, rec, &n->emit);
            if (WEIR_UNLIKELY(r < 0))
                weir__note_err(s, i, r);
            return r;
        case WEIR__K_MAP:
            if (WEIR_UNLIKELY(prof))
                WEIR__PROFILED(s, n, n->fn.map(n->state, rec, n->tmp));
            else
                n->fn.map(n->state, rec, n->tmp);
            rec = n->tmp;
            if (WEIR_UNLIKELY(n->out_var) && weir__var_too_big(s, i, rec) < 0)
                return -EMSGSIZE;
            break;
        case WEIR__K_FILTER:
            if (n->fn.pred) {
                bool keep;
                if (WEIR_UNLIKELY(prof))
                    WEIR__PROFILED(s, n, keep = n->fn.pred(n->state, rec));
                else
                    keep = n->fn.pred(n->state, rec);
                if (!keep)
                    return 0;
            }
            n->out++;
            break;
        case WEIR__K_SINK:
            if (WEIR_UNLIKELY(prof))
                WEIR__PROFILED(s, n, r = n->fn.sink(n->state, rec));
            else
                r = n->fn.sink(n->state, rec);
            if (WEIR_UNLIKELY(r < 0))
                weir__note_err(s, i, r);
            return r;
        case WEIR__K_BATCH_SINK:
            if (n->nbuf == 0 &&
                !(n->tmp = weir__scratch_sink((size_t)s->p->cfg.batch * n->term->in_size))) {
                /* Without a message the error would read "callback
                 * returned -12", blaming a callback that never ran. */
                if (s->err == 0 && !s->err_msg)
                    s->err_msg = weir_strdup("out of memory for the batch sink's buffer");
                weir__note_err(s, i, -ENOMEM);
                return -ENOMEM;
            }
            memcpy((char *)n->tmp + n->nbuf * n->term->in_size, rec, n->term->in_size);
            if (WEIR_UNLIKELY(n->term->in_var) &&
                weir__scratch_sink_bytes(n, (weir_bytes *)n->tmp + n->nbuf) < 0) {
                if (s->err == 0 && !s->err_msg)
                    s->err_msg = weir_strdup("out of memory for the batch sink's buffer");
                weir__note_err(s, i, -ENOMEM);
                return -ENOMEM;
            }
            if (++n->nbuf == s->p->cfg.batch)
                return weir__flush_batch(s, n);
            return 0;
        default:
            /* Heads other than stream inputs never receive records here. */
            return 0;
        }
    }
    return weir__out_write(s, rec);
}

void weir__stage_flush_sinks(weir__stage *s)
{
    weir__node *last = &s->nodes[s->nnodes - 1];
    if (last->kind == WEIR__K_BATCH_SINK && last->nbuf && !s->err)
        weir__flush_batch(s, last);
}

static int weir__flush_batch(weir__stage *s, weir__node *n)
{
    if (n->nbuf == 0)
        return 0;
    size_t k = n->nbuf;
    n->nbuf = 0;
    if (WEIR_UNLIKELY(n->term->in_var)) {
        /* the bytes sit in this thread's scratch: offsets become pointers */
        weir__scratch *sc = weir__scratch_self();
        weir_bytes *d = n->tmp;
        for (size_t j = 0; j < k; j++)
            d[j].data = sc->sinkb + (uintptr_t)d[j].data;
        n->nbytes = 0;
    }
    int r;
    if (WEIR_UNLIKELY(s->p->cfg.profile))
        WEIR__PROFILED(s, n, r = n->fn.batch_sink(n->state, n->tmp, k));
    else
        r = n->fn.batch_sink(n->state, n->tmp, k);
    if (r < 0)
        weir__note_err(s, n->idx, r);
    return r;
}

/* The emit of a node inside a stage: count, then push into the next node. */
/* A variable-size record longer than any stream of the pipeline can hold
 * fails where it is made, fused or not, so every mode agrees (a stream
 * between the terms, in threads mode, would refuse it). */
static int weir__var_too_big(weir__stage *s, unsigned node, const void *rec)
{
    size_t len = ((const weir_bytes *)rec)->len;
    return WEIR_LIKELY(len <= s->p->byte_cap) ? 0 : weir__msgsize(s, node, len);
}

static int weir__node_emit(weir_emit *e, const void *rec)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    if (WEIR_UNLIKELY(s->err))
        return s->err;
    if (WEIR_UNLIKELY(n->out_var)) {
        n->resv = NULL; /* an emit ends a reservation (weir_emit_reserve) */
        if (weir__var_too_big(s, n->idx, rec) < 0)
            return -EMSGSIZE;
    }
    if (n->kind == WEIR__K_MAP)
        n->extra++; /* a map emitting from its finish callback */
    else
        n->out++;
    return weir__push(s, n->idx + 1, rec);
}

/* ------------------------------------------------------------ batch path */

/*
 * A run of maps and filters is applied a batch at a time: map 1 over the
 * whole batch, then map 2, ... (a filter compacts the pointer array), then
 * the sink or the output gets the survivors in order. This costs one
 * indirect call per record and term, as a hand-written loop would, instead
 * of a dispatch per record and term. Maps and filters cannot fail and see
 * only their own state, so the order of calls across terms is not
 * observable; function terms (which emit) and multi-term side effects keep
 * the depth-first per-record path.
 *
 * The intermediate records live in per-thread scratch buffers (two, used
 * in turn, so a map never overwrites its own input), not per stage: memory
 * does not grow with the number of stages (a 10 000-branch fan-out).
 */
/* Run nodes [vec_from, nnodes) over `n` records: contiguous at `base`
 * (`stride` bytes apart), or, with base NULL, pointed to by sc->ptrs. Until
 * a filter drops records the batch stays contiguous and no pointer array is
 * touched. The caller made sure the output (if any) has room for n records. */
/*
 * Cancellation is checked between records (a relaxed load, see
 * weir__cancelled()): a cancel or a failure elsewhere stops a batch of slow
 * callbacks after the current one; what is left of the batch is dropped, as
 * cancel drops everything in flight. The check is one load and a branch per
 * record and term, which is a third of what the batch path itself executes
 * around cheap callbacks, so it is compiled twice: stages whose records cost
 * less than WEIR__CHECK_NS each on average over their last activation (a
 * whole batch then takes at most B x WEIR__CHECK_NS, 51 us at B = 256) run
 * the copy without it (weir__stage.check_cancel, set in weir__stage_run()).
 */
static inline __attribute__((always_inline)) void
weir__push_batch_impl(weir__stage *s, weir__scratch *sc, const char *base, size_t stride, size_t n,
                      const bool check)
{
    const void **ptr = sc->ptrs;
    int flip = 0;
    unsigned i = s->vec_from;
    const _Atomic bool *cx = &s->p->cancelled;
#define WEIR__CX() (check && WEIR_UNLIKELY(atomic_load_explicit(cx, memory_order_relaxed)))
    for (; i < s->nnodes && n; i++) {
        weir__node *nd = &s->nodes[i];
        if (nd->kind == WEIR__K_MAP) {
            const size_t osz = nd->term->out_size;
            char *out = sc->buf[flip];
            flip ^= 1;
            weir_map_fn fn = nd->fn.map;
            void *st = nd->state;
            if (base) {
                const char *in = base;
                char *o = out;
                for (size_t k = 0; k < n; k++, in += stride, o += osz) {
                    if (WEIR__CX())
                        return;
                    fn(st, in, o);
                }
                base = out;
                stride = osz;
            } else {
                for (size_t k = 0; k < n; k++) {
                    if (WEIR__CX())
                        return;
                    fn(st, ptr[k], out + k * osz);
                    ptr[k] = out + k * osz;
                }
            }
        } else if (nd->kind == WEIR__K_FILTER) {
            if (nd->fn.pred) {
                weir_pred_fn pred = nd->fn.pred;
                void *st = nd->state;
                size_t m = 0;
                if (base) {
                    for (size_t k = 0; k < n; k++) {
                        if (WEIR__CX())
                            return;
                        if (pred(st, base + k * stride))
                            ptr[m++] = base + k * stride;
                    }
                    base = NULL;
                } else {
                    for (size_t k = 0; k < n; k++) {
                        if (WEIR__CX())
                            return;
                        if (pred(st, ptr[k]))
                            ptr[m++] = ptr[k];
                    }
                }
                n = m;
            }
            nd->out += n;
        } else {
            break; /* the sink */
        }
    }
    if (i < s->nnodes) {
        weir__node *nd = &s->nodes[i];
        if (nd->kind == WEIR__K_SINK) {
            weir_sink_fn fn = nd->fn.sink;
            void *st = nd->state;
            /* two loops rather than a choice per record */
            if (base) {
                const char *in = base;
                for (size_t k = 0; k < n; k++, in += stride) {
                    if (WEIR__CX())
                        return;
                    int r = fn(st, in);
                    if (WEIR_UNLIKELY(r < 0)) {
                        weir__note_err(s, i, r);
                        return;
                    }
                }
            } else {
                for (size_t k = 0; k < n; k++) {
                    if (WEIR__CX())
                        return;
                    int r = fn(st, ptr[k]);
                    if (WEIR_UNLIKELY(r < 0)) {
                        weir__note_err(s, i, r);
                        return;
                    }
                }
            }
        } else {
            for (size_t k = 0; k < n && !s->err && !WEIR__CX(); k++)
                weir__push(s, i, base ? base + k * stride : ptr[k]); /* batch sink: its buffer */
        }
    } else if (s->out) {
        for (size_t k = 0; k < n; k++)
            weir__out_write(s, base ? base + k * stride : ptr[k]);
#undef WEIR__CX
    } else if (s->collect) {
        /* a replica: the caller reserved room for n records */
        const size_t osz = s->nodes[s->nnodes - 1].term->out_size;
        if (WEIR_UNLIKELY(s->nodes[s->nnodes - 1].term->out_var)) {
            /* the bytes are copied (they are the input stream's) */
            for (size_t k = 0; k < n && !s->err; k++)
                weir__collect(s, base ? base + k * stride : ptr[k], osz);
            return;
        }
        char *o = s->coll + s->coll_n * osz;
        if (base && stride == osz)
            memcpy(o, base, n * osz);
        else
            for (size_t k = 0; k < n; k++)
                memcpy(o + k * osz, base ? base + k * stride : ptr[k], osz);
        s->coll_n += n;
    }
}

static void weir__push_batch(weir__stage *s, weir__scratch *sc, const char *base, size_t stride,
                             size_t n);

size_t weir__push_run(weir__stage *s, unsigned i, const char *base, size_t stride, size_t n)
{
    weir__stream *o = s->out;
    if (i == s->nnodes) {
        /* nothing after: straight into the output ring (the records are the
         * last node's, so stride is the stream's record size); after what
         * a finish callback spilled, never before it */
        if (!o)
            return n; /* nobody reads it: dropped */
        return s->spill_n ? 0 : weir__out_copy(s, base, stride, n);
    }
    weir__scratch *sc;
    if (s->vec && s->vec_from == i) {
        /* maps and filters: never more outputs than inputs */
        if (o) {
            if (!weir__out_ready(s))
                return 0;
            if (n > weir__stream_wfree(o))
                n = (size_t)weir__stream_wfree(o);
        }
        if ((sc = weir__scratch_get(n, s->vec_size)) != NULL) {
            weir__push_batch(s, sc, base, stride, n);
            return n;
        }
    }
    size_t k = 0;
    while (k < n) {
        if (o && !weir__out_ready(s))
            break;
        weir__push(s, i, base + k * stride);
        k++;
        if (WEIR_UNLIKELY(s->err))
            break;
    }
    return k;
}

static void weir__push_batch(weir__stage *s, weir__scratch *sc, const char *base, size_t stride,
                             size_t n)
{
    if (s->check_cancel)
        weir__push_batch_impl(s, sc, base, stride, n, true);
    else
        weir__push_batch_impl(s, sc, base, stride, n, false);
}

/*
 * Run records [pos, pos + n) of stream `st`, read in place, through all
 * the nodes of `s` (a replica's shadow stage, parallel.c), a batch at a
 * time when they are maps and filters, else record by record with a
 * cancellation check between records. @return false on an error (s->err).
 */
bool weir__run_records(weir__stage *s, const weir__stream *st, uint64_t pos, size_t n)
{
    weir__scratch *sc;
    s->nodes[0].in += n;
    if (s->vec && (sc = weir__scratch_get(n, s->vec_size)) != NULL) {
        const size_t osz = s->nodes[s->nnodes - 1].term->out_size;
        if (s->coll_cap - s->coll_n < n) {
            size_t cap = s->coll_n + n;
            char *nb = weir_realloc(s->coll, cap * osz);
            if (!nb) {
                if (!s->err_msg)
                    s->err_msg = weir_strdup("out of memory in a replica's output buffer");
                weir__note_err(s, s->nnodes - 1, -ENOMEM);
                return false;
            }
            s->coll = nb;
            s->coll_cap = cap;
        }
        if (n <= weir__stream_run(st, pos)) {
            weir__push_batch(s, sc, weir__stream_slot(st, pos), st->size, n);
        } else {
            for (size_t k = 0; k < n; k++)
                sc->ptrs[k] = weir__stream_slot(st, pos + k);
            weir__push_batch(s, sc, NULL, 0, n);
        }
        return true;
    }
    for (size_t k = 0; k < n; k++) {
        if (WEIR_UNLIKELY(weir__cancelled(s->p)))
            break;
        weir__push(s, 0, weir__stream_slot(st, pos + k));
        if (WEIR_UNLIKELY(s->err))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ heads */

static int weir__pull_call(weir__stage *s, weir__node *n, void *buf, size_t max, bool *end)
{
    int r;
    if (WEIR_UNLIKELY(s->p->cfg.profile))
        WEIR__PROFILED(s, n, r = n->fn.pull(n->state, buf, max, end));
    else
        r = n->fn.pull(n->state, buf, max, end);
    if (r < 0) {
        weir__note_err(s, 0, r);
    } else if ((size_t)r > max) {
        weir__note_err(s, 0, -EOVERFLOW);
        char msg[96];
        snprintf(msg, sizeof msg, "pull callback returned %d records, more than max %zu", r, max);
        weir_free(s->err_msg);
        s->err_msg = weir_strdup(msg);
        r = -EOVERFLOW;
    }
    return r;
}

static int weir__step_pull(weir__stage *s)
{
    weir__node *n0 = &s->nodes[0];
    const size_t B = s->p->cfg.batch;
    bool end = false;
    int r;
    if (weir__stopping(s->p))
        return STEP_ENDED;
    if (s->nnodes == 1 && s->out && !s->out->var) {
        /* Nothing fused after the source: let it write into the ring. */
        weir__stream *o = s->out;
        if (!weir__out_ready(s))
            return STEP_WAIT;
        size_t max = weir__stream_wspan(o);
        if (max > B)
            max = B;
        r = weir__pull_call(s, n0, weir__stream_wptr(o), max, &end);
        if (r < 0)
            return STEP_ERROR;
        if (r == 0 && !end && n0->wake_at)
            return STEP_WAIT; /* weir_source_wake_at(): the timer calls again */
        weir__stream_wcommit(o, (size_t)r);
        n0->out += (uint64_t)r;
    } else {
        size_t max = B;
        if (s->out) {
            if (!weir__out_ready(s))
                return STEP_WAIT;
            if (max > weir__stream_wfree(s->out))
                max = (size_t)weir__stream_wfree(s->out);
        }
        r = weir__pull_call(s, n0, s->buf, max, &end);
        if (r < 0)
            return STEP_ERROR;
        if (r == 0 && !end && n0->wake_at)
            return STEP_WAIT; /* weir_source_wake_at(): the timer calls again */
        n0->out += (uint64_t)r;
        const size_t size = n0->term->out_size;
        weir__scratch *sc;
        if (WEIR_UNLIKELY(n0->term->out_var))
            for (int k = 0; k < r; k++)
                if (weir__var_too_big(s, 0, (const char *)s->buf + (size_t)k * size) < 0)
                    return STEP_ERROR;
        if (s->vec && r > 0 && (sc = weir__scratch_get((size_t)r, s->vec_size)) != NULL) {
            weir__push_batch(s, sc, s->buf, size, (size_t)r);
            return s->err ? STEP_ERROR : end ? STEP_ENDED : STEP_PROGRESS;
        }
        for (int k = 0; k < r; k++) {
            if (WEIR_UNLIKELY(weir__cancelled(s->p)))
                break; /* between records: see weir__push_batch() */
            weir__push(s, 1, (const char *)s->buf + (size_t)k * size);
            if (WEIR_UNLIKELY(s->err))
                return STEP_ERROR;
        }
    }
    return end ? STEP_ENDED : STEP_PROGRESS;
}

static int weir__step_input(weir__stage *s, weir_worker *w)
{
    weir__input *in = &s->inputs[0];
    weir__stream *st = in->stream;
    weir__node *n0 = &s->nodes[0];
    const uint64_t B = s->p->cfg.batch;
    bool at_end;
    uint64_t avail = weir__stream_avail(st, in->tail, &at_end);
    /* checkpoint barriers (barrier.c): read after head and ended, so one
     * after the last record is seen before the end */
    uint64_t bn = weir__bar_next(in);
    while (WEIR_UNLIKELY(bn == in->tail)) {
        int r = weir__bar_input(s, 0, w);
        if (r != STEP_PROGRESS)
            return r;
        bn = weir__bar_next(in);
    }
    if (at_end)
        return STEP_ENDED;
    uint64_t n = avail < B ? avail : B;
    if (WEIR_UNLIKELY(bn - in->tail < n))
        n = bn - in->tail; /* up to the next barrier */
    uint64_t done = 0;
    bool blocked = false;
    weir__scratch *sc;

    if (n0->kind == WEIR__K_BATCH_SINK && s->nnodes == 1) {
        /* A batch sink reading a stream gets the ring's contiguous runs
         * directly: no copy at all. */
        while (done < n) {
            uint64_t pos = in->tail + done;
            uint64_t k = weir__stream_run(st, pos);
            if (k > n - done)
                k = n - done;
            int r;
            if (WEIR_UNLIKELY(s->p->cfg.profile))
                WEIR__PROFILED(
                    s, n0, r = n0->fn.batch_sink(n0->state, weir__stream_slot(st, pos), (size_t)k));
            else
                r = n0->fn.batch_sink(n0->state, weir__stream_slot(st, pos), (size_t)k);
            done += k;
            if (r < 0) {
                weir__note_err(s, 0, r);
                break;
            }
        }
    } else if (s->vec && (!s->out || weir__out_ready(s)) &&
               (sc = weir__scratch_get((size_t)n, s->vec_size)) != NULL) {
        /* Maps and filters cannot produce more records than they get: with
         * n limited to the free space, the output never spills. */
        if (s->out && n > weir__stream_wfree(s->out))
            n = weir__stream_wfree(s->out);
        if (n <= weir__stream_run(st, in->tail)) {
            weir__push_batch(s, sc, weir__stream_slot(st, in->tail), st->size, (size_t)n);
        } else {
            for (uint64_t k = 0; k < n; k++)
                sc->ptrs[k] = weir__stream_slot(st, in->tail + k);
            weir__push_batch(s, sc, NULL, 0, (size_t)n);
        }
        done = n;
    } else {
        while (done < n) {
            if (s->out && !weir__out_ready(s)) {
                blocked = true;
                break;
            }
            if (WEIR_UNLIKELY(weir__cancelled(s->p)))
                break;
            weir__push(s, 0, weir__stream_slot(st, in->tail + done));
            done++;
            if (WEIR_UNLIKELY(s->err))
                break;
        }
    }
    if (done) {
        n0->in += done;
        in->tail += done;
        weir__stream_advance(st, in->cursor, in->tail, w);
    }
    if (s->err)
        return STEP_ERROR;
    if (blocked)
        return STEP_WAIT;
    if (done == B)
        return STEP_PROGRESS;
    avail = weir__stream_avail(st, in->tail, &at_end);
    if (WEIR_UNLIKELY(weir__bar_next(in) == in->tail))
        return STEP_PROGRESS; /* a barrier to pass */
    if (at_end)
        return STEP_ENDED;
    return avail ? STEP_PROGRESS : STEP_WAIT;
}

/*
 * A merge visits only the inputs in its pending set: those whose producer
 * published or ended since they were last found empty (the ready set, see
 * weir__ready in internal.h), in round-robin order from `rr`. An activation
 * costs O(pending inputs + inputs / 4096), not O(inputs): a merge of 100 000
 * branches woken once per branch would otherwise scan all of them each time.
 *
 * No lost input: a producer sets its bit after publishing and before it
 * notifies the merge. Either the activation's exchange takes the bit (and,
 * acquiring it, sees the records), or the bit is set after the exchange and
 * the notify that follows runs the merge again (or fails its CAS to IDLE).
 * An input leaves the pending set only when a read of its stream, made
 * after its bit was taken, found it empty or ended; one with records left
 * (budget spent, output full) stays pending.
 */

/* Move the producers' bits into the pending set. */
static void weir__ready_collect(weir__ready *rd)
{
    for (unsigned k = 0; k < rd->w0; k++) {
        /* relaxed probe: a bit set before the notify that led here is
         * visible (the notify's RMW on `state` orders it); a later one
         * comes with a notify of its own. */
        if (atomic_load_explicit(&rd->ready0[k], memory_order_relaxed) == 0)
            continue;
        /* acquire: pairs with the release fetch_or of weir__ready_mark() */
        uint64_t x = atomic_exchange_explicit(&rd->ready0[k], 0, memory_order_acquire);
        while (x) {
            unsigned j = k * 64 + (unsigned)__builtin_ctzll(x);
            x &= x - 1;
            /* acquire: as above, for the bits whose ready0 bit is not set
             * yet (their producer sets it next, and notifies again) */
            uint64_t y = atomic_exchange_explicit(&rd->ready1[j], 0, memory_order_acquire);
            if (y) {
                rd->pend1[j] |= y;
                rd->pend0[k] |= UINT64_C(1) << (j % 64);
            }
        }
    }
}

/* The first pending input in [from, to), or `to` when there is none. */
static unsigned weir__pending_next(const weir__ready *rd, unsigned from, unsigned to)
{
    if (from >= to)
        return to;
    unsigned j = from / 64;
    uint64_t x = rd->pend1[j] & (UINT64_MAX << (from % 64));
    if (!x) {
        /* the next non-empty pend1 word, through pend0 */
        unsigned k = (j + 1) / 64, b = (j + 1) % 64;
        uint64_t y = k < rd->w0 ? rd->pend0[k] & (b ? UINT64_MAX << b : UINT64_MAX) : 0;
        for (;;) {
            if (y) {
                j = k * 64 + (unsigned)__builtin_ctzll(y);
                break;
            }
            if (++k >= rd->w0 || (size_t)k * 4096 >= to)
                return to;
            y = rd->pend0[k];
        }
        x = rd->pend1[j];
    }
    unsigned i = j * 64 + (unsigned)__builtin_ctzll(x);
    return i < to ? i : to;
}

static inline void weir__pending_clear(weir__ready *rd, unsigned i)
{
    unsigned j = i / 64;
    rd->pend1[j] &= ~(UINT64_C(1) << (i % 64));
    if (!rd->pend1[j])
        rd->pend0[j / 64] &= ~(UINT64_C(1) << (j % 64));
}

static bool weir__pending_any(const weir__ready *rd)
{
    for (unsigned k = 0; k < rd->w0; k++)
        if (rd->pend0[k])
            return true;
    return false;
}

static int weir__step_merge(weir__stage *s, weir_worker *w)
{
    weir__node *n0 = &s->nodes[0];
    weir__ready *rd = &s->ready;
    const unsigned N = s->ninputs;
    uint64_t budget = s->p->cfg.batch;
    bool blocked = false;
    if (WEIR_UNLIKELY(s->bar_stalled)) {
        int r = weir__bar_retry(s);
        if (r != STEP_PROGRESS)
            return r;
    }
    weir__ready_collect(rd);
    /* one pass over the pending inputs: [rr, N), then [0, rr) */
    const unsigned start = s->rr < N ? s->rr : 0;
    unsigned last = start, i = weir__pending_next(rd, start, N);
    bool wrapped = false;
    for (;;) {
        if (i >= (wrapped ? start : N)) {
            if (wrapped)
                break;
            wrapped = true;
            i = weir__pending_next(rd, 0, start);
            continue;
        }
        if (!budget || blocked || s->err || WEIR_UNLIKELY(weir__cancelled(s->p)))
            break;
        weir__input *in = &s->inputs[i];
        last = i;
        bool at_end;
        uint64_t avail = weir__stream_avail(in->stream, in->tail, &at_end);
        uint64_t bn = weir__bar_next(in); /* after head and ended (barrier.c) */
        while (WEIR_UNLIKELY(bn == in->tail)) {
            int r = weir__bar_input(s, i, w);
            if (r == STEP_ERROR)
                return r;
            if (r == STEP_WAIT)
                break; /* bar_stalled: retried first next time */
            bn = weir__bar_next(in);
        }
        if (WEIR_UNLIKELY(bn == in->tail)) {
            blocked = true;
            break;
        }
        uint64_t take = avail < budget ? avail : budget;
        if (WEIR_UNLIKELY(bn - in->tail < take))
            take = bn - in->tail;
        uint64_t done = 0;
        while (done < take) {
            if (s->out && !weir__out_ready(s)) {
                blocked = true;
                break;
            }
            if (WEIR_UNLIKELY(weir__cancelled(s->p)))
                break;
            weir__push(s, 1, weir__stream_slot(in->stream, in->tail + done));
            done++;
            if (WEIR_UNLIKELY(s->err))
                break;
        }
        if (done) {
            n0->in += done;
            n0->out += done;
            in->tail += done;
            weir__stream_advance(in->stream, in->cursor, in->tail, w);
            budget -= done;
            if (done == avail) /* look again: ended, or more since? */
                avail = weir__stream_avail(in->stream, in->tail, &at_end);
            else
                avail -= done;
        }
        if (WEIR_UNLIKELY(weir__bar_next(in) == in->tail)) {
            /* a barrier to pass: stays pending */
        } else if (at_end || avail == 0) {
            /* empty or ended: its producer sets the bit again when that
             * changes (ended is for good) */
            if (at_end && !in->ended) {
                in->ended = true;
                rd->nended++;
                if (WEIR_UNLIKELY(s->bcnt) && weir__bar_input_ended(s, i, w) == STEP_ERROR)
                    return STEP_ERROR;
            }
            weir__pending_clear(rd, i);
        }
        i = weir__pending_next(rd, i + 1, wrapped ? start : N);
    }
    /* Start after the last input looked at next time, so that no input is
     * favoured when the budget runs out. */
    s->rr = last + 1 < N ? last + 1 : 0;
    if (s->err)
        return STEP_ERROR;
    if (rd->nended == N)
        return STEP_ENDED;
    if (blocked)
        return STEP_WAIT;
    return weir__pending_any(rd) ? STEP_PROGRESS : STEP_WAIT;
}

static int weir__step_zip(weir__stage *s, weir_worker *w)
{
    weir__node *n0 = &s->nodes[0];
    const uint64_t B = s->p->cfg.batch;
    uint64_t k = B;
    if (WEIR_UNLIKELY(s->bar_stalled)) {
        int r = weir__bar_retry(s);
        if (r != STEP_PROGRESS)
            return r;
    }
    for (unsigned i = 0; i < s->ninputs; i++) {
        bool at_end;
        weir__input *in = &s->inputs[i];
        uint64_t avail = weir__stream_avail(in->stream, in->tail, &at_end);
        uint64_t bn = weir__bar_next(in); /* after head and ended (barrier.c) */
        while (WEIR_UNLIKELY(bn == in->tail)) {
            int r = weir__bar_input(s, i, w);
            if (r != STEP_PROGRESS)
                return r;
            bn = weir__bar_next(in);
        }
        if (at_end)
            return STEP_ENDED; /* no complete tuple can follow */
        if (avail < k)
            k = avail;
        if (WEIR_UNLIKELY(bn - in->tail < k))
            k = bn - in->tail;
    }
    uint64_t done = 0;
    bool blocked = false;
    while (done < k) {
        if (s->out && !weir__out_ready(s)) {
            blocked = true;
            break;
        }
        if (WEIR_UNLIKELY(weir__cancelled(s->p)))
            break;
        for (unsigned i = 0; i < s->ninputs; i++)
            s->zip_in[i] = weir__stream_slot(s->inputs[i].stream, s->inputs[i].tail + done);
        n0->in += s->ninputs;
        if (n0->fn.zip) {
            int r;
            if (WEIR_UNLIKELY(s->p->cfg.profile))
                WEIR__PROFILED(s, n0, r = n0->fn.zip(n0->state, s->zip_in, s->ninputs, &n0->emit));
            else
                r = n0->fn.zip(n0->state, s->zip_in, s->ninputs, &n0->emit);
            if (r < 0)
                weir__note_err(s, 0, r);
        } else {
            char *o = n0->tmp;
            for (unsigned i = 0; i < s->ninputs; i++) {
                size_t sz = s->inputs[i].stream->size;
                memcpy(o, s->zip_in[i], sz);
                o += sz;
            }
            n0->out++;
            weir__push(s, 1, n0->tmp);
        }
        done++;
        if (WEIR_UNLIKELY(s->err))
            break;
    }
    if (done) {
        for (unsigned i = 0; i < s->ninputs; i++) {
            s->inputs[i].tail += done;
            weir__stream_advance(s->inputs[i].stream, s->inputs[i].cursor, s->inputs[i].tail, w);
        }
    }
    if (s->err)
        return STEP_ERROR;
    if (blocked)
        return STEP_WAIT;
    if (done == B)
        return STEP_PROGRESS;
    uint64_t min = UINT64_MAX;
    for (unsigned i = 0; i < s->ninputs; i++) {
        bool at_end;
        uint64_t avail = weir__stream_avail(s->inputs[i].stream, s->inputs[i].tail, &at_end);
        if (at_end)
            return STEP_ENDED;
        if (avail < min)
            min = avail;
    }
    return min ? STEP_PROGRESS : STEP_WAIT;
}

/* --------------------------------------------------------------- lifecycle */

/* The input ended: let every fused term finish (in chain order, so a term's
 * final records pass through the terms after it before they finish). */
void weir__stage_finish_chain(weir__stage *s)
{
    /* A keyed stage's shards finished already (weir__par_finish); its node 0
     * is shard 0's template, so only the serial tail is left. */
    if (!s->fin_started) {
        s->fin_started = true;
        s->fin_next = s->par && s->par->nshards ? s->par->end : 0;
    }
    for (; s->fin_next < s->nnodes && !s->err; s->fin_next++) {
        const unsigned i = s->fin_next;
        /* a delay before this term still holds records (what the finishes
         * before it emitted): this finish waits for them (time.c) */
        if (WEIR_UNLIKELY(s->has_wake) && weir__stage_wake_waits_before(s, i))
            return;
        weir__node *n = &s->nodes[i];
        if (n->kind == WEIR__K_BATCH_SINK)
            weir__flush_batch(s, n);
        if (s->err || !n->term->finish)
            continue;
        const bool sink = n->kind == WEIR__K_SINK || n->kind == WEIR__K_BATCH_SINK;
        int r;
        if (WEIR_UNLIKELY(s->p->cfg.profile))
            WEIR__PROFILED(s, n, r = n->term->finish(n->state, sink ? NULL : &n->emit));
        else
            r = n->term->finish(n->state, sink ? NULL : &n->emit);
        if (r < 0)
            weir__note_err(s, i, r);
        /* A batch sink at the end may have received final records. */
        weir__node *last = &s->nodes[s->nnodes - 1];
        if (!s->err && last->kind == WEIR__K_BATCH_SINK && last != n)
            weir__flush_batch(s, last);
    }
}

static void weir__fail(weir__stage *s, weir_worker *w)
{
    weir_term *t = s->nodes[s->err_node < s->nnodes ? s->err_node : 0].term;
    weir__pipeline_fail(s->p, t, s->err, s->err_msg, w);
}

/* Fill in the counts weir__push does not keep per record. */
void weir__derive_counts(weir__stage *s)
{
    for (unsigned i = 0; i < s->nnodes; i++) {
        weir__node *n = &s->nodes[i];
        if (i > 0)
            n->in = s->nodes[i - 1].out;
        if (n->kind == WEIR__K_MAP)
            n->out = n->in + n->extra;
    }
}

static void weir__flush_stats(weir__stage *s)
{
    weir__derive_counts(s);
    /* relaxed: monitoring counters with a single writer (this stage). */
    for (unsigned i = 0; i < s->nnodes; i++) {
        weir__node *n = &s->nodes[i];
        atomic_store_explicit(&n->st_in, n->in, memory_order_relaxed);
        atomic_store_explicit(&n->st_out, n->out, memory_order_relaxed);
        atomic_store_explicit(&n->st_ns, n->ns, memory_order_relaxed);
    }
    atomic_store_explicit(&s->st_activations, s->activations, memory_order_relaxed);
    atomic_store_explicit(&s->st_ns, s->ns, memory_order_relaxed);
    atomic_store_explicit(&s->st_starvations, s->starvations, memory_order_relaxed);
    atomic_store_explicit(&s->st_max_wait, s->max_wait, memory_order_relaxed);
}

/* Producer: input `slot` of merge `c` published or ended (see weir__ready
 * in internal.h). release on both: the records published (head, ended)
 * before the bit are visible to the activation whose acquire exchange takes
 * it, at either level; the merge is notified after this. */
static inline void weir__ready_mark(weir__stage *c, uint32_t slot)
{
    weir__ready *rd = &c->ready;
    unsigned j = slot / 64;
    atomic_fetch_or_explicit(&rd->ready1[j], UINT64_C(1) << (slot % 64), memory_order_release);
    atomic_fetch_or_explicit(&rd->ready0[j / 64], UINT64_C(1) << (j % 64), memory_order_release);
}

void weir__notify_consumers(weir__stage *s, weir_worker *w)
{
    weir__stream *o = s->out;
    for (unsigned i = 0; i < o->ncons; i++) {
        /* before the notify: its acq_rel RMW (or mutex) hands the bit over
         * with everything else this producer did */
        if (o->slots[i] != WEIR__NOBODY)
            weir__ready_mark(o->consumers[i], o->slots[i]);
        weir__stage_notify(o->consumers[i], w);
    }
}

/* End the output, let go of the inputs, and leave the pipeline. The last
 * access to the stage and the pipeline is weir__pipeline_stage_done(). */
static void weir__end(weir__stage *s, weir_worker *w)
{
    if (WEIR_UNLIKELY(s->has_wake))
        weir__wake_stop(s);
    if (s->out) {
        weir__stream_end(s->out);
        weir__notify_consumers(s, w);
    }
    for (unsigned i = 0; i < s->ninputs; i++)
        weir__stream_detach(s->inputs[i].stream, s->inputs[i].cursor, w);
    s->nodes[s->nnodes - 1].nbuf = 0; /* a cancelled batch sink's records are dropped */
    s->nodes[s->nnodes - 1].nbytes = 0;
    weir_free(s->spill);
    s->spill = NULL;
    s->spill_n = s->spill_head = s->spill_len = s->spill_cap = 0;
    weir__flush_stats(s);
    /* release: a notifier that sees DONE does not submit us; pairs with the
     * acq_rel fetch_or in weir__stage_notify(). */
    atomic_fetch_or_explicit(&s->state, WEIR__ST_DONE, memory_order_release);
    /* before `live` drops: once it is 0 the pipeline may be destroyed */
    weir__stage_unbusy(s, w);
    weir__pipeline_stage_done(s->p);
}

void weir__stage_abandon(weir__stage *s)
{
    weir__end(s, NULL);
}

static int weir__step(weir__stage *s, weir_worker *w)
{
    if (weir__cancelled(s->p))
        return WEIR_UNLIKELY(s->par != NULL) ? weir__par_step(s, w, true) : STEP_ENDED;
    if (s->spill_n && !weir__spill_drain(s))
        return STEP_WAIT;
    if (WEIR_UNLIKELY(s->has_wake)) {
        /* ticks that are due (time.c), also after the finish: a delay
         * still releases what the finish callbacks emitted into it */
        if (weir__run_ticks(s) == WEIR__TICK_END)
            s->tick_end = true;
        if (s->err)
            return STEP_ERROR;
        if (s->tick_end)
            return STEP_ENDED;
    }
    if (s->input_done)
        return STEP_ENDED;
    switch (s->head) {
    case WEIR__H_PULL:
        return weir__step_pull(s);
    case WEIR__H_INPUT:
        if (s->par)
            return weir__par_step(s, w, false);
        return weir__step_input(s, w);
    case WEIR__H_MERGE:
        return weir__step_merge(s, w);
    case WEIR__H_ZIP:
        return weir__step_zip(s, w);
    case WEIR__H_BLOCKING:
        break;
    }
    return STEP_ENDED;
}

weir__run weir__stage_run(weir__stage *s, weir_worker *w)
{
    weir_pipeline *p = s->p;
    const bool timing = p->cfg.timing;
    uint64_t t0 = 0;
    weir__current_stage = s;
    if (timing) {
        t0 = weir__terms_now_ns();
        /* relaxed: written before the submit that led here (the runtime's
         * submit/run hand-off orders it). */
        uint64_t q = atomic_load_explicit(&s->queued_at, memory_order_relaxed);
        if (q && t0 > q) {
            uint64_t waited = t0 - q;
            if (waited > s->max_wait)
                s->max_wait = waited;
            if (p->cfg.starvation_ns && waited > p->cfg.starvation_ns) {
                s->starvations++;
                /* relaxed: a statistics counter. */
                atomic_fetch_add_explicit(&p->starvations, 1, memory_order_relaxed);
                if (p->cfg.on_starvation)
                    p->cfg.on_starvation(p->cfg.starvation_arg, s->nodes[0].term->name, waited);
            }
        }
        atomic_store_explicit(&s->queued_at, 0, memory_order_relaxed);
    }
    s->activations++;
    const uint64_t recs0 = s->nodes[0].in + s->nodes[0].out;

    int step = weir__step(s, w);
    if (step == STEP_ENDED && WEIR_UNLIKELY(s->has_wake) && !s->input_done && !s->tick_end &&
        !weir__cancelled(p) && !weir__stopping(p) && weir__stage_wake_waits(s)) {
        step = STEP_WAIT; /* the input ended: a delay's ticks first, then the finish */
    } else if (step == STEP_ENDED && !s->input_done && !weir__cancelled(p)) {
        if (WEIR_UNLIKELY(s->has_wake)) {
            if (weir__stopping(p))
                weir__run_ticks(s); /* a stop: every pending tick at once (time.c) */
            /* the other ticks are not waited for: the finish is the end */
            for (unsigned i = 0; i < s->nnodes; i++)
                if (!s->nodes[i].term->tick_waits)
                    s->nodes[i].wake_at = 0;
        }
        s->input_done = true;
        weir__stage_finish_chain(s);
        if (s->err)
            step = STEP_ERROR;
        else if (s->spill_n)
            step = STEP_WAIT; /* final records still to drain */
    }
    if (step == STEP_ENDED && s->input_done && WEIR_UNLIKELY(s->has_wake) && !s->err &&
        !weir__cancelled(p)) {
        /* what the finish callbacks emitted into a delay: wait for it (a
         * stop releases it now), then the finishes after it */
        if (weir__stopping(p))
            weir__run_ticks(s);
        if (!s->err && s->fin_next < s->nnodes)
            weir__stage_finish_chain(s);
        if (s->err)
            step = STEP_ERROR;
        else if (s->spill_n || weir__stage_wake_waits(s) || s->fin_next < s->nnodes)
            step = STEP_WAIT;
    } else if (step != STEP_ERROR && !s->err) {
        /* Records buffered for a batch sink go out at the end of every
         * activation, not only when the buffer is full. */
        weir__node *last = &s->nodes[s->nnodes - 1];
        if (last->kind == WEIR__K_BATCH_SINK && last->nbuf)
            weir__flush_batch(s, last);
        if (s->err)
            step = STEP_ERROR;
    }
    if (step == STEP_ERROR || s->err) {
        /* (s->err without STEP_ERROR: a callback swallowed a downstream
         * error, returning 0 anyway.) */
        weir__fail(s, w);
        step = STEP_ENDED;
        if (s->par) {
            /* The failure cancelled the pipeline; replicas still in flight
             * finish early and notify us: end only once none runs. */
            s->err = 0;
            if (weir__par_running(s))
                step = STEP_WAIT;
        }
    }

    if (timing) {
        uint64_t t1 = weir__terms_now_ns();
        s->ns += t1 - t0;
        s->last_now = t1;
        /* cheap records: the batch path may skip the per-record cancel
         * check (see weir__push_batch_impl()) */
        uint64_t recs = s->nodes[0].in + s->nodes[0].out - recs0;
        if (recs >= 16)
            s->check_cancel = t1 - t0 > recs * WEIR__CHECK_NS;
    }
    if (step == STEP_ENDED) {
        s->input_done = true;
        weir__current_stage = NULL;
        if (s->par)
            weir__par_shutdown(s);
        weir__end(s, w);
        return WEIR__FINISHED;
    }
    if (s->out && (weir__stream_publish(s->out) || WEIR_UNLIKELY(s->bar_pushed))) {
        s->bar_pushed = false;
        weir__notify_consumers(s, w);
    }
    if (WEIR_UNLIKELY(s->has_wake) && step == STEP_WAIT) {
        uint64_t d = weir__stage_wake(s);
        int r = d ? weir__wake_arm(s, d) : 0;
        if (r < 0)
            weir__pipeline_fail(p, s->nodes[0].term, r, "cannot arm the stage's wake-up timer", w);
    }
    /* Readers see counters at most 64 activations (or one wait) old; at
     * batch size 1 the flush would otherwise cost more than the record. */
    if (step != STEP_PROGRESS || (s->activations & 63) == 0)
        weir__flush_stats(s);
    weir__current_stage = NULL;
    return step == STEP_PROGRESS ? WEIR__PROGRESS : WEIR__WAIT;
}

/* ---------------------------------------------------------- blocking source */

/* A blocking source writes its stream itself, waiting (on its own thread)
 * while the stream is full. Stop and cancel end a wait with -ECANCELED,
 * except that `mid_batch` (part of a weir_emit_records() batch is already
 * published) lets a stop through: the consumers still drain, so room comes,
 * and -ECANCELED tells the source that its records were not emitted: a
 * batch is all or nothing under a stop. */
static int weir__blocking_check(weir__stage *s, bool mid_batch)
{
    if ((!mid_batch && weir__stopping(s->p)) || weir__cancelled(s->p))
        return -ECANCELED;
    return s->err;
}

/* Publish each write: a blocking source may wait a long time for the next
 * record, and its consumers must not wait with it. */
static void weir__blocking_published(weir__stage *s, weir__node *n)
{
    if (weir__stream_publish(s->out))
        weir__notify_consumers(s, NULL);
    atomic_store_explicit(&n->st_out, n->out, memory_order_relaxed);
}

/* Write `count` records (`stride` apart) through the stream's write side,
 * waiting for room. */
static int weir__blocking_write(weir__stage *s, weir__node *n, const char *src, size_t stride,
                                size_t count)
{
    weir__stream *o = s->out;
    size_t done = 0;
    while (done < count) {
        int r = weir__blocking_check(s, done > 0);
        if (r < 0)
            return r;
        int err = 0;
        size_t k =
            weir__stream_write(o, src + done * stride, stride, count - done, weir__want(s), &err);
        if (k) {
            n->out += k;
            done += k;
            weir__blocking_published(s, n);
        }
        if (err < 0)
            return weir__out_msgsize(
                s, ((const weir_bytes *)(const void *)(src + done * stride))->len);
        if (done < count && k == 0)
            weir__exec_thread_wait(s);
    }
    return 0;
}

static int weir__blocking_emit(weir_emit *e, const void *rec)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    if (s->err)
        return s->err;
    n->resv = NULL; /* an emit ends a reservation */
    if (!s->out) {
        if (weir__stopping(s->p) || weir__cancelled(s->p))
            return -ECANCELED;
        n->out++;
        return 0;
    }
    return weir__blocking_write(s, n, rec, s->out->size, 1);
}

WEIR_API int weir_emit_records(weir_emit *e, const void *recs, size_t count)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    const char *src = recs;
    if (s->head == WEIR__H_BLOCKING && n->idx == 0 && s->out) {
        if (s->err)
            return s->err;
        n->resv = NULL;
        return weir__blocking_write(s, n, src, s->out->size, count);
    }
    size_t size = n->term->out_size ? n->term->out_size : 1;
    for (size_t i = 0; i < count; i++) {
        int r = weir_emit_record(e, src + i * size);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------ reserve/commit */

static int weir__emit_misuse(weir__node *n, int err, const char *what)
{
    weir__stage *s = n->stage;
    if (s->err == 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", what);
        weir_free(s->err_msg);
        s->err_msg = weir_strdup(msg);
    }
    weir__note_err(s, n->idx, err);
    return err;
}

WEIR_API int weir_emit_reserve(weir_emit *e, size_t max, void **buf)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    if (!buf)
        return weir__emit_misuse(n, -EINVAL, "weir_emit_reserve: buf is NULL");
    *buf = NULL;
    n->resv = NULL;
    if (!n->term->out_var)
        return weir__emit_misuse(n, -EINVAL,
                                 "weir_emit_reserve: the term's output is not variable-size "
                                 "(WEIR_VARSIZE); emit fixed records with weir_emit_record()");
    if (s->err)
        return s->err;
    const bool last = n->idx + 1 == s->nnodes;
    weir__stream *o = last ? s->out : NULL;
    if (o && max > o->bcap)
        return weir__msgsize(s, n->idx, max);
    if (o && s->head == WEIR__H_BLOCKING) {
        /* the source's own thread: wait for room in the byte ring */
        for (;;) {
            int r = weir__blocking_check(s, false);
            if (r < 0)
                return r;
            int err = 0;
            void *at = weir__stream_breserve(o, max, weir__want(s), &err);
            if (at) {
                n->resv = at;
                n->resv_max = max;
                n->resv_ring = true;
                *buf = at;
                return 0;
            }
            weir__exec_thread_wait(s);
        }
    }
    if (o && s->spill_n == 0) {
        int err = 0;
        void *at = weir__stream_breserve(o, max, weir__want(s), &err);
        if (at) {
            n->resv = at;
            n->resv_max = max;
            n->resv_ring = true;
            *buf = at;
            return 0;
        }
    }
    /* fused after this term, or no room: a buffer of the term's, pushed on
     * at commit like an emitted record */
    if (n->rcap < max || !n->rbuf) {
        size_t cap = max > 64 ? max : 64;
        char *nb = weir_realloc(n->rbuf, cap);
        if (!nb)
            return weir__emit_misuse(n, -ENOMEM, "weir_emit_reserve: out of memory");
        n->rbuf = nb;
        n->rcap = cap;
    }
    n->resv = n->rbuf;
    n->resv_max = max;
    n->resv_ring = false;
    *buf = n->rbuf;
    return 0;
}

WEIR_API int weir_emit_commit(weir_emit *e, size_t len)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    if (!n->resv)
        return weir__emit_misuse(n, -EINVAL,
                                 "weir_emit_commit without a reservation (weir_emit_reserve; "
                                 "an emit in between ends it)");
    if (len > n->resv_max)
        return weir__emit_misuse(n, -EINVAL, "weir_emit_commit: length above the reserved size");
    char *at = n->resv;
    n->resv = NULL;
    if (s->err)
        return s->err;
    if (!n->resv_ring) {
        weir_bytes b = {at, len};
        return e->weir__push(e, &b);
    }
    weir__stream_bcommit(s->out, at, len);
    n->out++;
    if (s->head == WEIR__H_BLOCKING)
        weir__blocking_published(s, n);
    return 0;
}

size_t weir__emit_max_bytes(const weir_emit *e)
{
    const weir__node *n = (const weir__node *)(const void *)e;
    const weir__stage *s = n->stage;
    if (n->idx + 1 == s->nnodes && s->out && s->out->var)
        return (size_t)s->out->bcap;
    return (size_t)WEIR_MAX_BYTE_CAPACITY;
}

WEIR_API bool weir_emit_stopping(const weir_emit *e)
{
    const weir__node *n = (const weir__node *)(const void *)e;
    return weir__stopping(n->stage->p) || weir__cancelled(n->stage->p);
}

WEIR_API int weir_emit_fail(weir_emit *e, int err, const char *fmt, ...)
{
    weir__node *n = (weir__node *)(void *)e;
    weir__stage *s = n->stage;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (err < 0) {
        char eb[128];
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof msg - len, ": %s", weir__errtext(err, eb, sizeof eb));
    }
    if (s->err == 0) {
        weir_free(s->err_msg);
        s->err_msg = weir_strdup(msg);
        s->err = err < 0 ? err : -EINVAL;
        s->err_node = n->idx;
    }
    return err;
}

void weir__stage_run_blocking(weir__stage *s)
{
    weir_pipeline *p = s->p;
    weir__node *n0 = &s->nodes[0];
    weir__current_stage = s;
    uint64_t t0 = p->cfg.timing ? weir__terms_now_ns() : 0;
    s->activations = 1;
    int r = 0;
    if (!weir__cancelled(p) && !weir__stopping(p)) {
        if (WEIR_UNLIKELY(p->cfg.profile))
            WEIR__PROFILED(s, n0, r = n0->fn.blocking(n0->state, &n0->emit));
        else
            r = n0->fn.blocking(n0->state, &n0->emit);
    }
    /* -ECANCELED after a stop or cancel is the expected way out. */
    if (r < 0 && !(r == -ECANCELED && (weir__stopping(p) || weir__cancelled(p))))
        weir__note_err(s, 0, r);
    if (s->err)
        weir__fail(s, NULL);
    if (p->cfg.timing)
        s->ns += weir__terms_now_ns() - t0;
    s->input_done = true;
    weir__current_stage = NULL;
    weir__end(s, NULL);
}

void weir__stage_bind_emits(weir__stage *s)
{
    for (unsigned i = 0; i < s->nnodes; i++)
        s->nodes[i].emit.weir__push = weir__node_emit;
    if (s->head == WEIR__H_BLOCKING)
        s->nodes[0].emit.weir__push = weir__blocking_emit;
}
