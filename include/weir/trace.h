/*
 * weir — tracing to a Chrome trace-event JSON file (opens in Perfetto,
 * ui.perfetto.dev, and chrome://tracing).
 *
 *   WEIR_TRACE=run.json ./program        the first runtime created while no
 *                                        trace runs traces from the end of its
 *                                        create to its destroy
 *   weir_trace_start("run.json"); ...; weir_trace_stop();   the same, by hand
 *
 * What the file holds: one track (thread) per worker ("worker N") with a
 * complete event for every job it ran ("job"), every fork-join root it ran
 * ("fork-join root") and every term activation ("stage: a * b", the fused
 * terms of the stage, nested in its job), instant events for steals
 * ("steal", args.victim) and parks ("park"), one counter per stream with its
 * depth after each activation of its producer ("depth <stream>"), and a
 * track of their own for threads the term layer starts (blocking sources,
 * threads mode: "thread <stage>"). Timestamps are microseconds since the
 * start of the trace (CLOCK_MONOTONIC).
 *
 * Buffers are per thread and bounded (WEIR_TRACE_EVENTS events per thread,
 * default 262144; 64 bytes an event); events past the bound are dropped and
 * counted ("otherData": {"dropped_events": N}). Nothing is written while the
 * trace runs: the file is written by weir_trace_stop(), or for WEIR_TRACE by
 * the destroy of the runtime whose create started it.
 *
 * Cost when off: the runtime's hot paths test one global flag (a relaxed
 * load, predicted not taken); the term layer calls weir_trace_enabled() once
 * per activation.
 *
 * | function                  | thread safety                                   |
 * |---------------------------|-------------------------------------------------|
 * | weir_trace_start / _stop  | any thread; serialised by a lock                |
 * | weir_trace_begin/_end/... | any thread, each on its own track               |
 * | weir_trace_enabled        | any thread                                      |
 */
#ifndef WEIR_TRACE_H
#define WEIR_TRACE_H

#include <stdbool.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Start tracing every thread of the process into per-thread buffers, to be
 * written to `path` by weir_trace_stop(). The file is created (truncated)
 * now, so that a bad path fails here.
 * @return 0; -EINVAL (path NULL or empty); -EALREADY (a trace is running);
 *         -errno of fopen(); -ENOMEM.
 */
WEIR_API int weir_trace_start(const char *path);

/**
 * Stop tracing and write the file. Events that other threads record while
 * stop runs are dropped, never torn.
 * @return 0; -EINVAL (no trace running); -EIO (a write failed); -ENOMEM.
 */
WEIR_API int weir_trace_stop(void);

/** Is a trace running? (a relaxed load: a hint for skipping work) */
WEIR_API bool weir_trace_enabled(void);

/** Open a complete event named `name` on the calling thread's track (at most
 *  16 open at once a thread; `name` is copied, up to 38 bytes). */
WEIR_API void weir_trace_begin(const char *name);
/** Close the innermost event opened by weir_trace_begin() on this thread. */
WEIR_API void weir_trace_end(void);
/** An instant event on the calling thread's track. */
WEIR_API void weir_trace_instant(const char *name);
/** A counter sample: the counter track `name` takes `value` now. */
WEIR_API void weir_trace_counter(const char *name, double value);
/** Name the calling thread's track (kept for the thread's life; workers are
 *  named "worker N" by the runtime). `name` is copied, up to 47 bytes. */
WEIR_API void weir_trace_thread_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_TRACE_H */
