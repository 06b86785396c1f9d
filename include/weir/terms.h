/*
 * weir — terms: LogicSponge-style stream pipelines compiled into batched
 * task chains on the work-stealing runtime.
 *
 * A pipeline is a tree of *terms*. Leaves are sources (produce records),
 * function terms (consume one record, emit 0..n), sinks (consume), merge and
 * zip (several inputs) and stop; inner nodes are sequential composition
 * (weir_seq: b consumes every output stream of a) and parallel composition
 * (weir_par: every input is broadcast to every branch; the outputs are the
 * union of the branches' named output streams). A stream carries
 * fixed-size records, or records of any size (WEIR_VARSIZE, see "Records of
 * any size" below); the producing term declares the size, and a consumer
 * that expects another size (or kind) is a compile error naming both terms.
 *
 * The seed's fan-out, `source * (multiply(i+1) * dump) x N`:
 *
 *   typedef struct { int64_t id, value; } item;
 *   static int multiply(void *m, const void *in, weir_emit *e) {
 *       item r = *(const item *)in;
 *       r.value *= (int64_t)(intptr_t)m;
 *       return weir_emit_record(e, &r);
 *   }
 *   ...
 *   weir_collector out;
 *   weir_collector_init(&out, sizeof(item));              // one shared, locked list
 *   weir_term *br[N];
 *   for (int i = 0; i < N; i++) {
 *       char name[32];
 *       snprintf(name, sizeof name, "mul%d", i + 1);
 *       br[i] = weir_seq2(weir_function(name, sizeof(item), sizeof(item), multiply,
 *                                       (void *)(intptr_t)(i + 1)),
 *                         weir_collect(NULL, &out));
 *   }
 *   weir_term *t = weir_seq2(weir_array_source("src", items, n, sizeof(item)),
 *                            weir_par(N, br));
 *   weir_pipeline *p;
 *   int err = weir_pipeline_create(rt, t, NULL, &p);      // compiles; owns t on success
 *   if (err == 0) err = weir_pipeline_run(p);             // start + join
 *   weir_pipeline_destroy(p);
 *
 * Ownership. Constructors return a new term owned by the caller. Composites
 * (seq, par) take ownership of their children in every case, even when they
 * fail. A term can be a child of one composite only. weir_pipeline_create()
 * takes ownership of the tree when it succeeds; otherwise the caller keeps
 * it and frees it with weir_term_destroy(). Composites never copy user state:
 * the `state` pointer given to a constructor is passed to its callbacks as is
 * and freed (if a free function was attached) when the term is destroyed.
 *
 * Errors. Constructors only fail on bad arguments or memory (they return
 * NULL; weir_last_error() says why). Passing NULL to a composite is not
 * an error there: the composite remembers the hole, and
 * weir_pipeline_create() reports it. Every structural check (sizes, names,
 * inputs, a term used twice, empty composites) happens in
 * weir_pipeline_create(), which returns a negative errno and keeps a message
 * naming the terms involved (weir_last_error()).
 *
 * Callbacks. At most one callback of a given term runs at a time (in every
 * execution mode), so a term's state needs no lock. Callbacks return 0 or a
 * negative errno; an error stops the pipeline, and weir_pipeline_join()
 * returns it (weir_pipeline_error() names the term). Callbacks must not
 * block (a blocking source is the exception: it runs on its own thread).
 * Each term sees its records in stream order. Inside a fused stage, maps and
 * filters may be applied a batch at a time (every record of the batch
 * through one map before the next map); function terms and sinks see
 * records one at a time.
 *
 * Thread safety:
 * | operation                          | who may call              | concurrently with           |
 * |------------------------------------|---------------------------|-----------------------------|
 * | constructors, composites, destroy  | the tree's owner          | other trees                 |
 * | weir_pipeline_create / destroy     | one thread                | nothing on that pipeline    |
 * | weir_pipeline_start                | any thread, callbacks too | stop, cancel, join, stats   |
 * | weir_pipeline_join / run           | any thread but a worker   | start, join, stop, cancel,  |
 * |                                    |                           | stats                       |
 * | weir_pipeline_stop / cancel        | any thread, callbacks too | everything but destroy      |
 * | weir_pipeline_*_stats, print_stats | any thread                | everything but destroy      |
 * | weir_emit_*                        | the callback given `e`    | -                           |
 * A join (stop, cancel) that comes before a concurrent start has published
 * the pipeline returns -EINVAL (not started); one that comes after waits for
 * the end, and joins every thread the start creates. Two starts: one wins,
 * the other returns -EALREADY.
 */
#ifndef WEIR_TERMS_H
#define WEIR_TERMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEIR_TERMS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WEIR_TERMS_PRINTF(f, a)
#endif

typedef struct weir_term weir_term;
typedef struct weir_pipeline weir_pipeline;
typedef struct weir_emit weir_emit;

/* ------------------------------------------------------- records of any size */

/**
 * The record size of a stream whose records have any length (text lines,
 * messages, words), given instead of a byte count to any constructor.
 *
 * On such a stream a record *is* a weir_bytes: callbacks receive `in`
 * pointing to one (`const weir_bytes *b = in;`) and read b->len bytes at
 * b->data in place, in the stream's byte ring: written once however many
 * consumers read it, valid until the callback returns (copy what you keep).
 * The bytes are 8-byte aligned. A producer emits with weir_emit_bytes(),
 * weir_emit_record() of a weir_bytes (the bytes are copied), or reserves
 * room, writes, and commits (weir_emit_reserve(), weir_emit_commit(): a
 * parser writes straight into the stream). A map whose output is
 * variable-size fills `out` (a weir_bytes) with bytes that stay valid until
 * its next call. A pull source writes weir_bytes descriptors whose bytes
 * stay valid until its next call.
 *
 * Capacity is in bytes as well as records: weir_pipeline_config.byte_capacity
 * bytes per stream (default 1 MiB). A record longer than that can never fit
 * and fails the pipeline with -EMSGSIZE naming the term that emitted it.
 */
#define WEIR_VARSIZE ((size_t)-1)

/** A record of a variable-size stream: `len` bytes at `data`. */
typedef struct weir_bytes {
    const void *data;
    size_t len;
} weir_bytes;

/** Largest weir_pipeline_config.byte_capacity (1 GiB). */
#define WEIR_MAX_BYTE_CAPACITY (UINT64_C(1) << 30)

/** Largest ring of a fixed-size stream, capacity x record size (4 GiB):
 *  above it weir_pipeline_create() fails with -EINVAL naming the term. */
#define WEIR_MAX_STREAM_BYTES (UINT64_C(1) << 32)

/* ------------------------------------------------------------------ emit */

/**
 * Where a callback sends its output records. Opaque but for one hook that
 * lets weir_emit_record() be an inline indirect call; do not touch it.
 */
struct weir_emit {
    int (*weir__push)(weir_emit *e, const void *rec);
};

/**
 * Emit one record (copied; `rec` may be on the caller's stack). In a
 * function term this pushes the record through the rest of the stage at
 * once. In a blocking source it blocks while the output stream is full.
 * @return 0; a negative errno returned by a downstream callback of the same
 *         stage (return it from your callback); -ECANCELED once the pipeline
 *         is stopping or cancelled (blocking sources only: the record was not
 *         emitted, return from the callback).
 */
static inline int weir_emit_record(weir_emit *e, const void *rec)
{
    return e->weir__push(e, rec);
}

/** Emit one record of a variable-size output (see WEIR_VARSIZE): `len`
 *  bytes at `data`, copied. Same returns as weir_emit_record(), and
 *  -EMSGSIZE for a record longer than the stream's byte capacity. */
static inline int weir_emit_bytes(weir_emit *e, const void *data, size_t len)
{
    weir_bytes b;
    b.data = data;
    b.len = len;
    return e->weir__push(e, &b);
}

/**
 * Zero-copy emit on a variable-size output: room for a record of up to
 * `max` bytes, written by the caller, then published by weir_emit_commit()
 * with its real length. When the term writes the stream itself (the last
 * term of its stage, or a blocking source) and the stream has room, `*buf`
 * points into the stream's byte ring: the record is written exactly once.
 * Otherwise it is a buffer of the term's, pushed on at commit. A blocking
 * source waits here while the stream is full. One reservation at a time;
 * a second reserve replaces the first.
 * @return 0; -EINVAL (the output is not variable-size, or NULL buf);
 *   -EMSGSIZE (`max` exceeds the stream's byte capacity); -ENOMEM;
 *   -ECANCELED (blocking sources: the pipeline is stopping or cancelled).
 */
WEIR_API int weir_emit_reserve(weir_emit *e, size_t max, void **buf);

/** Publish the record reserved by weir_emit_reserve(): its first `len`
 *  bytes (`len` <= the reserved `max`). Same returns as weir_emit_record();
 *  -EINVAL without a reservation or for `len` > `max`. */
WEIR_API int weir_emit_commit(weir_emit *e, size_t len);

/** Emit `n` consecutive records. Same returns as weir_emit_record(); in a
 *  blocking source the batch is published to consumers once. On a
 *  variable-size output `recs` is an array of `n` weir_bytes. */
WEIR_API int weir_emit_records(weir_emit *e, const void *recs, size_t n);

/** True once the pipeline is stopping or cancelled: a blocking source should
 *  return from its callback. */
WEIR_API bool weir_emit_stopping(const weir_emit *e);

/**
 * Record a detailed message for an error the callback is about to return,
 * e.g. `return weir_emit_fail(e, -errno, "cannot open '%s'", path);`.
 * weir_pipeline_error() then reads "term 'lines': cannot open 'x': No such
 * file or directory". @return `err`.
 */
WEIR_API int weir_emit_fail(weir_emit *e, int err, const char *fmt, ...) WEIR_TERMS_PRINTF(3, 4);

/* ------------------------------------------------------------- callbacks */

/** Pull source: write up to `max` records to `out`, return how many (0..max)
 *  or a negative errno. Set `*end` when no record will follow (the records
 *  returned with it are still delivered). Returning 0 without `*end` yields
 *  and is called again later: do not poll this way, use a blocking source. */
typedef int (*weir_pull_fn)(void *state, void *out, size_t max, bool *end);
/** Blocking source: runs once on a dedicated thread; emits through `e`
 *  (blocking while the stream is full) and returns 0 at the end of its data or
 *  a negative errno. -ECANCELED after a stop or cancel is not an error. */
typedef int (*weir_blocking_fn)(void *state, weir_emit *e);
/** Function term: consume `in`, emit 0..n records through `e`. */
typedef int (*weir_function_fn)(void *state, const void *in, weir_emit *e);
/** Map term: exactly one output record per input, written to `out`. */
typedef void (*weir_map_fn)(void *state, const void *in, void *out);
/** Filter predicate: keep `in` when it returns true. */
typedef bool (*weir_pred_fn)(void *state, const void *in);
/** Sink: consume one record. */
typedef int (*weir_sink_fn)(void *state, const void *in);
/** Batch sink: consume `n` consecutive records. */
typedef int (*weir_batch_sink_fn)(void *state, const void *recs, size_t n);
/** Zip: one record from each of the `n` inputs, in input order. */
typedef int (*weir_zip_fn)(void *state, const void *const *in, size_t n, weir_emit *e);
/** Called once after a term's last input (before its end of stream goes
 *  downstream), e.g. to emit totals. `e` is NULL for sinks. */
typedef int (*weir_finish_fn)(void *state, weir_emit *e);
/** A tick (weir_term_on_tick()): called at or after the deadline the term
 *  asked for with weir_emit_wake_at(), with the clock (CLOCK_MONOTONIC ns;
 *  UINT64_MAX while the pipeline stops: release what you hold). May emit and
 *  ask again. */
typedef int (*weir_tick_fn)(void *state, uint64_t now_ns, weir_emit *e);
/** Frees a term's state when the term is destroyed. */
typedef void (*weir_free_fn)(void *state);
/** Wakes a blocking source blocked in a wait of its own (see
 *  weir_term_on_interrupt()). */
typedef void (*weir_interrupt_fn)(void *state);

/* ---------------------------------------------------------- constructors */

/*
 * Every constructor copies `name` (NULL gives a unique "<kind>#<n>"). The
 * name is the key of the term's output stream and appears in errors and
 * statistics. Sizes are in bytes, > 0. Each returns NULL on a bad argument
 * (-EINVAL) or when memory runs out (-ENOMEM); weir_last_error() says
 * which.
 */

/** A pull source of `out_size`-byte records, run as batched tasks. */
WEIR_API weir_term *weir_source(const char *name, size_t out_size, weir_pull_fn fn, void *state);

/** A blocking source (files, sockets): `fn` runs once on its own thread. */
WEIR_API weir_term *weir_blocking_source(const char *name, size_t out_size, weir_blocking_fn fn,
                                         void *state);

/** A function term: 0..n output records per input (map, filter, flat-map). */
WEIR_API weir_term *weir_function(const char *name, size_t in_size, size_t out_size,
                                  weir_function_fn fn, void *state);

/** A 1:1 map; cheaper than weir_function() (no emit call per record). */
WEIR_API weir_term *weir_map(const char *name, size_t in_size, size_t out_size, weir_map_fn fn,
                             void *state);

/** Keep the records for which `pred` returns true (LogicSponge's DataItemFilter). */
WEIR_API weir_term *weir_filter(const char *name, size_t size, weir_pred_fn pred, void *state);

/** A sink called once per record (LogicSponge's Dump). */
WEIR_API weir_term *weir_sink(const char *name, size_t in_size, weir_sink_fn fn, void *state);

/** A sink called with runs of consecutive records (up to the batch size). */
WEIR_API weir_term *weir_batch_sink(const char *name, size_t in_size, weir_batch_sink_fn fn,
                                    void *state);

/** Merge (LogicSponge's Linearizer): the records of all inputs in arrival
 *  order (FIFO per input), all inputs of one size; ends when all inputs end. */
WEIR_API weir_term *weir_merge(const char *name);

/**
 * Zip: each call takes one record from every input, in input order; ends
 * when any input ends (records left on longer inputs are dropped).
 * With `fn` NULL the output is the concatenation of the input records
 * (LogicSponge's MergeToSingleStream) and `out_size` must be 0 (it is the
 * sum of the input sizes).
 */
WEIR_API weir_term *weir_zip(const char *name, size_t out_size, weir_zip_fn fn, void *state);

/** Stop: swallows its inputs, has no output (`x * stop` hides x's output). */
WEIR_API weir_term *weir_stop(void);

/** Attach a finish callback (see weir_finish_fn) to a source-less term:
 *  function, map, filter, sink, batch sink, merge or zip. @return t (NULL
 *  stays NULL; a wrong kind destroys t and returns NULL). */
WEIR_API weir_term *weir_term_on_finish(weir_term *t, weir_finish_fn fn);

/**
 * Attach an interrupt function to a blocking source: weir calls it once, when
 * the pipeline begins to stop or is cancelled (weir_pipeline_stop(),
 * weir_pipeline_cancel(), a failing term, weir_pipeline_destroy() or
 * weir_runtime_destroy() of a running pipeline), after weir_emit_stopping()
 * became true, to wake the source's callback from a wait weir cannot see: a
 * read on a silent socket, a condition variable. Shut the descriptor down,
 * write to a self-pipe, signal the condition (GStreamer's GstBaseSrc::unlock
 * is the model). It runs on the thread that stops or cancels (an API caller,
 * or a worker when a term fails), possibly while the callback runs or after
 * it returned: it must not block, must not call weir, and may only touch
 * what stays valid until the pipeline is destroyed (the term's state does).
 * Without one, a cancel reaches a source blocked in its own wait only when
 * that wait returns (or if it waits in slices and polls weir_emit_stopping()).
 * @return t (NULL stays NULL; a term that is composed already gives NULL
 *   and -EBUSY; a term that is not a blocking source is destroyed and NULL
 *   returned, -EINVAL).
 */
WEIR_API weir_term *weir_term_on_interrupt(weir_term *t, weir_interrupt_fn fn);

/**
 * Attach a function that frees the term's state (the `state` given to its
 * constructor) at destroy; a second call replaces the first function.
 * Refused on a built-in that allocated its own state and frees it
 * (weir_print, weir_add_index, weir_file_lines, weir_file_lines_fixed,
 * weir_tokenize, weir_array_source,
 * weir_range_source, weir_counter_source, weir_running_stats, weir_sum,
 * weir_mean, weir_std*): `fn` would replace weir's free function, leaking
 * that state, and would receive weir's private state, not anything of
 * yours. Free what you passed to such a built-in (weir_print's `arg`)
 * after the pipeline or tree is destroyed.
 * @return t; NULL stays NULL; a composite (no state) is returned unchanged
 *   with -EINVAL; a built-in that frees its own state gives NULL and
 *   -EINVAL (weir_last_error() names it), and is destroyed unless it is
 *   already composed (then nothing is freed: its tree owns it).
 */
WEIR_API weir_term *weir_term_on_free(weir_term *t, weir_free_fn fn);

/* ------------------------------------------------------------------ time */

/*
 * Time. A term can ask to run again at a deadline without holding a worker
 * (in the pool, a runtime timer notifies its stage: include/weir/timer.h; on
 * a thread of its own, a timed wait): a function term with a tick callback
 * calls weir_emit_wake_at() from any of its callbacks, and its tick runs at
 * or after that time; a pull source calls weir_source_wake_at() and returns
 * 0 records, and is called again then (instead of polling). Processing time
 * only (CLOCK_MONOTONIC, weir_now_ns()). A stop cuts waits short: the
 * pending ticks run at once with now = UINT64_MAX. At the end of the input
 * the finish callbacks run at once and pending ticks are dropped (a window
 * passes its open windows as partial from its finish), except a
 * weir_delay's: its last records still wait for their delay. Cancel drops
 * what is pending.
 */

/** Attach a tick callback to a function term (see weir_tick_fn). @return t;
 *  NULL stays NULL; another kind or a NULL fn is destroyed and NULL
 *  returned (-EINVAL); a composed term gives NULL (-EBUSY). */
WEIR_API weir_term *weir_term_on_tick(weir_term *t, weir_tick_fn fn);

/** From a callback (or the tick) of a term with a tick: run the tick once,
 *  at or after `deadline_ns` (weir_now_ns() clock). A new request replaces
 *  the term's pending one. @return 0; -EINVAL without a tick callback. */
WEIR_API int weir_emit_wake_at(weir_emit *e, uint64_t deadline_ns);

/** From a pull source's callback that returns 0 records (without `*end`):
 *  call it again at or after `deadline_ns` rather than at once.
 *  @return 0; -EINVAL outside a pull source's callback. */
WEIR_API int weir_source_wake_at(uint64_t deadline_ns);

/** Each record released `delay_ns` after it arrived, in order (LogicSponge's
 *  Delay, without holding a worker). `size` bytes or WEIR_VARSIZE. A stop
 *  releases what it holds at once; the end of the input waits for the last
 *  delays. */
WEIR_API weir_term *weir_delay(const char *name, size_t size, uint64_t delay_ns);

/** A record of weir_periodic_source(). */
typedef struct weir_periodic_rec {
    uint64_t seq;         /**< 0, 1, 2, ... */
    uint64_t deadline_ns; /**< start + (seq + 1) x period */
    uint64_t now_ns;      /**< when it was emitted (>= deadline_ns) */
} weir_periodic_rec;

/** A pull source of one weir_periodic_rec every `period_ns` (heartbeats,
 *  periodic flushes), `count` of them (0 = until a stop). A record per
 *  period: after a late wake-up the missed ones come at once, each with its
 *  own deadline. Holds no worker between records. */
WEIR_API weir_term *weir_periodic_source(const char *name, uint64_t period_ns, uint64_t count);

/** Window kinds of weir_window(). */
typedef enum weir_window_kind {
    WEIR_WINDOW_COUNT = 0, /**< by record count */
    WEIR_WINDOW_TIME = 1,  /**< by processing time (arrival) */
} weir_window_kind;

typedef struct weir_window_config {
    weir_window_kind kind;
    /** Records (COUNT) or nanoseconds (TIME) per window, > 0. */
    uint64_t length;
    /** 0 = tumbling (slide = length); else sliding windows that start every
     *  `slide` records / ns, 1..length. */
    uint64_t slide;
    /** Frees the callback's `state` at destroy (optional). */
    weir_free_fn free_state;
} weir_window_config;

/** What a window callback is told about the window. */
typedef struct weir_window_info {
    /** COUNT: record numbers [start, end) since the first record; TIME: the
     *  window's [start, end) in ns (aligned to multiples of the slide). */
    uint64_t start, end;
    size_t n; /**< records in it */
    /** Closed before its end: at the end of the input, or by a stop. */
    bool partial;
} weir_window_info;

/** Called with the `n` records (contiguous, in arrival order) of a window
 *  as it closes; emits the aggregate(s). */
typedef int (*weir_window_fn)(void *state, const void *recs, size_t n, const weir_window_info *info,
                              weir_emit *e);

/**
 * Tumbling or sliding windows by count or by processing time over
 * fixed-size records. COUNT: every `slide` records, `fn` gets the last
 * `length` (fewer at the start); tumbling windows are disjoint. TIME:
 * windows [k x slide, k x slide + length) of the clock, each passed when
 * it ends (a tick, without holding a worker, also when no record comes);
 * empty windows are skipped. At the end of the input the windows still open
 * are passed with `partial` set (a count window only if it has records not
 * passed yet). Event time (a timestamp field and a watermark) is not
 * provided. `out_size` is the aggregates' size (or WEIR_VARSIZE).
 */
WEIR_API weir_term *weir_window(const char *name, size_t in_size, size_t out_size,
                                const weir_window_config *cfg, weir_window_fn fn, void *state);

/** What weir_idle_timeout() does when its stream is idle. */
typedef enum weir_idle_action {
    WEIR_IDLE_END = 0,  /**< end the stream here (its consumers see the end) */
    WEIR_IDLE_FAIL = 1, /**< fail the pipeline with -ETIMEDOUT naming the term */
} weir_idle_action;

/** Pass-through of `size`-byte (or WEIR_VARSIZE) records that acts when no
 *  record came for `timeout_ns` after the last one (the watch starts with
 *  the first record). */
WEIR_API weir_term *weir_idle_timeout(const char *name, size_t size, uint64_t timeout_ns,
                                      weir_idle_action action);

/* ----------------------------------------------------------- checkpoints */

/*
 * Checkpoint barriers (Flink's aligned checkpoints, Carbone et al. 2015). A
 * blocking source that asks for them (weir_term_on_checkpoint) injects a
 * barrier into its output with weir_emit_barrier(): it flows in-band, in
 * order with the records, through every stream and stage; a stage with
 * several inputs (merge, zip) forwards it once it arrived on every input
 * that carries that source's barriers (an input that delivered it waits for
 * the others: alignment); a parallel, keyed or spawn stage forwards it once
 * every batch before it was committed. When a barrier has passed every sink
 * (and every stage whose output nobody reads), the source's checkpoint
 * function is called with its id: everything the source emitted before the
 * barrier has been processed by every term on every path and reached every
 * sink. A source that acknowledges its input only then (the Redis source:
 * XACK) delivers at least once across crashes. Terms on the way may hold
 * records across calls (weir_delay, weir_window, a term of yours): a barrier
 * passes a term once the term has *processed* the records before it, so
 * records it holds are not waited for; put such terms after the sinks'
 * acknowledgement boundary or accept it. A sink (or any term) can take part
 * with weir_term_on_barrier(): called as a barrier reaches it, before the
 * barrier passes it (flush what you buffer). Barriers cost nothing when no
 * source asks for them: no stream carries a barrier queue then.
 */

/** At most this many barriers of one source are in flight (injected, not
 *  completed): weir_emit_barrier() returns -EBUSY beyond. */
#define WEIR_CHECKPOINTS_IN_FLIGHT 64u

/** A barrier of the source passed every sink (see above). Called once per
 *  barrier, in id order, on whichever thread completed it (a worker, a
 *  stage's thread), possibly while the source's callback runs: it must not
 *  block and must not call weir; hand the id to the source (an atomic). */
typedef void (*weir_checkpoint_fn)(void *state, uint64_t id);

/** A barrier reached the term (weir_term_on_barrier()): flush what it
 *  buffers. A negative errno fails the pipeline (the barrier never
 *  completes). `e` is NULL for sinks. */
typedef int (*weir_barrier_fn)(void *state, weir_emit *e);

/** Make a blocking source a checkpointing one: it may call
 *  weir_emit_barrier(), and `fn` is told when each barrier completed.
 *  @return t; NULL stays NULL; another kind is destroyed, NULL (-EINVAL);
 *  a composed term gives NULL (-EBUSY). */
WEIR_API weir_term *weir_term_on_checkpoint(weir_term *t, weir_checkpoint_fn fn);

/** Call `fn` when a barrier reaches term `t` (a function, map, filter,
 *  sink or batch sink), before it passes. @return as weir_term_on_finish(). */
WEIR_API weir_term *weir_term_on_barrier(weir_term *t, weir_barrier_fn fn);

/**
 * From a checkpointing blocking source's callback: a barrier after every
 * record emitted so far. `*id` receives its id (1, 2, 3, ...), the one the
 * checkpoint function will be called with.
 * @return 0; -EBUSY (WEIR_CHECKPOINTS_IN_FLIGHT barriers are in flight, or
 *   the output's barrier queue is full: nothing was injected, try again
 *   later); -ECANCELED (stopping or cancelled); -EINVAL (not a
 *   checkpointing blocking source). A source whose output nobody reads
 *   completes each barrier at once.
 */
WEIR_API int weir_emit_barrier(weir_emit *e, uint64_t *id);

/** The term's name (its output stream key). */
WEIR_API const char *weir_term_name(const weir_term *t);

/** Free a term tree that no pipeline owns, calling the state free functions.
 *  NULL is ignored. A term that is a child of a composite must not be
 *  destroyed on its own (destroy the root). */
WEIR_API void weir_term_destroy(weir_term *t);

/* ----------------------------------------------------------- composition */

/**
 * Sequential composition t[0] * t[1] * ... : each term consumes every output
 * stream of the previous one; the composite's outputs are the last term's.
 * Takes ownership of the `n` terms. Returns NULL only when memory runs out
 * (the terms are then destroyed).
 */
WEIR_API weir_term *weir_seq(size_t n, weir_term *const terms[]);

/**
 * Parallel composition t[0] | t[1] | ... : every input stream is broadcast to
 * every branch; the outputs are the union of the branches' output streams, in
 * branch order. Two outputs with the same name are a compile error. Takes
 * ownership of the `n` terms; NULL only when memory runs out.
 */
WEIR_API weir_term *weir_par(size_t n, weir_term *const terms[]);

/* ------------------------------------------------------- data parallelism */

/** Output order of a data-parallel term. */
typedef enum weir_order {
    WEIR_ORDERED = 0,   /**< exactly the serial term's output, in input order */
    WEIR_UNORDERED = 1, /**< the same records, batches in completion order */
} weir_order;

/** Largest width weir_parallel() accepts. */
#define WEIR_PARALLEL_MAX_WIDTH 1024u

/**
 * Data-parallel replicas of `t`: a function, map or filter term, or a seq of
 * them (a chain). Up to `width` activations of it run at once on different
 * workers, each on its own batch of input records (0 = one per worker of the
 * runtime). The output is exactly what `t` alone would emit, in the same
 * order (a reorder step by batch sequence number, bounded to 2 x width
 * batches), whatever each record costs; filters and flat-maps included.
 *
 * `t`'s callbacks run concurrently on different records: its state must be
 * read-only, or safe to share (use weir_keyed() for per-key state). Its
 * finish callbacks run once, after the last batch, in order. Adjacent
 * parallel terms fuse into one parallel stage; the serial terms after it
 * (functions, maps, filters, sinks) run in order behind it in the same stage.
 * In threads mode the stage gets `width` threads of its own.
 *
 * Takes ownership of `t`. NULL with a message for a width above
 * WEIR_PARALLEL_MAX_WIDTH or a bad order (t is then destroyed); what `t`
 * holds is checked by weir_pipeline_create() ("only function, map and filter
 * terms can run as replicas").
 */
WEIR_API weir_term *weir_parallel(weir_term *t, unsigned width);
/** weir_parallel() with a choice of order: WEIR_UNORDERED commits each batch
 *  as soon as it is done (lower latency, the same records). */
WEIR_API weir_term *weir_parallel_order(weir_term *t, unsigned width, weir_order order);

/** The key of a record, for weir_keyed(): records with equal keys go to the
 *  same shard. Any 64-bit value (a hash of a string, an id): weir mixes it
 *  before it picks the shard. Called concurrently: must not keep state. */
typedef uint64_t (*weir_key_fn)(void *arg, const void *rec);
/** Make the term of shard `shard` (0..shards-1), with its own state. */
typedef weir_term *(*weir_shard_fn)(void *arg, unsigned shard);

/** Largest shard count weir_keyed() accepts. */
#define WEIR_KEYED_MAX_SHARDS 4096u

/**
 * Keyed shards of a stateful term (Flink's keyBy): `shards` instances of a
 * term, each made by `make(make_arg, i)` with its own state (a function, map,
 * filter or sink term). Each record goes to shard mix(key(record)) % shards;
 * each shard runs one callback at a time over its records in input order, so
 * per-key order holds and per-key state needs no lock; different shards run
 * in parallel on different workers (in threads mode: one thread each).
 *
 * Output: WEIR_ORDERED, in input order (the outputs of record i before those
 * of record i + 1, whichever shard made them); WEIR_UNORDERED, batch by batch,
 * shard by shard within a batch (per-key order still holds). Finish callbacks
 * of the shards run once at the end, shard 0 first, and may emit (totals).
 * All shards must agree on input and output sizes. Statistics: each shard's
 * term is a term of its own (records, time: the key skew is visible there).
 *
 * Takes ownership of the shard terms. NULL with a message for a NULL `key`
 * or `make`, a shard count of 0 or above WEIR_KEYED_MAX_SHARDS, or a bad
 * order; a NULL from `make` is reported by weir_pipeline_create().
 */
WEIR_API weir_term *weir_keyed(const char *name, unsigned shards, weir_key_fn key, void *key_arg,
                               weir_shard_fn make, void *make_arg, weir_order order);

/* --------------------------------------------------- dynamic sub-pipelines */

/** Make the sub-pipeline of `key` (weir_spawn()): a new term tree, a chain
 *  (weir_seq) of function, map and filter terms, possibly ending in a sink
 *  (only when the spawn term has no output), with state of its own. NULL
 *  fails the pipeline (the message names the key). */
typedef weir_term *(*weir_spawn_fn)(void *arg, uint64_t key);

/** What weir_spawn() does with a new key when its bound of live
 *  sub-pipelines is reached. */
typedef enum weir_spawn_policy {
    WEIR_SPAWN_FAIL = 0,  /**< fail the pipeline with -ENOSPC (names the key) */
    WEIR_SPAWN_EVICT = 1, /**< end the least recently used one (its finish
                               callbacks run, their outputs go downstream) */
} weir_spawn_policy;

/** Most terms in one sub-pipeline. */
#define WEIR_SPAWN_MAX_CHAIN 16u

/** Options of weir_spawn(); fill with weir_spawn_config_init(). */
typedef struct weir_spawn_config {
    /** Shards the keys are spread over (mix(key) % shards, as weir_keyed);
     *  shards run in parallel, each one record at a time. Default 16. */
    unsigned shards;
    /** Bound on live sub-pipelines (0 = none), split evenly between the
     *  shards: each keeps at most ceil(max_live / shards). */
    size_t max_live;
    weir_spawn_policy policy; /**< at the bound; default WEIR_SPAWN_FAIL */
    /** End a sub-pipeline idle (no record of its key) for longer than this
     *  (0 = never); a later record of the key makes a new one. Checked when
     *  its shard next runs and at the end of the input. */
    uint64_t idle_ns;
    weir_order order; /**< WEIR_ORDERED (default): outputs in input order */
} weir_spawn_config;

WEIR_API void weir_spawn_config_init(weir_spawn_config *cfg);

/**
 * Sub-pipelines per key, made at run time (LogicSponge's DynamicSpawnTerm):
 * the first record of a key calls `make(make_arg, key)`, which returns a new
 * term tree; it is compiled on the spot, inside the running pipeline, and
 * gets that record and every later one of the key. The sub-pipelines'
 * outputs merge into this term's output stream (`out_size`-byte records, or
 * WEIR_VARSIZE; 0 = no output, the sub-pipelines end in sinks), in input
 * order with WEIR_ORDERED. Every sub-pipeline ends when the input ends (its
 * finish callbacks run in chain order and may emit), or earlier by the idle
 * timeout or an eviction (cfg). A sub-pipeline's callbacks run one at a
 * time; different keys' run in parallel on the runtime's workers (in
 * threads mode: on the shards' threads). A failure inside one fails the
 * pipeline with a message naming the key and the term. A sub-pipeline costs
 * its terms, a context of its nodes and a table entry: no stream, thread or
 * job (`weir-bench spawn`). Statistics: each shard is a term of its own
 * (records, time, live / spawned / ended sub-pipelines);
 * weir_pipeline_spawn_list() lists the live ones. `cfg` NULL gives the
 * weir_spawn_config_init() defaults.
 * @return the term; NULL (-EINVAL with a message, -ENOMEM) on a bad argument.
 */
WEIR_API weir_term *weir_spawn(const char *name, size_t in_size, size_t out_size, weir_key_fn key,
                               void *key_arg, weir_spawn_fn make, void *make_arg,
                               const weir_spawn_config *cfg);

/** A live sub-pipeline (weir_pipeline_spawn_list()). */
typedef struct weir_spawn_info {
    uint64_t key;
    uint64_t records; /**< records it received */
    uint64_t idle_ns; /**< since its last record */
    unsigned shard;
} weir_spawn_info;

/** The live sub-pipelines of spawn term `name`: up to `max` into `out`,
 *  their number into `*count` (may exceed max). Any thread, while the
 *  pipeline exists. @return 0; -EINVAL; -ENOENT (no such spawn term). */
WEIR_API int weir_pipeline_spawn_list(const weir_pipeline *p, const char *name,
                                      weir_spawn_info *out, size_t max, size_t *count);

static inline weir_term *weir_seq2(weir_term *a, weir_term *b)
{
    weir_term *t[2] = {a, b};
    return weir_seq(2, t);
}

static inline weir_term *weir_par2(weir_term *a, weir_term *b)
{
    weir_term *t[2] = {a, b};
    return weir_par(2, t);
}

/** WEIR_SEQ(a, b, c) and WEIR_PAR(a, b, c): any number of terms (>= 1).
 *  In C the list is a compound literal; C++ has none, so there it is an
 *  std::initializer_list (weir__seq_list below), whose array lives until the
 *  end of the full expression, as the literal does. */
#ifdef __cplusplus
#define WEIR_SEQ(...) weir__seq_list({__VA_ARGS__})
#define WEIR_PAR(...) weir__par_list({__VA_ARGS__})
#else
#define WEIR_SEQ(...)                                                                              \
    weir_seq(sizeof((weir_term *[]){__VA_ARGS__}) / sizeof(weir_term *),                           \
             (weir_term *[]){__VA_ARGS__})
#define WEIR_PAR(...)                                                                              \
    weir_par(sizeof((weir_term *[]){__VA_ARGS__}) / sizeof(weir_term *),                           \
             (weir_term *[]){__VA_ARGS__})
#endif

/* -------------------------------------------------------------- built-ins */

/** Source of `count` records of `size` bytes read from `base` (not copied:
 *  it must outlive the pipeline). With `size` WEIR_VARSIZE, `base` is an
 *  array of `count` weir_bytes whose bytes must outlive the pipeline too. */
WEIR_API weir_term *weir_array_source(const char *name, const void *base, size_t count,
                                      size_t size);

/** Source of int64_t records start, start+step, ... while < end (> end for a
 *  negative step). `step` != 0. */
WEIR_API weir_term *weir_range_source(const char *name, int64_t start, int64_t end, int64_t step);

/** Endless source of int64_t records start, start+1, ... (ends at stop). */
WEIR_API weir_term *weir_counter_source(const char *name, int64_t start);

/** The text capacity of a weir_line record. */
#define WEIR_LINE_TEXT 240

/** A record of weir_file_lines_fixed(): one line without its newline. Lines longer
 *  than WEIR_LINE_TEXT bytes are cut and flagged `truncated`. `text` is
 *  NUL-terminated when len < WEIR_LINE_TEXT. */
typedef struct weir_line {
    uint64_t number;    /**< 1-based line number */
    uint32_t len;       /**< bytes in text */
    uint32_t truncated; /**< 1 if the line was longer */
    char text[WEIR_LINE_TEXT];
} weir_line;

/** Blocking source of the lines of a file ("-" = standard input), each line
 *  whole as a variable-size record (WEIR_VARSIZE: a weir_bytes of the line's
 *  bytes without its newline). A CR before the newline is left as data (a
 *  CRLF file's lines end in a CR byte); empty lines are records of length 0; a
 *  last line without a newline is a line. A line longer than the stream's
 *  byte capacity (weir_pipeline_config.byte_capacity, default 1 MiB) fails
 *  the pipeline with -EMSGSIZE naming the term and the line number; nothing
 *  is ever cut. The lines of each 64 KiB read are published together.
 *  The file is opened when the pipeline starts; failing
 *  to open or read it is the pipeline's error. A wait that blocks is woken
 *  by stop, cancel and destroy: a read (stdin, a FIFO, a terminal) and also
 *  the wait for a FIFO's first writer (the path is opened non-blocking and
 *  the source then waits in poll(2) until a writer connects, so a FIFO
 *  nobody opens for writing never holds a pipeline up; a writer that comes
 *  late is read from the start, and the end of the file is when the writer
 *  closes it, as with a blocking open). The term comes with an interrupt
 *  function (weir_term_on_interrupt) and a self-pipe, created here (NULL
 *  with the errno when it cannot be). Signals caught by a handler installed
 *  without SA_RESTART are harmless: interrupted calls (EINTR) are retried. */
WEIR_API weir_term *weir_file_lines(const char *name, const char *path);

/** weir_file_lines() with fixed-size weir_line records: lines longer than
 *  WEIR_LINE_TEXT bytes are cut and flagged `truncated`, a CR before the
 *  newline is dropped, and each record carries its line number. */
WEIR_API weir_term *weir_file_lines_fixed(const char *name, const char *path);

/**
 * Splits variable-size records into tokens: every maximal run of bytes not
 * in `delims` is emitted as a variable-size record (in order; empty tokens
 * are not emitted). `delims` NULL: space, tab, CR, LF, VT and FF. With
 * " ", a file's lines give the words of tr -s ' ' (newline): tabs and CRs
 * stay in words.
 * The delimiter set is copied. WEIR_VARSIZE in and out.
 */
WEIR_API weir_term *weir_tokenize(const char *name, const char *delims);

/** Pass-through of `size`-byte records (LogicSponge's Id). */
WEIR_API weir_term *weir_id(const char *name, size_t size);

/** Writes one line to `f` for each record: `format(f, rec, arg)` or, with
 *  `format` NULL, the term name and the record in hex; passes the record on
 *  (LogicSponge's Print). Lines from one term are not interleaved. */
typedef void (*weir_format_fn)(FILE *f, const void *rec, void *arg);
WEIR_API weir_term *weir_print(const char *name, size_t size, FILE *f, weir_format_fn format,
                               void *arg);

/** Prepends a 0-based uint64_t index: output records are
 *  `{ uint64_t index; <input bytes> }`, size 8 + in_size (LogicSponge's
 *  AddIndex). */
WEIR_API weir_term *weir_add_index(const char *name, size_t in_size);

/**
 * A caller-owned, thread-safe growable array of records that collect sinks
 * append to (the seed's shared list under one lock). Pair
 * weir_collector_init() with weir_collector_deinit().
 */
typedef struct weir_collector {
    void *data; /**< `count` records of `size` bytes, in append order */
    size_t count;
    size_t size; /**< sizeof(weir_bytes) for a variable-size collector */
    size_t cap;
    void *weir__lock; /**< private */
    /** Made with WEIR_VARSIZE: `data` is an array of weir_bytes, each
     *  pointing to a copy the collector owns (NUL-terminated after `len`
     *  bytes, for convenience), freed by clear and deinit. */
    bool varsize;
} weir_collector;

/** @param c the collector to initialise
 *  @param size the record size, or WEIR_VARSIZE.
 *  @return 0, -EINVAL (size 0), -ENOMEM. */
WEIR_API int weir_collector_init(weir_collector *c, size_t size);
WEIR_API void weir_collector_deinit(weir_collector *c);
/** Forget the records (keeps the memory). */
WEIR_API void weir_collector_clear(weir_collector *c);

/** Sink appending every record to `c` (records of c->size bytes, or of any
 *  size for a WEIR_VARSIZE collector). */
WEIR_API weir_term *weir_collect(const char *name, weir_collector *c);

/** Running statistics over double records (Welford's algorithm). */
typedef struct weir_running {
    uint64_t n;   /**< records seen */
    double value; /**< the last input */
    double sum;
    double mean;
    /** sample standard deviation, divisor n - 1 (0 while n < 2); the
     *  population one is std * sqrt((n - 1) / n) */
    double std;
} weir_running;

/** double -> weir_running, one output per input. */
WEIR_API weir_term *weir_running_stats(const char *name);
/** double -> double: the running sum. */
WEIR_API weir_term *weir_sum(const char *name);
/** double -> double: the running mean. */
WEIR_API weir_term *weir_mean(const char *name);
/** double -> double: the running sample standard deviation, divisor n - 1
 *  (R's sd(), numpy.std(ddof=1)); 0 while n < 2. On 2, 4, 4, 4, 5, 5, 7, 9:
 *  2.138. */
WEIR_API weir_term *weir_std_sample(const char *name);
/** double -> double: the running population standard deviation, divisor n
 *  (numpy.std()'s default, and LogicSponge's Std); 0 for n = 1. On
 *  2, 4, 4, 4, 5, 5, 7, 9: 2.000. */
WEIR_API weir_term *weir_std_population(const char *name);
/** The same term as weir_std_sample() (kept for compatibility: weir_std
 *  always was the sample deviation). Prefer the explicit names. */
WEIR_API weir_term *weir_std(const char *name);

/* --------------------------------------------------------------- pipeline */

/** How a compiled pipeline runs. */
typedef enum weir_exec_mode {
    /** Every term is a batched task on the runtime's workers; linear runs of
     *  1-in/1-out terms (pull sources included) are fused into one task.
     *  Blocking sources get a dedicated thread. */
    WEIR_EXEC_POOL = 0,
    /** One OS thread per term, unfused, blocking bounded queues: the model the
     *  seed measured, as a baseline. The runtime may be NULL. */
    WEIR_EXEC_THREADS,
    /** Sources on dedicated threads; everything else as in POOL. */
    WEIR_EXEC_HYBRID,
} weir_exec_mode;

/** Called (on the worker that noticed) when a stage waited longer than the
 *  starvation threshold between being made runnable and running. Input
 *  starvations (stalled streams) are counted in the statistics, without a
 *  callback. */
typedef void (*weir_starvation_fn)(void *arg, const char *term, uint64_t waited_ns);

/**
 * Pipeline configuration, caller-owned. Fill with weir_pipeline_config_init(),
 * then change fields. Read (not kept) by weir_pipeline_create().
 */
typedef struct weir_pipeline_config {
    /** Records per activation (B). Default 256. */
    unsigned batch;
    /** Records per stream; rounded up to a power of two. Default 1024.
     *  capacity x record size must not exceed WEIR_MAX_STREAM_BYTES. */
    unsigned capacity;
    /** Bytes of each variable-size stream's byte ring (WEIR_VARSIZE), rounded
     *  up to a power of two, 64 .. WEIR_MAX_BYTE_CAPACITY; also the largest
     *  record such a stream carries. Default 1 MiB. Untouched pages of a
     *  large ring cost no memory. */
    uint64_t byte_capacity;
    weir_exec_mode mode;
    /** Measure the time of every activation (two clock reads each): the
     *  per-term `ns` statistics and starvation detection need it. Default on. */
    bool timing;
    /** Time each callback separately (two clock reads per record and term),
     *  so fused terms get their own `ns`. Default off. */
    bool profile;
    /** A pool job keeps running activations of its stage while they make
     *  progress, for up to this many ns, before it yields to the scheduler
     *  (0 = yield after every activation). Default 50 us. */
    uint64_t slice_ns;
    /** Starvation threshold in ns (0 = off): a stage runnable for longer
     *  without running, or a stream silent for longer while its consumers
     *  wait for input, counts as a starvation. Default 100 ms. */
    uint64_t starvation_ns;
    weir_starvation_fn on_starvation; /**< optional */
    void *starvation_arg;
    /** Print the term and stream tables to stderr at destroy. Default: the
     *  WEIR_STATS environment variable ("1"). */
    bool print_stats;
    /** Stack size of the threads the pipeline starts (0 = 256 KiB). */
    size_t thread_stack;
} weir_pipeline_config;

/** Defaults, plus WEIR_STATS and WEIR_EXEC (pool | threads | hybrid) from the
 *  environment (an invalid WEIR_EXEC is reported by weir_pipeline_create()). */
WEIR_API void weir_pipeline_config_init(weir_pipeline_config *cfg);

/** Parse "pool" / "threads" / "hybrid". @return 0 or -EINVAL. */
WEIR_API int weir_parse_exec_mode(const char *text, weir_exec_mode *out);
WEIR_API const char *weir_exec_mode_name(weir_exec_mode m);

/**
 * Compile `root` into a pipeline on `rt` (which may be NULL in THREADS mode).
 * Several pipelines may share a runtime.
 * @param rt the runtime the stages run on
 * @param root the term tree (owned by the pipeline on success)
 * @param cfg NULL for weir_pipeline_config_init() defaults.
 * @param out the new pipeline
 * @return 0 (the pipeline owns `root`); on failure the caller keeps `root`:
 *   -EINVAL  NULL argument, bad config field, a NULL child, an empty
 *            composite, a term with the wrong number of inputs (a source or
 *            zip-less term fed several streams, a function with none),
 *            a record size mismatch (the message names producer and consumer),
 *            two parallel outputs with the same name (names both branches),
 *            a term used twice in the tree;
 *   -EBUSY   `root` is a child of a composite or owned by another pipeline;
 *   -ESHUTDOWN `rt` is being destroyed, or was destroyed (the pipeline
 *            attaches to `rt`: see weir_runtime_attach());
 *   -ENOMEM.
 */
WEIR_API int weir_pipeline_create(weir_runtime *rt, weir_term *root,
                                  const weir_pipeline_config *cfg, weir_pipeline **out);

/**
 * Start running. @return 0; -EINVAL (NULL); -EALREADY (started before);
 * -EAGAIN (a thread could not be created: the pipeline is cancelled, join
 * returns the error); -ESHUTDOWN (the runtime is being destroyed).
 */
WEIR_API int weir_pipeline_start(weir_pipeline *p);

/**
 * Wait until every stage has finished.
 * @return 0 when every source ended and every record reached its sinks (a
 *   weir_pipeline_stop() included); the first callback error (see
 *   weir_pipeline_error()); -ECANCELED after weir_pipeline_cancel();
 *   -EINVAL (NULL or not started); -EDEADLK when called from a worker of the
 *   pipeline's runtime or from a callback. Joining again returns the same.
 */
WEIR_API int weir_pipeline_join(weir_pipeline *p);

/** Join with a timeout. @return as join, or -ETIMEDOUT. */
WEIR_API int weir_pipeline_join_for(weir_pipeline *p, uint64_t timeout_ns);

/** start + join. */
WEIR_API int weir_pipeline_run(weir_pipeline *p);

/**
 * Write the compiled stage graph of `p` to `f` in Graphviz DOT (render with
 * `dot -Tsvg`): one box per stage with its fused terms in order, one note
 * per stream with its capacity and record size, edges producer -> stream ->
 * each consumer. Any time between create and destroy, from any thread (it
 * reads only what compile fixed). For a buffer, pass open_memstream()'s FILE.
 * @return 0; -EINVAL (NULL argument); -EIO (a write to `f` failed).
 */
WEIR_API int weir_pipeline_dot(const weir_pipeline *p, FILE *f);

/**
 * Graceful stop: sources stop producing (a pull source is not called again; a
 * blocking source's emit returns -ECANCELED), and every record already
 * produced reaches the sinks exactly once. Returns at once; join waits.
 * @return 0; -EINVAL (NULL or not started). Stopping twice is fine.
 */
WEIR_API int weir_pipeline_stop(weir_pipeline *p);

/**
 * Cancel: drop records in flight; every stage finishes at its next
 * activation. Returns at once; join returns -ECANCELED (or an earlier
 * error). @return 0; -EINVAL (NULL or not started).
 */
WEIR_API int weir_pipeline_cancel(weir_pipeline *p);

/** Free a pipeline and its term tree. A running pipeline is cancelled and
 *  joined first, so this must not be called from one of its callbacks or
 *  from a worker while it runs. Prints the statistics when configured. NULL
 *  is ignored.
 *
 *  It may come before or after weir_runtime_destroy() of the pipeline's
 *  runtime: the pipeline is attached to it (weir_runtime_attach() in create)
 *  and detaches as the very last step here, which frees the runtime's handle
 *  when the runtime was destroyed first. A pipeline that was running when its
 *  runtime was destroyed has been failed with -ESHUTDOWN (join returns it);
 *  the statistics then say that the runtime was destroyed instead of showing
 *  its workers. With statistics on, it must not run concurrently with
 *  weir_runtime_destroy() (see weir_pipeline_print_stats()); without, it
 *  may, once the pipeline is not running (its detach and destroy's drop of
 *  the owner's reference may race). */
WEIR_API void weir_pipeline_destroy(weir_pipeline *p);

/** "term 'parse': callback returned -5 (Input/output error)" after a failure,
 *  "" otherwise. Valid until destroy. */
WEIR_API const char *weir_pipeline_error(const weir_pipeline *p);

/** Same as weir_last_error(): term-layer calls (constructors,
 *  weir_pipeline_create, ...) report through the thread's one message. Kept
 *  so that term-layer code reads naturally. */
WEIR_API const char *weir_terms_last_error(void);

/* ------------------------------------------------------------- monitoring */

typedef struct weir_term_stats {
    const char *name; /**< valid until destroy */
    const char *kind; /**< "source", "function", "map", "sink", ... */
    unsigned stage;   /**< fused terms share a stage */
    uint64_t records_in;
    uint64_t records_out;
    uint64_t activations; /**< activations of the term's stage */
    uint64_t ns;          /**< time in the stage's activations (shared by fused
                               terms); with cfg.profile, in this term's callbacks */
    uint64_t starvations; /**< waits above the threshold */
    uint64_t max_wait_ns; /**< longest runnable-to-running wait seen */
    /** Terms of a data-parallel stage (weir_parallel), else all 0: */
    unsigned width;         /**< replicas at once */
    unsigned in_flight;     /**< replicas running now */
    unsigned max_in_flight; /**< most replicas seen running at once */
    uint64_t batches;       /**< batches dispatched */
    uint64_t reorder_depth; /**< batches done, waiting for an earlier one */
    uint64_t max_reorder_depth;
    /** A shard of a weir_spawn term, else all 0: */
    uint64_t live;    /**< sub-pipelines alive now */
    uint64_t spawned; /**< sub-pipelines made so far */
    uint64_t ended;   /**< ... and ended (idle, evicted, end of input) */
} weir_term_stats;

typedef struct weir_stream_stats {
    const char *name; /**< the producing term */
    unsigned consumers;
    uint64_t capacity;
    uint64_t records;   /**< records published so far */
    uint64_t depth;     /**< records not yet consumed by the slowest consumer */
    uint64_t max_depth; /**< highest depth seen by the producer */
    /** Stalled now: not ended, a consumer has read everything, and nothing
     *  was published for longer than the config's starvation_ns (a full
     *  stream is backpressure, not a stall). */
    bool stalled;
    /** Silences of that kind so far, each counted once (while it lasts, by
     *  a statistics read, or when the producer publishes again): the input
     *  starvations of this stream's consumers. */
    uint64_t stalls;
    /** Variable-size streams (WEIR_VARSIZE), else all 0: */
    bool varsize;
    uint64_t byte_capacity;
    uint64_t bytes;          /**< payload bytes written (once, whatever the consumers) */
    uint64_t byte_depth;     /**< bytes held for the slowest consumer */
    uint64_t max_byte_depth; /**< highest byte depth seen by the producer */
} weir_stream_stats;

typedef struct weir_pipeline_stats {
    unsigned terms, stages, streams;
    unsigned threads; /**< OS threads the pipeline started */
    /** Starvations: waits longer than the config's starvation_ns, of two
     *  kinds. A stage runnable but not run (the sum of the terms'
     *  `starvations`, a wait in progress included), and a stage starved of
     *  input: `input_starvations`, which this sum includes. */
    uint64_t starvations;
    /** Silences of a stream's producer while its consumers had read
     *  everything (a blocking source stuck in its own I/O, a filter that
     *  drops everything): the sum of the streams' `stalls`. */
    uint64_t input_starvations;
    uint64_t activations; /**< sum over the stages */
    /** Streams stalled now (weir_stream_stats.stalled). */
    unsigned stalled_streams;
} weir_pipeline_stats;

/** Number of primitive terms (composites excluded), in tree order. */
WEIR_API unsigned weir_pipeline_term_count(const weir_pipeline *p);
/** @return 0 or -EINVAL (bad index). */
WEIR_API int weir_pipeline_term_stats(const weir_pipeline *p, unsigned i, weir_term_stats *out);
/** Index of the first term called `name`, or -ENOENT. */
WEIR_API int weir_pipeline_find_term(const weir_pipeline *p, const char *name);
WEIR_API unsigned weir_pipeline_stream_count(const weir_pipeline *p);
/** @return 0 or -EINVAL (bad index). */
WEIR_API int weir_pipeline_stream_stats(const weir_pipeline *p, unsigned i, weir_stream_stats *out);
WEIR_API void weir_pipeline_stats_get(const weir_pipeline *p, weir_pipeline_stats *out);
/** The WEIR_STATS=1 output: terms, streams, and the runtime's per-worker
 *  utilisation (busy / (busy + idle), runtime-wide); once the runtime's
 *  destroy has begun, a line that says so instead. The utilisation reads the
 *  runtime's workers: not concurrently with weir_runtime_destroy() (before or
 *  after it is fine). */
WEIR_API void weir_pipeline_print_stats(const weir_pipeline *p, FILE *f);

#ifdef __cplusplus
}

#include <initializer_list>

/* The C++ form of WEIR_SEQ / WEIR_PAR (see there). */
static inline weir_term *weir__seq_list(std::initializer_list<weir_term *> terms)
{
    return weir_seq(terms.size(), terms.begin());
}
static inline weir_term *weir__par_list(std::initializer_list<weir_term *> terms)
{
    return weir_par(terms.size(), terms.begin());
}
#endif
#endif /* WEIR_TERMS_H */
