/*
 * weir — Redis Streams source and sink (built when the `redis` Meson feature
 * found hiredis; include <weir/redis.h>, which is installed only then).
 *
 * Beyond one machine: N weir processes share one stream through a Redis
 * consumer group, each reading its part (XREADGROUP), and a process killed
 * mid-run loses nothing: the entries it read but had not finished stay
 * pending in the group, and the survivors claim them (XAUTOCLAIM) once they
 * have been idle for longer than the claim time. With checkpoints on, the
 * source acknowledges an entry (XACK) only after a checkpoint barrier
 * injected after it has passed every sink of the pipeline (see
 * "checkpoints" in weir/terms.h): everything derived from the entry reached
 * every sink first, so delivery is at least once across crashes. See
 * docs/scaling.md for the deployment, the guarantees and the figures.
 *
 * Records. The source emits one variable-size record (WEIR_VARSIZE) per
 * stream entry, in the *entry layout*, every integer a little-endian uint32,
 * no padding:
 *
 *   u32 id_len | id (id_len bytes, e.g. "1700000000000-0")
 *   u32 npairs | npairs x ( u32 field_len | field | u32 value_len | value )
 *
 * The pairs come in the entry's order (Redis keeps the order of XADD;
 * a field may repeat). Read a record with weir_redis_entry_id(),
 * weir_redis_field() or an iterator (weir_redis_iter_init(),
 * weir_redis_iter_next()); build one with weir_redis_writer_init() /
 * _add() / _finish() (into a weir_emit_reserve() buffer, say). The sink
 * writes either the whole record as one field (WEIR_REDIS_SINK_BYTES) or
 * the pairs of a record in the entry layout (WEIR_REDIS_SINK_ENTRY).
 *
 * Addresses. `redis://[:password@]host[:port][/db]` (port 6379 by default,
 * db 0) or `unix:/path/to/socket` (also `unix:///path`). A password may come
 * from the environment instead (the config's password_env names the
 * variable; it wins over one in the URL). Errors name the address without
 * the password.
 *
 * Connections and failures. Each term has its own connection, opened when
 * the pipeline runs (the source on its thread as it starts, the sink at its
 * first record). A server that cannot be reached then is the pipeline's
 * error at once: "term 'src': cannot connect to redis at 127.0.0.1:6390:
 * Connection refused". A connection lost later is reopened with an
 * exponential backoff (50 ms doubling, at most 1 s apart) for up to
 * retry_ms; after that the pipeline fails with an error naming the term,
 * the address and the last cause. Every reply is awaited for at most
 * timeout_ms (beyond the read's BLOCK time), so a server that stops
 * answering counts as a lost connection: nothing hangs.
 *
 * SIGPIPE. A write to a connection the server closed raises SIGPIPE, whose
 * default action kills the process. The terms block SIGPIPE on the calling
 * thread around each of their writes and consume the one a failed write
 * raised (as libpq does), so they neither die of it nor change the
 * process's signal dispositions.
 *
 * hiredis allocates with malloc(3), outside weir_set_allocator().
 *
 * Thread safety:
 * | operation                           | who may call     | concurrently with     |
 * |-------------------------------------|------------------|-----------------------|
 * | *_config_init, the constructors     | any thread       | anything (own config) |
 * | entry readers, iterator, writer     | any thread       | anything (own record) |
 * | the terms' callbacks                | weir (see terms.h)| -                    |
 */
#ifndef WEIR_REDIS_H
#define WEIR_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "terms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ the source */

/** Options of weir_redis_source(); fill with weir_redis_source_config_init(),
 *  then set at least `stream` and `group`. The strings are copied by the
 *  constructor. */
typedef struct weir_redis_source_config {
    /** Server address (see the top of this header). Default
     *  "redis://127.0.0.1:6379". */
    const char *url;
    /** Name of an environment variable holding the password (read when the
     *  source connects), or NULL. */
    const char *password_env;
    const char *stream; /**< the stream key (required) */
    /** The consumer group (required). Created with XGROUP CREATE ... MKSTREAM
     *  when missing (a group that exists is used as it is). */
    const char *group;
    /** Where a group created here starts: "0" (default: every entry of the
     *  stream) or "$" (only entries added from now on). */
    const char *group_start;
    /** This consumer's name in the group; NULL: "<hostname>-<pid>". Two
     *  live sources must not share a name. A source restarted under the
     *  same name first re-reads the entries it left pending. */
    const char *consumer;
    /** Entries per read (XREADGROUP COUNT, XAUTOCLAIM COUNT). Default 128. */
    unsigned batch;
    /** How long the stream may stay silent before the source treats it as
     *  quiet (with checkpoints: a barrier for what it emitted since the last
     *  one). Reads wait in XREADGROUP BLOCK slices of min(block_ms, 100) ms,
     *  between which the source sees a stop, injects time-based barriers,
     *  claims and acknowledges. 1..3600000; default 1000. */
    unsigned block_ms;
    /** Claim entries pending for longer than this in the group, whichever
     *  consumer holds them (XAUTOCLAIM): at start, then every
     *  claim_every_ms. 0 = never claim. Default 30000. Keep it well above
     *  the longest time an entry may take to pass the pipeline, or live
     *  consumers' entries are claimed too (duplicates, never losses). */
    uint64_t claim_idle_ms;
    /** Period of the claims during the run; 0 (default) = claim_idle_ms / 2. */
    uint64_t claim_every_ms;
    /** Checkpoints: a barrier after every this many entries (0 = not by
     *  count). With checkpoints on (this or checkpoint_ms), entries are
     *  acknowledged only when a barrier after them completed (at least
     *  once); a read that finds no new entry also injects a barrier for the
     *  entries emitted since the last one, so a quiet stream leaves nothing
     *  unacknowledged for long. Without checkpoints the source reads with
     *  NOACK: the server treats entries as acknowledged when they are
     *  delivered (at most once: a crash loses the entries in flight), and
     *  the claimed ones are acknowledged right after they were emitted. */
    uint64_t checkpoint_every;
    /** Checkpoints: a barrier at least this often (ms) while entries were
     *  emitted since the last one (0 = not by time). */
    uint64_t checkpoint_ms;
    /** Without checkpoints only: read without NOACK and acknowledge each
     *  batch (XACK) once it was emitted into the pipeline. Still at most
     *  once for what the pipeline holds, but entries read and not yet
     *  emitted when the process dies stay pending (and are claimed), and the
     *  group's XPENDING shows the reads in progress. Default false (NOACK). */
    bool ack_after_emit;
    /** End the source (its stream ends: the pipeline drains and finishes)
     *  when it read or claimed nothing for this long and no other consumer
     *  of the group holds pending entries (XPENDING). With checkpoints, a
     *  last barrier is injected and awaited first, so every entry is
     *  acknowledged when the source ends. 0 (default) = run until stopped. */
    uint64_t end_idle_ms;
    /** End after this many entries (then as end_idle_ms: a last barrier,
     *  awaited). 0 (default) = no limit. */
    uint64_t max_entries;
    /** Bound on the connect(2), in ms. Default 2000. */
    uint64_t connect_timeout_ms;
    /** Bound on each reply, beyond a read's BLOCK time, in ms. Default 5000. */
    uint64_t timeout_ms;
    /** Reconnect for this long after a lost connection (0 = fail at once).
     *  Default 10000. */
    uint64_t retry_ms;
    /** After a stop, wait up to this long for the barriers in flight to
     *  complete, acknowledging their entries (entries after the last
     *  barrier stay pending and are claimed later: duplicates, not
     *  losses). A cancel completes no barrier: join then waits this long
     *  at most, when barriers were in flight. Default 1000. */
    uint64_t drain_ms;
} weir_redis_source_config;

/** The defaults above (url "redis://127.0.0.1:6379", group_start "0", no
 *  stream or group). */
WEIR_API void weir_redis_source_config_init(weir_redis_source_config *cfg);

/**
 * A blocking source (its own thread) of the entries of one Redis stream,
 * read through a consumer group: one variable-size record per entry in the
 * entry layout (see the top), in the order the server delivers them.
 *
 * As it starts: connect (an unreachable server fails the pipeline at once,
 * naming the term and the address), create the group if missing, re-read
 * the consumer's own pending entries (a restart), claim the entries other
 * consumers left pending for longer than claim_idle_ms (an XAUTOCLAIM loop
 * until its cursor returns to 0-0). Then read new entries (XREADGROUP ... >)
 * until stopped, claiming again every claim_every_ms. Stop, cancel and
 * destroy wake a read at once (an interrupt function and a self-pipe).
 * With checkpoints the term is a checkpointing source
 * (weir_term_on_checkpoint()): it injects barriers as configured, and when
 * barrier k completes it acknowledges every entry emitted before it, in one
 * XACK (several for more than 4096 ids). An entry that could not be emitted
 * (a stop) is never acknowledged by this source.
 *
 * Errors (weir_pipeline_join(); weir_pipeline_error() names the term, the
 * address and the cause): the connect's errno at start (-ECONNREFUSED,
 * -ENOENT for a missing socket, -ETIMEDOUT, -EHOSTUNREACH for a name that
 * does not resolve); -EACCES (AUTH refused); -EINVAL (password_env names an
 * unset variable); -ENOTCONN (the connection was lost and not regained
 * within retry_ms); -EPROTO (an error reply, e.g. the group was destroyed,
 * or a malformed one); -EMSGSIZE (an entry larger than the stream's byte
 * capacity); -ENOMEM.
 *
 * Do not attach a free function (weir_term_on_free()): the term frees its
 * own state.
 * @param name the term's name (NULL: a generated unique one)
 * @param cfg the options (copied)
 * @return the term; NULL (weir_last_error() says why): -EINVAL (NULL cfg,
 *   no stream or group, a bad URL, batch 0, a block_ms above 1 h),
 *   -ENOMEM, or the errno of the self-pipe.
 */
WEIR_API weir_term *weir_redis_source(const char *name, const weir_redis_source_config *cfg);

/* -------------------------------------------------------------- the sink */

/** What the sink writes of each record. */
typedef enum weir_redis_sink_format {
    /** The record's bytes as the value of one field (default "data"). */
    WEIR_REDIS_SINK_BYTES = 0,
    /** The record is in the entry layout: its pairs become the new entry's
     *  fields (its id is ignored: the server assigns one). A record that is
     *  not in the layout fails the pipeline (-EINVAL). */
    WEIR_REDIS_SINK_ENTRY = 1,
} weir_redis_sink_format;

/** Options of weir_redis_sink(); fill with weir_redis_sink_config_init(),
 *  then set at least `stream`. The strings are copied. */
typedef struct weir_redis_sink_config {
    const char *url;               /**< as the source's; default "redis://127.0.0.1:6379" */
    const char *password_env;      /**< as the source's */
    const char *stream;            /**< the stream key (required) */
    weir_redis_sink_format format; /**< default WEIR_REDIS_SINK_BYTES */
    const char *field;             /**< WEIR_REDIS_SINK_BYTES: the field's name; default "data" */
    /** Trim the stream to about this many entries (XADD MAXLEN ~ n); 0
     *  (default) = no trimming. */
    uint64_t maxlen;
    /** Commands sent before their replies are collected (pipelining).
     *  Default 256. The records of each call are sent at its end; replies
     *  are also collected at every barrier and at the end of the input. */
    unsigned pipeline;
    uint64_t connect_timeout_ms; /**< as the source's; default 2000 */
    uint64_t timeout_ms;         /**< bound on each reply; default 5000 */
    /** Reconnect for this long after a lost connection, then fail; the
     *  commands whose replies had not come are sent again (they may have
     *  been applied: duplicates, never losses). Default 10000. */
    uint64_t retry_ms;
} weir_redis_sink_config;

/** The defaults above. */
WEIR_API void weir_redis_sink_config_init(weir_redis_sink_config *cfg);

/**
 * A sink appending each variable-size record to a Redis stream (XADD,
 * pipelined: see `pipeline`), in record order. A barrier reaching the sink
 * (weir_term_on_barrier()) and the end of its input collect every reply
 * outstanding before they pass, so a checkpoint completes only after the
 * server stored every record before it. An error reply (a wrong type, an
 * out-of-memory server) fails the pipeline with the server's message.
 * The callbacks do network I/O on the thread that runs the sink (a worker in
 * the pool mode): a flush waits for a round trip, a lost connection for up
 * to retry_ms.
 *
 * Errors (join): a sink callback has no weir_emit to attach a message to,
 * so weir_pipeline_error() names the term and the errno, one per cause: the
 * connect's errno at the first record (-ECONNREFUSED, ...); -EACCES (AUTH
 * refused); -EINVAL (password_env unset, or an ENTRY record that is not in
 * the layout or has no pair); -ENOTCONN (lost, not regained within
 * retry_ms); -EREMOTEIO (an error reply to an XADD: a key of another type,
 * a server out of memory); -ENOMEM.
 *
 * Do not attach a free, finish or barrier function: the term has its own.
 * @return the term; NULL (weir_last_error()): -EINVAL (NULL cfg, no stream,
 *   a bad URL, an empty field name, a bad format), -ENOMEM.
 */
WEIR_API weir_term *weir_redis_sink(const char *name, const weir_redis_sink_config *cfg);

/* ------------------------------------------------------ the entry layout */

/** The id of an entry-layout record: `*len` bytes at `*id` (not
 *  NUL-terminated), in place in the record.
 *  @return 0; -EINVAL (NULL argument, or the record is not in the layout). */
WEIR_API int weir_redis_entry_id(const weir_bytes *rec, const char **id, size_t *len);

/** The value of the first pair whose field is `field` (a C string), in place.
 *  @return 0; -ENOENT (no such field); -EINVAL (NULL argument, or not in
 *  the layout). */
WEIR_API int weir_redis_field(const weir_bytes *rec, const char *field, const void **val,
                              size_t *len);

/** An iterator over the pairs of an entry-layout record. Caller-owned; no
 *  deinit. */
typedef struct weir_redis_iter {
    const unsigned char *weir__p;   /**< private */
    const unsigned char *weir__end; /**< private */
    uint32_t weir__left;            /**< private */
    uint32_t npairs;                /**< the record's pair count */
} weir_redis_iter;

/** Start iterating over `rec`'s pairs (checks the header).
 *  @return 0; -EINVAL (NULL argument, or not in the layout). */
WEIR_API int weir_redis_iter_init(weir_redis_iter *it, const weir_bytes *rec);

/** The next pair, in place in the record.
 *  @return 1 (a pair); 0 (no more pairs, and the record ends there);
 *  -EINVAL (the record is cut or has bytes after its last pair). */
WEIR_API int weir_redis_iter_next(weir_redis_iter *it, weir_bytes *field, weir_bytes *value);

/** Builds an entry-layout record into a caller's buffer. Caller-owned; no
 *  deinit. */
typedef struct weir_redis_writer {
    unsigned char *weir__buf; /**< private */
    size_t weir__cap;         /**< private */
    size_t len;               /**< bytes the record needs so far */
    uint32_t npairs;          /**< pairs added so far */
} weir_redis_writer;

/** Begin a record with the given id (`id_len` bytes; 0 for none) in the
 *  `cap` bytes at `buf` (which may be too small: see _finish). */
WEIR_API void weir_redis_writer_init(weir_redis_writer *w, void *buf, size_t cap, const char *id,
                                     size_t id_len);

/** Append a pair (bytes of any value; copied when they fit). */
WEIR_API void weir_redis_writer_add(weir_redis_writer *w, const void *field, size_t field_len,
                                    const void *value, size_t value_len);

/** Finish the record: `*len` receives its size, whether or not it fit.
 *  @return 0; -EMSGSIZE (it needs `*len` bytes, more than `cap`: retry with
 *  a larger buffer); -EOVERFLOW (a length above UINT32_MAX). */
WEIR_API int weir_redis_writer_finish(weir_redis_writer *w, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_REDIS_H */
