/*
 * weir terms — private declarations shared by the files of terms/.
 * Never installed. The term layer uses the runtime only through include/.
 *
 * Vocabulary:
 *   term    what the user builds (weir_term): primitives and composites.
 *   stage   what runs: a head (a source, a stream input, a merge or a zip)
 *           followed by a fused chain of 1-in/1-out terms, writing at most
 *           one output stream. One activation of a stage at a time.
 *   stream  a bounded ring of fixed-size records, one producer stage, any
 *           number of consumer cursors (weir__stream, stream.c).
 *   node    one primitive term inside a stage's chain (node 0 is the head).
 */
#ifndef WEIR_TERMS_INTERNAL_H
#define WEIR_TERMS_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "weir.h"

/* ------------------------------------------------------------------ errors */

/* Format a message into this thread's term-layer error buffer (read by
 * weir_terms_last_error()) and return `err`, so callers can write
 * `return weir__terms_error(-EINVAL, ...)`. */
int weir__terms_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Thread-safe text of a (negative) errno. */
const char *weir__errtext(int err, char *buf, size_t n);

uint64_t weir__terms_now_ns(void);

/* ------------------------------------------------------------------- terms */

typedef enum weir__kind {
    WEIR__K_PULL = 0,
    WEIR__K_BLOCKING,
    WEIR__K_FUNCTION,
    WEIR__K_MAP,
    WEIR__K_FILTER, /* pred NULL: pass everything (id) */
    WEIR__K_SINK,
    WEIR__K_BATCH_SINK,
    WEIR__K_MERGE,
    WEIR__K_ZIP,
    WEIR__K_STOP,
    WEIR__K_SEQ,
    WEIR__K_PAR,
    WEIR__K_PARALLEL, /* composite: one child run as data-parallel replicas */
    WEIR__K_KEYED,    /* composite: K shard terms, records routed by key */
    WEIR__K_SPAWN,    /* a shard of weir_spawn: sub-pipelines per key (spawn.c) */
} weir__kind;

/* Who owns a term. */
enum { WEIR__FREE = 0, WEIR__IN_COMPOSITE = 1, WEIR__IN_PIPELINE = 2 };

typedef union weir__fn {
    weir_pull_fn pull;
    weir_blocking_fn blocking;
    weir_function_fn function;
    weir_map_fn map;
    weir_pred_fn pred;
    weir_sink_fn sink;
    weir_batch_sink_fn batch_sink;
    weir_zip_fn zip;
} weir__fn;

struct weir__stage;
struct weir__stream;

struct weir_term {
    weir__kind kind;
    const char *kind_name; /* "function", "id", "print", ... for stats */
    char *name;
    size_t in_size;  /* 0 = any (merge, zip, stop) */
    size_t out_size; /* 0 = no output (sinks, stop) or decided at compile */
    /* Variable-size records (WEIR_VARSIZE given to the constructor): the
     * size above is then sizeof(weir_bytes), the descriptor every stream
     * slot and fused hand-off carries (see weir__stream). */
    bool in_var, out_var;
    void *state;
    weir__fn fn;
    weir_finish_fn finish;
    weir_free_fn free_state;
    weir_interrupt_fn interrupt;   /* blocking sources: weir_term_on_interrupt() */
    weir_tick_fn tick;             /* weir_term_on_tick() (time.c) */
    bool tick_waits;               /* the end of input waits for its tick (weir_delay) */
    weir_checkpoint_fn checkpoint; /* weir_term_on_checkpoint() (barrier.c) */
    weir_barrier_fn on_barrier;    /* weir_term_on_barrier() */
    unsigned ckpt;                 /* its index in the pipeline's weir__ckpt */
    int owner;                     /* WEIR__FREE / IN_COMPOSITE / IN_PIPELINE */

    /* weir_parallel composites: replicas at once (0 = the runtime's workers)
     * and whether the output keeps the input order */
    unsigned width;
    bool unordered;
    /* weir_keyed composites: the key of a record (children = the shards) */
    weir_key_fn key;
    void *key_arg;

    /* composites */
    size_t nchildren;
    weir_term **children;
    unsigned char *child_owned; /* 0: NULL or a reused child we must not free */

    /* compile results (primitives), valid while a pipeline owns the tree */
    unsigned index; /* position in the pipeline's term table */
    unsigned ninputs;
    weir_term **inputs; /* producers, in input order */
    unsigned nconsumers;
    unsigned consumers_cap;
    weir_term **consumers;   /* consumer terms (stage heads after fusion) */
    unsigned *consumer_slot; /* which input of the consumer this is */
    struct weir__stage *stage;
    unsigned node;            /* index in stage->nodes */
    struct weir_term *group;  /* the weir_parallel / weir_keyed composite it runs in */
    unsigned shard;           /* weir_keyed: which shard (child index) */
    struct weir__stream *out; /* the stream this term writes, if it ends a stage */
};

/* Allocate a primitive or composite with a copied (or generated) name. */
weir_term *weir__term_new(weir__kind kind, const char *kind_name, const char *name);
/* Built-ins made from a generic constructor: set the kind shown in
 * statistics and, when the user gave no name, a "<kind>#<n>" name. */
void weir__term_set_kind(weir_term *t, const char *given_name, const char *kind_name);
/* Record sizes of a primitive, WEIR_VARSIZE included (in_var / out_var). */
void weir__term_set_sizes(weir_term *t, size_t in, size_t out);
/* Free a whole tree, whoever owns it (pipeline destroy). */
void weir__term_free_tree(weir_term *t);
/* Free one term's compile results (not the tree). */
void weir__term_reset_compile(weir_term *t);
const char *weir__kind_name(weir__kind k);

/* ----------------------------------------------------------------- streams */

#define WEIR__DETACHED UINT64_MAX
#define WEIR__NOBODY   UINT32_MAX

/* A consumer's position: records [0, tail) are consumed. Written by its
 * consumer, read by the producer's space scan, so each sits on its own line. */
typedef struct weir__cursor {
    alignas(WEIR_CACHELINE) _Atomic uint64_t tail;
    /* checkpoint barriers of the stream handled by this consumer
     * (barrier.c; UINT64_MAX once detached) */
    _Atomic uint64_t bdone;
    char pad[WEIR_CACHELINE - 2 * sizeof(uint64_t)];
} weir__cursor;

/* ------------------------------------------------------------ barriers */

/* A checkpoint barrier in a stream: it sits before record `pos`. */
typedef struct weir__barrier {
    uint64_t pos;
    uint64_t id;
    uint32_t src; /* the checkpointing source's index (weir__ckpt) */
} weir__barrier;

#define WEIR__BARQ 128u /* power of two */

/* A stream's barrier queue (barrier.c), only on streams downstream of a
 * checkpointing source. The producer writes e[head % WEIR__BARQ] and
 * publishes head (release); consumer i handles entries in order and
 * publishes how many in its cursor's bdone (seq_cst); the producer reuses an
 * entry once every bdone is past it. */
typedef struct weir__barq {
    alignas(WEIR_CACHELINE) _Atomic uint64_t head;
    /* the producer waits for a bdone (the Dekker handshake of barrier.c) */
    _Atomic uint32_t waiting;
    uint64_t tail; /* producer-private: entries before it are reusable */
    weir__barrier e[WEIR__BARQ];
} weir__barq;

/* A checkpointing source of the pipeline: its barriers' acknowledgements. */
typedef struct weir__ckpt {
    weir_term *t;
    unsigned expected; /* terminal stages its barriers reach */
    uint64_t next_id;  /* source-private: ids handed out */
    _Atomic uint64_t completed;
    _Atomic uint32_t acks[WEIR_CHECKPOINTS_IN_FLIGHT];
    pthread_mutex_t mu; /* in-order completion */
    uint64_t ready;     /* under mu: bit j = id completed + 1 + j has all acks */
} weir__ckpt;

/*
 * Bounded broadcast ring. Positions are 64-bit counters that never wrap;
 * slot(i) = buf + (i & mask) * size. Records [min tail, head) are live.
 *
 * A variable-size stream (var) is the same ring of weir_bytes descriptors
 * plus a byte ring (`bytes`, bcap bytes, a power of two) that the
 * descriptors point into: record i's bytes are written once, 8-byte aligned
 * and contiguous (a record that would cross the end of the byte ring starts
 * at its beginning; the bytes skipped count as used until the record is
 * consumed), and every consumer reads them in place. bpos[i & mask] is where
 * record i's region began (before any skip), so the bytes in use are
 * p_bhead - bpos[min tail & mask]. The bytes of record i follow exactly the
 * rules of slot i: written before the release of head that publishes i, read
 * by a consumer before its tail passes i, reused by the producer only after
 * its acquire load of every tail shows them past i.
 *
 * | operation              | who               | concurrently with             |
 * |------------------------|-------------------|-------------------------------|
 * | weir__stream_space,    | the producer only | consumers' read/advance       |
 * |   weir__stream_put,    |                   |                               |
 * |   weir__stream_write,  |                   |                               |
 * |   weir__stream_wspan / |                   |                               |
 * |   weir__stream_wcommit,|                   |                               |
 * |   weir__stream_breserve|                   |                               |
 * |   / weir__stream_bcommit|                  |                               |
 * | weir__stream_publish   | the producer only | consumers' read/advance       |
 * | weir__stream_end       | the producer, once| consumers                     |
 * | weir__stream_avail/at  | consumer i only   | producer, other consumers     |
 * | weir__stream_advance   | consumer i only   | producer, other consumers     |
 * | weir__stream_detach    | consumer i, once  | producer, other consumers     |
 * | weir__stream_depth,    | any thread        | everything (approximate)      |
 * |   weir__stream_bdepth  |                   |                               |
 */
typedef struct weir__stream {
    /* Published by the producer, read by every consumer. */
    alignas(WEIR_CACHELINE) _Atomic uint64_t head;
    _Atomic uint32_t ended;
    /* Cursor index the blocked producer waits for (WEIR__NOBODY = none).
     * Written by the producer when it blocks, cleared by that consumer. */
    alignas(WEIR_CACHELINE) _Atomic uint32_t waiting_on;

    /* Producer-private (the one producer stage's activations). */
    alignas(WEIR_CACHELINE) uint64_t p_head; /* written, maybe unpublished */
    uint64_t p_free;                         /* known free slots */
    uint32_t p_scan;                         /* resume point of the blocked scan */
    uint64_t p_target;                       /* ... and the target it scans for */
    uint64_t p_bhead;                        /* var: next byte position (8-aligned) */
    uint64_t p_bfree;                        /* var: known free bytes */
    uint64_t p_bytes;                        /* var: payload bytes written */
    _Atomic uint64_t max_depth;              /* producer-written, relaxed */
    /* var, monitoring (producer-written at publish, relaxed) */
    _Atomic uint64_t st_bytes, st_bhead, max_bdepth;
    /* The stall watch (stream.c): the clock at the last publish, kept only
     * when stall_ns (the pipeline's starvation_ns) is not 0; stall_mark is
     * the last_publish_ns value of the last silence counted in `stalls`. */
    _Atomic uint64_t last_publish_ns; /* producer-written, relaxed */
    _Atomic uint64_t stall_mark;      /* CAS by producer and monitoring readers */
    weir__barq *barq;                 /* checkpoint barriers (barrier.c); NULL: none ever */
    uint64_t ckmask;                  /* the checkpointing sources whose barriers it carries */
    _Atomic uint64_t stalls;          /* silences counted (input starvations) */
    uint64_t stall_ns;                /* set at start, read-only while running */

    /* Read-only after compile. */
    alignas(WEIR_CACHELINE) char *buf;
    size_t size;  /* record size (var: sizeof(weir_bytes)) */
    uint64_t cap; /* power of two */
    uint64_t mask;
    unsigned ncons;
    bool var;
    char *bytes;                    /* var: the byte ring */
    uint64_t bcap, bmask;           /* var: its size, a power of two */
    _Atomic uint64_t *bpos;         /* var: [cap] region start of each record (producer
                                       writes, relaxed; monitoring reads) */
    weir__cursor *cursors;          /* [ncons] */
    struct weir__stage **consumers; /* [ncons] stage of each cursor */
    /* [ncons] the cursor's input in its consumer's ready set (a merge, see
     * weir__ready_mark), WEIR__NOBODY when the consumer keeps none */
    uint32_t *slots;
    struct weir__stage *producer;
    const char *name; /* the producing term's */
} weir__stream;

int weir__stream_init(weir__stream *s, const char *name, size_t size, uint64_t cap, unsigned ncons);
void weir__stream_deinit(weir__stream *s);

static inline void *weir__stream_slot(const weir__stream *s, uint64_t pos)
{
    return s->buf + (size_t)(pos & s->mask) * s->size;
}

/* Producer: make sure at least one slot is free. Returns true when there is
 * space; false when the producer must wait: then a consumer whose advance
 * may free space has been asked (waiting_on) to notify the producer stage. */
bool weir__stream_space(weir__stream *s, uint32_t want);

/*
 * The write side: every producer path (pull source, fused chain end,
 * blocking source, spill, a parallel stage's commit) writes through these.
 * `want` is the producer's hysteresis (free slots it waits for when full).
 * A return of 0 records / NULL without an error means full: the stream has
 * asked a consumer to notify the producer stage (weir__stream_space).
 */
/* Give a variable-size stream its byte ring (compile.c). */
int weir__stream_set_var(weir__stream *s, uint64_t bcap);
void weir__stream_free_var(weir__stream *s);
/* var: one record of `len` bytes: room for it at the byte head (a pointer
 * into the byte ring, 8-byte aligned), NULL when full or, with *err set to
 * -EMSGSIZE, when `len` exceeds the byte ring. Commit with bcommit. */
void *weir__stream_breserve(weir__stream *s, size_t len, uint32_t want, int *err);
/* var: publishable record of `len` bytes (<= the reserved length) at `at`,
 * the pointer breserve returned. */
void weir__stream_bcommit(weir__stream *s, void *at, size_t len);
int weir__stream_put_var(weir__stream *s, const weir_bytes *b, uint32_t want);
/* Copy up to n records, `stride` bytes apart (var: weir_bytes descriptors
 * whose bytes are copied), into the ring. @return records written; stops
 * at a full ring (0: the producer waits) or, with *err = -EMSGSIZE, at a
 * record larger than the byte ring. */
size_t weir__stream_write(weir__stream *s, const char *src, size_t stride, size_t n, uint32_t want,
                          int *err);

/* One record. @return 1 written, 0 full, or -EMSGSIZE (var: larger than
 * the byte ring). */
static inline int weir__stream_put(weir__stream *s, const void *rec, uint32_t want)
{
    if (WEIR_UNLIKELY(s->var))
        return weir__stream_put_var(s, (const weir_bytes *)rec, want);
    if (s->p_free == 0 && !weir__stream_space(s, want))
        return 0;
    memcpy(s->buf + (size_t)(s->p_head & s->mask) * s->size, rec, s->size);
    s->p_head++;
    s->p_free--;
    return 1;
}

/* Fixed-size streams: free slots that are contiguous at p_head (the caller
 * made sure p_free > 0 or called weir__stream_space); write them in place
 * at weir__stream_slot(s, s->p_head), then commit how many were written. */
static inline size_t weir__stream_wspan(const weir__stream *s)
{
    uint64_t k = s->cap - (s->p_head & s->mask);
    return (size_t)(k < s->p_free ? k : s->p_free);
}

static inline void weir__stream_wcommit(weir__stream *s, size_t k)
{
    s->p_head += k;
    s->p_free -= k;
}

/* Producer: where the next fixed record goes (with weir__stream_wspan),
 * and the slots known free (a lower bound: a batch of maps and filters
 * limited to it never overflows). */
static inline void *weir__stream_wptr(const weir__stream *s)
{
    return s->buf + (size_t)(s->p_head & s->mask) * s->size;
}

static inline uint64_t weir__stream_wfree(const weir__stream *s)
{
    return s->p_free;
}

/* Consumer: records contiguous in the ring from position `pos`. */
static inline uint64_t weir__stream_run(const weir__stream *s, uint64_t pos)
{
    return s->cap - (pos & s->mask);
}
/* Producer: publish p_head to the consumers. Returns true if there was
 * anything new (the caller then notifies the consumers). */
bool weir__stream_publish(weir__stream *s);
/* Producer: publish and mark the end; the caller notifies the consumers. */
void weir__stream_end(weir__stream *s);
/* Consumer i: records available from `tail` and whether the stream ended
 * with nothing after `tail`. */
uint64_t weir__stream_avail(weir__stream *s, uint64_t tail, bool *at_end);
/* Consumer i: records before `tail` are consumed. Notifies the producer when
 * it is waiting for this cursor. */
void weir__stream_advance(weir__stream *s, unsigned i, uint64_t tail, weir_worker *w);
/* Consumer i is gone: the producer no longer waits for it. */
void weir__stream_detach(weir__stream *s, unsigned i, weir_worker *w);
/* Records not yet consumed by the slowest attached consumer. */
uint64_t weir__stream_depth(const weir__stream *s);
/* var: bytes of the byte ring in use (records not yet consumed by the
 * slowest consumer, with the bytes skipped at a wrap); 0 for fixed. */
uint64_t weir__stream_bdepth(const weir__stream *s);
/* Monitoring (any thread): the stream has not ended, an attached consumer
 * has read everything, and nothing was published for longer than stall_ns.
 * Counts the silence in `stalls` if nobody did yet. */
bool weir__stream_stalled(weir__stream *s, uint64_t now);

/* ------------------------------------------------------------------ stages */

/*
 * The ready set of a merge: which inputs published or ended since the
 * merge's activation last looked, so that an activation costs O(inputs that
 * changed) rather than O(inputs). Two levels of bits: ready1 has one bit per
 * input, ready0 one bit per ready1 word. A producer sets its bit in ready1,
 * then the word's bit in ready0 (both fetch_or release), then notifies the
 * merge (weir__ready_mark). The activation exchanges the non-zero ready0
 * words with 0, then each ready1 word they name (acquire), and ORs the
 * result into its private pending set (pend1 / pend0, same layout); it
 * visits only pending inputs (stage.c, weir__step_merge). See
 * docs/terms.md section 10.
 */
typedef struct weir__ready {
    _Atomic uint64_t *ready1; /* [w1] producers set, the activation clears */
    _Atomic uint64_t *ready0; /* [w0] */
    uint64_t *pend1;          /* [w1] activation-private */
    uint64_t *pend0;          /* [w0] activation-private */
    unsigned w1, w0;
    unsigned nended; /* inputs seen ended (activation-private) */
} weir__ready;

static inline unsigned weir__ready_w1(unsigned n)
{
    return (n + 63) / 64;
}

static inline unsigned weir__ready_w0(unsigned n)
{
    return (weir__ready_w1(n) + 63) / 64;
}

/* Bytes of a ready set for n inputs, laid out by weir__build_stage()
 * (compile.c) at a cache-line boundary (the caller adds the alignment). */
static inline size_t weir__ready_bytes(unsigned n)
{
    size_t w = (size_t)weir__ready_w1(n) + weir__ready_w0(n);
    return 2 * WEIR_CACHELINE + 2 * w * sizeof(uint64_t);
}

typedef enum weir__head {
    WEIR__H_PULL,
    WEIR__H_BLOCKING,
    WEIR__H_INPUT, /* node 0 consumes a stream */
    WEIR__H_MERGE,
    WEIR__H_ZIP,
} weir__head;

/* One term inside a stage. `emit` first: weir_emit* -> node. */
typedef struct weir__node {
    weir_emit emit;
    struct weir__stage *stage;
    unsigned idx;
    weir__kind kind;
    bool out_var; /* term->out_var, here for the emit path (one load) */
    void *state;
    weir__fn fn;
    weir_term *term;
    void *tmp;     /* map / zip output record; batch sink buffer */
    size_t nbuf;   /* records in a batch sink's buffer */
    size_t nbytes; /* variable-size batch sink: bytes in the thread's buffer */
    /* weir_emit_reserve(): the reservation (in the output's byte ring when
     * resv_ring, else in rbuf), NULL when none */
    char *resv;
    size_t resv_max;
    bool resv_ring;
    char *rbuf;
    size_t rcap;
    /* time.c: the deadline this term asked to tick at (0 = none) */
    uint64_t wake_at;
    /* Cumulative counters: written only by the stage's activations (which are
     * ordered by the activation state machine), published to the atomics
     * below at the end of each activation for readers on other threads. */
    uint64_t in, out, ns;
    uint64_t extra; /* a map's records emitted by its finish callback */
    _Atomic uint64_t st_in, st_out, st_ns;
} weir__node;

/* One input of a merge / zip / input stage. */
typedef struct weir__input {
    weir__stream *stream;
    unsigned cursor;
    uint64_t tail; /* local copy of our cursor */
    bool ended;
    uint64_t bidx; /* barrier entries of the stream handled (barrier.c) */
} weir__input;

/* Stage notification states (weir__stage.state). */
enum {
    WEIR__ST_IDLE = 0,     /* not queued, not running: a notify submits it */
    WEIR__ST_RUNNING = 1,  /* queued (after a self-resubmit) or running */
    WEIR__ST_NOTIFIED = 2, /* something changed since the activation looked */
    WEIR__ST_DONE = 4,     /* finished for good: notifications are ignored */
};

/* What one activation found. */
typedef enum weir__run {
    WEIR__PROGRESS, /* did a full batch, more may be ready: run again */
    WEIR__WAIT,     /* no input or no output space: wait for a notify */
    WEIR__FINISHED, /* the stage is DONE (do not touch it again) */
} weir__run;

typedef struct weir__thread {
    pthread_t tid;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool flag; /* a notification arrived (under mu) */
    /* (under mu) the thread sleeps and left the deadlock watch's `busy`
     * count: the notifier that wakes it counts it busy again (exec.c) */
    bool sleeping;
    /* the activation asked to run again at this time (time.c): the wait is
     * timed, and the thread stays busy (0 = none; the thread's own) */
    uint64_t deadline;
} weir__thread;

struct weir__par;

typedef struct weir__stage {
    weir_job job;
    /* The notification state: written by every notifier (producers,
     * consumers, stop/cancel), so it gets its own line. */
    alignas(WEIR_CACHELINE) _Atomic uint32_t state;
    _Atomic uint64_t queued_at; /* when it was made runnable (timing) */

    /* Activation-private (one activation at a time). */
    alignas(WEIR_CACHELINE) weir_pipeline *p;
    unsigned id;
    weir__head head;
    unsigned nnodes;
    weir__node *nodes;
    unsigned ninputs;
    weir__input *inputs;
    unsigned rr;         /* merge: next input to look at */
    weir__ready ready;   /* merge: inputs that changed (see weir__ready) */
    const void **zip_in; /* zip: argument array */
    weir__stream *out;   /* NULL: sink at the end, or nobody reads */
    void *buf;           /* pull source batch buffer */
    char *spill;         /* outputs that did not fit in `out` (stage.c) */
    size_t spill_n;      /* records in it not yet drained */
    size_t spill_head;   /* byte offset of the next one to drain */
    size_t spill_len;    /* bytes used */
    size_t spill_cap;    /* bytes allocated */
    bool input_done;     /* the head will produce nothing more */
    int err;             /* first error in this activation */
    unsigned err_node;
    char *err_msg; /* detail from weir_emit_fail() */
    uint64_t prof_nested;
    /* Batch path: nodes [vec_from, nnodes) are maps and filters, possibly
     * ending in a sink; they run a batch at a time (stage.c). */
    bool vec;
    unsigned vec_from;
    size_t vec_size;      /* largest map output record */
    weir__thread *thread; /* non-NULL: runs on its own OS thread */
    /* Data-parallel stage (parallel.c): nodes [0, par->end) run as replicas
     * on batches of the input, the rest (the serial tail) in order at
     * commit. NULL for a serial stage. */
    struct weir__par *par;
    /* A replica's context (a shadow stage, parallel.c): records leaving the
     * last node are appended to coll instead of a stream. */
    bool collect;
    char *coll;
    size_t coll_n, coll_cap;
    /* a variable-size output's bytes (weir__collect_seal) */
    char *collb;
    size_t collb_n, collb_cap;
    /* Check the cancel flag between records in the batch path (stage.c):
     * cleared while records cost less than WEIR__CHECK_NS each. */
    bool check_cancel;
    /* Time (time.c): some node can ask for a wake-up (a tick, a pull
     * source); the pool's wake-up timer; a tick ended the output. */
    bool has_wake;
    bool tick_end;
    /* the finish callbacks run so far (weir__stage_finish_chain: a finish
     * after a delay waits until the delay released what it holds) */
    bool fin_started;
    unsigned fin_next;
    struct weir__wake *wake;
    /* Checkpoint barriers (barrier.c): the sources whose barriers reach
     * this stage; for a stage of several inputs, the last barrier id of each
     * source each input passed ([ninputs x nckpt]) and the last forwarded;
     * a parallel stage's barriers waiting for their batches' commit. */
    uint64_t ckmask;
    uint64_t *bpassed;
    uint64_t *bfwd;
    uint32_t *bcnt;   /* [nckpt x WEIR_CHECKPOINTS_IN_FLIGHT] inputs past each id */
    unsigned *balive; /* [nckpt] inputs carrying the source, not ended */
    bool bar_stalled; /* a forward waits for room in the output's queue */
    weir__barrier *bpend;
    uint64_t *bpend_seq;
    unsigned bpend_head, bpend_n;
    bool bar_pushed; /* a barrier went into `out`: notify the consumers */
    /* a blocking source's interrupt function was called (once per run) */
    _Atomic bool interrupted;
    uint64_t last_now; /* clock at the end of the last activation (timing) */
    uint64_t activations, ns, starvations, max_wait;
    _Atomic uint64_t st_activations, st_ns, st_starvations, st_max_wait;
} weir__stage;

/* --------------------------------------------------------- parallel stages */

/* Replica slot states (weir__slot.state). */
enum { WEIR__SL_RUNNING = 1, WEIR__SL_DONE = 2 };

/*
 * One batch in flight in a data-parallel stage: records [begin, begin + n)
 * of the input stream, processed by one replica job into shadow->coll.
 * The dispatcher (the stage's serial activation) fills seq/begin/n and
 * submits the job; the replica writes its output and stores DONE (release);
 * the dispatcher loads DONE (acquire), commits the output in order and
 * reuses the slot. See parallel.c for the protocol.
 */
typedef struct weir__slot {
    weir_job job;
    alignas(WEIR_CACHELINE) _Atomic uint32_t state;
    /* keyed: shards that still have to process their part of the batch */
    _Atomic unsigned pending;
    /* written by the dispatcher before the submit, read by the replica */
    uint64_t seq, begin, n;
    struct weir__stage *stage;  /* the real stage */
    struct weir__stage *shadow; /* the replica's nodes, counters, output */
    /* dispatcher-private */
    bool seen_done; /* DONE observed, counters absorbed */
    bool sweep;     /* weir_spawn: no records, every shard ends its idle ones */
    bool out_done;  /* output committed (unordered: before release) */
    size_t ci;      /* output records committed so far */
    /* keyed (parallel.c): the shard of each record, the records each one
     * emitted (input order), the shards touched in first-touch order, and
     * each shard's output of this batch with its commit cursor */
    uint32_t *sh_of, *cnt, *touched;
    uint64_t *key_of; /* weir_spawn: the key of each record */
    unsigned ntouched;
    size_t cpart; /* input order: outputs of record ci already committed */
    char **obuf;  /* [nshards] */
    size_t *on, *ocap, *oci;
    char **obufb; /* [nshards] a variable-size output's bytes (collb) */
    size_t *obcap;
} weir__slot;

/* One shard of a keyed stage: its own term instance (a shadow stage of one
 * node, with the shard's state), run by a job of its own, one activation at
 * a time (the IDLE / NOTIFIED / RUNNING protocol of exec.c), over the parts
 * of the batches the dispatcher queued for it, in batch order. */
typedef struct weir__shard {
    weir_job job;
    alignas(WEIR_CACHELINE) _Atomic uint32_t state;
    /* the queue of batches for this shard: the dispatcher writes fifo[fhead]
     * then publishes fhead (release); the shard reads fhead (acquire) */
    alignas(WEIR_CACHELINE) _Atomic uint64_t fhead;
    alignas(WEIR_CACHELINE) uint64_t ftail; /* shard-private */
    weir__slot **fifo;                      /* [nslots] */
    struct weir__stage *stage;              /* the real stage */
    struct weir__stage *ctx;                /* the shard's node, counters, output */
    unsigned idx;
} weir__shard;

typedef struct weir__par_threads weir__par_threads;

typedef struct weir__par {
    unsigned end;    /* nodes [0, end) are replicated */
    unsigned width;  /* replicas at once */
    unsigned nslots; /* batches in flight or awaiting commit (>= width) */
    bool ordered;
    weir__slot *slots; /* [nslots], slot of seq = slots[seq % nslots] */
    /* dispatcher-private (the stage's one activation at a time) */
    uint64_t next;    /* next batch sequence number to dispatch */
    uint64_t release; /* oldest batch not yet released (input tail) */
    uint64_t claim;   /* input position claimed up to */
    unsigned running; /* dispatched, DONE not yet observed */
    unsigned max_running;
    uint64_t max_reorder; /* most batches done but waiting for an earlier one */
    /* published for monitoring (relaxed) */
    _Atomic unsigned st_running, st_max_running;
    _Atomic uint64_t st_reorder, st_max_reorder, st_batches;
    _Atomic unsigned st_threads; /* threads mode: replica threads started */
    weir__par_threads *threads;  /* threads mode: the replicas' own threads */
    /* keyed stages: nshards > 0 */
    unsigned nshards;
    weir__shard *shards;
    weir_key_fn key;
    void *key_arg;
    uint64_t *touch; /* dispatcher: per shard, 1 + the seq that touched it last */
    /* weir_spawn with an idle timeout: the dispatcher sends a sweep to the
     * shards every sweep_ns while sub-pipelines live (parallel.c) */
    uint64_t sweep_ns, next_sweep;
    unsigned fin_next; /* end of input: next shard whose finish runs */
    bool fin_called;   /* ... and whether it ran (its output is in fin) */
    weir__stage *fin_ctx;
    size_t fin_ci;
} weir__par;

/* compile.c -> parallel.c: give stage `s` (whose first `end` nodes are
 * replicated) its slots and shadows. */
int weir__par_build(weir__stage *s, unsigned end, unsigned width, bool ordered, weir_term *keyed);
void weir__par_free(weir__stage *s);
/* A context running nodes like `from` [0, end) (copied), collecting its
 * output (parallel.c): replicas, shards, sub-pipelines (spawn.c). */
weir__stage *weir__shadow_new(weir__stage *s, weir__node *from, unsigned end);
void weir__shadow_free(weir__stage *sh);

/* spawn.c, called by a spawn shard (parallel.c): push each record of a
 * batch part, then done (publishes the shard's counters). */
int weir__spawn_push(weir__stage *cx, uint64_t key, const void *rec, uint64_t now);
void weir__spawn_done(weir__stage *cx);
/* End of input: end every live sub-pipeline of the shard (finish
 * callbacks, outputs into cx's buffer). */
int weir__spawn_end_all(weir__stage *cx);
/* A sweep: end the shard's sub-pipelines idle for longer than the idle
 * timeout (outputs into cx's buffer). */
void weir__spawn_sweep(weir__stage *cx, uint64_t now);
/* The idle timeout of a spawn shard term (0: none). */
uint64_t weir__spawn_idle_ns(const weir_term *t);
/* Monitoring of a spawn shard term; false for other terms. */
bool weir__spawn_shard_stats(const weir_term *t, uint64_t *live, uint64_t *created,
                             uint64_t *ended);

/* stage.c -> parallel.c: the head step of a parallel stage (STEP_* codes);
 * `cancelled`: only wait for the replicas in flight. */
int weir__par_step(weir__stage *s, weir_worker *w, bool cancelled);
/* Keyed stages: run the shards' finish callbacks, committing their output
 * (a STEP_* code: WAIT when the output is full, ENDED when all are done). */
int weir__par_finish(weir__stage *s, weir_worker *w);
/* Replicas still running (dispatcher side). */
unsigned weir__par_running(const weir__stage *s);
/* The stage ends: stop and join replica threads (threads mode). */
void weir__par_shutdown(weir__stage *s);

/* ------------------------------------------------------------ scratch.c */

typedef struct weir__scratch {
    const void **ptrs; /* the batch path's pointer array */
    size_t nptrs;
    char *buf[2]; /* the batch path's intermediate records, used in turn */
    size_t cap;
    char *sink; /* a fused batch sink's records of this activation */
    size_t sink_cap;
    char *sinkb; /* ... and, variable-size, their bytes */
    size_t sinkb_cap;
} weir__scratch;

/* The calling thread's scratch (NULL when memory runs out). */
weir__scratch *weir__scratch_self(void);
/* ... with room for n records of `size` bytes in each buffer, n pointers. */
weir__scratch *weir__scratch_get(size_t n, size_t size);
/* A fused batch sink's record buffer of `bytes` bytes. */
char *weir__scratch_sink(size_t bytes);
/* Copy the bytes of a variable-size record a batch sink buffers; d->data
 * becomes their offset (weir__flush_batch turns it into a pointer). */
int weir__scratch_sink_bytes(weir__node *n, weir_bytes *d);

/* stage.c helpers used by parallel.c (see stage.c). */
enum { WEIR__STEP_PROGRESS, WEIR__STEP_WAIT, WEIR__STEP_ENDED, WEIR__STEP_ERROR };
int weir__push(weir__stage *s, unsigned i, const void *rec);
/* Push up to n records (`stride` bytes apart) into nodes [i, nnodes) and
 * the output; @return how many were taken. Fewer than n: call again; 0 means
 * the output is full and its consumer will notify the stage. */
size_t weir__push_run(weir__stage *s, unsigned i, const char *base, size_t stride, size_t n);
bool weir__run_records(weir__stage *s, const weir__stream *st, uint64_t pos, size_t n);
bool weir__out_ready(weir__stage *s);
/* A replica's or shard's collected variable-size output: turn the byte
 * offsets into pointers into collb (which then must not move until the
 * dispatcher has committed it). */
void weir__collect_seal(weir__stage *s);
void weir__derive_counts(weir__stage *s);
void weir__note_err(weir__stage *s, unsigned node, int err);

/* ---------------------------------------------------------------- pipeline */

/* Average record cost below which a batch runs without the per-record
 * cancel check (a batch then ends within B x this anyway). */
#define WEIR__CHECK_NS 200u

enum { WEIR__P_CREATED = 0, WEIR__P_STARTING = 1, WEIR__P_STARTED = 2 };

struct weir_pipeline {
    weir_runtime *rt;
    weir_pipeline_config cfg;
    weir_term *root;
    unsigned nterms;
    weir_term **terms; /* primitives in tree order */
    unsigned nstages;
    weir__stage **stages;
    unsigned nstreams;
    weir__stream **streams;
    unsigned nthreads;

    _Atomic int phase; /* WEIR__P_* */
    _Atomic bool stopping;
    _Atomic bool cancelled;
    _Atomic int live; /* stages not finished */
    /* Deadlock watch (every mode, see exec.c): stages notified or running
     * (a thread stage: awake) and not finished. When it drops to 0 while
     * stages are live, every stage waits on another through a bounded
     * stream: nothing can ever wake them. */
    _Atomic int busy;
    /* threads inside the watch that may touch the pipeline after its last
     * stage finished (a stage that just went idle, a notifying API call):
     * destroy waits for 0 before it frees anything */
    _Atomic int watchers;
    weir_latch done;
    bool joined;

    pthread_mutex_t errmu;
    _Atomic int err; /* first error (0 = none) */
    char errmsg[512];
    _Atomic uint64_t starvations;
    /* the byte ring of a variable-size stream (the configured capacity
     * rounded up to a power of two): also the longest record */
    uint64_t byte_cap;
    /* checkpointing sources (barrier.c) */
    unsigned nckpt;
    weir__ckpt *ckpt;
};

/* compile.c: term tree -> stages and streams. Fills p->terms, p->stages,
 * p->streams. On failure frees what it built and returns the error (message
 * set with weir__terms_error). */
int weir__compile(weir_pipeline *p);
void weir__compile_free(weir_pipeline *p);

/* stage.c: one activation (shared by every execution mode). */
weir__run weir__stage_run(weir__stage *s, weir_worker *w);
/* trace.c: weir__stage_run inside a trace event named after the stage's
 * terms, then the depths of its streams; name the calling thread's track. */
weir__run weir__stage_run_traced(weir__stage *s, weir_worker *w);
void weir__trace_stage_thread(const weir__stage *s);
void weir__trace_stage_name(const weir__stage *s, const char *prefix, char *buf, size_t len);
/* Point every node's emit at the right push function (compile time). */
void weir__stage_bind_emits(weir__stage *s);
/* The longest record the term of `e` can emit on a variable-size output
 * (its stream's byte capacity when it writes one). */
size_t weir__emit_max_bytes(const weir_emit *e);
/* time.c: wake-ups at a deadline. */
#define WEIR__TICK_END 1 /* a tick's return: end the stage's output */
/* Arm the stage's wake-up at `deadline` (an activation, or the thread's
 * timed wait); stop it at the stage's end; free it with the stage. */
int weir__wake_arm(weir__stage *s, uint64_t deadline);
void weir__wake_stop(weir__stage *s);
void weir__wake_free(weir__stage *s);
/* The earliest deadline its nodes asked for (0: none). */
uint64_t weir__stage_wake(const weir__stage *s);
/* The input ended: does a term wait for its tick before the finish (a
 * delay still holding records)? */
bool weir__stage_wake_waits(const weir__stage *s);
/* ... a term before node `i`. */
bool weir__stage_wake_waits_before(const weir__stage *s, unsigned i);
/* Run the ticks that are due (all of them, with now = UINT64_MAX, while
 * the pipeline stops). @return WEIR__TICK_END when one ended the output. */
int weir__run_ticks(weir__stage *s);

/* barrier.c: checkpoint barriers. */
/* Compile: find the checkpointing sources, give the streams they reach a
 * barrier queue, count the terminal stages. */
int weir__barriers_build(weir_pipeline *p);
void weir__barriers_free(weir_pipeline *p);
/* Position of the next barrier on input `in` (UINT64_MAX: none seen). */
static inline uint64_t weir__bar_next(const weir__input *in)
{
    const weir__barq *q = in->stream->barq;
    if (WEIR_LIKELY(!q))
        return UINT64_MAX;
    /* acquire: pairs with the producer's release of head (barrier.c) */
    uint64_t h = atomic_load_explicit(&((weir__barq *)q)->head, memory_order_acquire);
    return in->bidx == h ? UINT64_MAX : q->e[in->bidx % WEIR__BARQ].pos;
}
/* Input `i` of stage s is at its next barrier (weir__bar_next == tail):
 * handle it. @return a STEP_* code: PROGRESS (handled), WAIT (the output's
 * barrier queue is full: a consumer will notify), ERROR. */
int weir__bar_input(weir__stage *s, unsigned i, weir_worker *w);
/* An input of a stage of several inputs ended: barriers wait for it no
 * more. */
int weir__bar_input_ended(weir__stage *s, unsigned i, weir_worker *w);
/* A parallel stage: pass the barriers whose batches are all committed. */
int weir__bar_par_release(weir__stage *s);
/* A stage of several inputs: retry the forwards a full output stopped
 * (bar_stalled). */
int weir__bar_retry(weir__stage *s);
/* Flush a batch sink at the end of s's chain (stage.c). */
void weir__stage_flush_sinks(weir__stage *s);
/* Notify the consumers of s's output (stage.c). */
void weir__notify_consumers(weir__stage *s, weir_worker *w);

/* The input ended: run the finish callbacks of every node of s in chain
 * order (a keyed stage: of its serial tail). */
void weir__stage_finish_chain(weir__stage *s);
/* Thread body of a blocking source. */
void weir__stage_run_blocking(weir__stage *s);
/* Finish a stage that can never run (start failed): ends its output. */
void weir__stage_abandon(weir__stage *s);

/* exec.c / exec_threads.c: scheduling of stages. */
void weir__stage_notify(weir__stage *s, weir_worker *w);
void weir__exec_pool_init(weir__stage *s);
int weir__exec_thread_start(weir__stage *s);
void weir__exec_thread_join(weir__stage *s);
/* On a stage's own thread: sleep until notified. */
void weir__exec_thread_wait(weir__stage *s);
void weir__exec_thread_free(weir__stage *s);

/* pipeline.c */
/* Record a failure of term `t` (first error wins) and cancel the pipeline.
 * `detail` NULL: "callback returned -5 (...)". */
/* The runtime is being destroyed: fail the pipeline with -ESHUTDOWN (once)
 * and cancel it, so that its stages stop resubmitting and destroy's drain
 * ends. */
void weir__pipeline_shutdown(weir_pipeline *p, weir_worker *w);
/* A pool stage stopped being busy because it finished (weir__end, while the
 * pipeline is still live): when no stage of a watched pipeline is busy any
 * more but some are live, fail it with -EDEADLK. */
void weir__stage_unbusy(weir__stage *s, weir_worker *w);
/* A token (busy + watcher) for a thread that notifies several stages in a
 * row; pair with weir__pipeline_unbusy(). */
void weir__pipeline_busy(weir_pipeline *p);
void weir__pipeline_unbusy(weir_pipeline *p, weir_worker *w);
void weir__pipeline_fail(weir_pipeline *p, weir_term *t, int err, const char *detail,
                         weir_worker *w);
/* Call the interrupt functions of the blocking sources, once each (after
 * stopping or cancelled became true). */
void weir__pipeline_interrupt_sources(weir_pipeline *p);
/* Notify every stage (cancel, stop of sources). */
void weir__pipeline_notify_all(weir_pipeline *p, bool sources_only, weir_worker *w);
/* A stage finished: the last one sets the latch. Must be the stage's last
 * access to pipeline memory. */
void weir__pipeline_stage_done(weir_pipeline *p);

/* The stage whose callbacks the current thread is running (NULL outside
 * activations), to refuse a join from inside a pipeline. */
extern _Thread_local weir__stage *weir__current_stage;

#endif /* WEIR_TERMS_INTERNAL_H */
