/*
 * weir runtime — the tracing hooks of the scheduler (runtime/trace.c).
 * Every hook sits behind weir__tracing(), one relaxed load of a global flag.
 */
#ifndef WEIR_RUNTIME_TRACING_H
#define WEIR_RUNTIME_TRACING_H

#include <stdatomic.h>
#include <stdbool.h>

#include "weir.h"

extern _Atomic int weir__trace_on;

static inline bool weir__tracing(void)
{
    /* relaxed: a hint; a recorder re-checks under its buffer's busy flag */
    return WEIR_UNLIKELY(atomic_load_explicit(&weir__trace_on, memory_order_relaxed) != 0);
}

/* Run a job inside a complete event "job". */
void weir__trace_job(weir_worker *w, weir_job *job);
/* Run a fork-join root frame inside a complete event "fork-join root". */
void weir__trace_root(weir_worker *w, weir_frame *sp, weir_frame *root);
/* Instant "steal" with the victim's index. */
void weir__trace_steal(unsigned victim);
/* WEIR_TRACE: start a trace at the first create that finds it set; `owner`
 * is the runtime whose destroy stops it. */
void weir__trace_env_start(const void *owner);
void weir__trace_env_stop(const void *owner);

#endif /* WEIR_RUNTIME_TRACING_H */
