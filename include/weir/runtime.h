/*
 * weir — the work-stealing runtime.
 *
 *   weir_config cfg;
 *   weir_config_init(&cfg);
 *   if (weir_config_from_env(&cfg) < 0) { fprintf(stderr, "%s\n", weir_last_error()); ... }
 *   weir_runtime *rt;
 *   int err = weir_runtime_create(&cfg, &rt);    // pair with weir_runtime_destroy()
 *   ...  fib_run(rt, 35) / weir_submit(rt, &job) ...
 *   weir_runtime_destroy(rt);
 *
 * Thread safety: create/destroy from one thread; everything else from any
 * thread, including the workers themselves, unless said otherwise. A call
 * that runs concurrently with destroy is a misuse, except
 * weir_runtime_stopping(), weir_runtime_self(), weir_runtime_workers(),
 * weir_runtime_detach(), weir_runtime_attach() by a caller that holds an
 * attachment, and weir_submit() (-ESHUTDOWN once destroy has begun; a job
 * it accepted runs before destroy returns: the drain waits for submits in
 * flight): what the term layer's threads call, on a handle
 * their pipeline's attachment keeps.
 *
 * Lifetime: a layer that keeps a pointer to the runtime attaches
 * (weir_runtime_attach); the handle stays valid until the last detach, even
 * after weir_runtime_destroy(), which then leaves a destroyed handle whose
 * calls return -ESHUTDOWN or a neutral value.
 */
#ifndef WEIR_RUNTIME_H
#define WEIR_RUNTIME_H

#include <stdbool.h>
#include <stdio.h>

#include "common.h"
#include "config.h"
#include "stats.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weir_runtime weir_runtime;
typedef struct weir_worker weir_worker;

/**
 * Start a runtime: plan the placement, start and pin the workers, allocate
 * their deques on their NUMA nodes.
 * @param cfg  configuration, or NULL for defaults + environment
 *             (weir_config_init() then weir_config_from_env()).
 * @param out  receives the runtime.
 * @return 0; -EINVAL for an invalid config or environment variable (message in
 *         weir_last_error()); -ENOMEM when memory runs out; -EAGAIN when a worker
 *         thread cannot be created; -ENODEV when the topology cannot be loaded.
 *         On failure nothing is left running and *out is untouched.
 */
WEIR_API int weir_runtime_create(const weir_config *cfg, weir_runtime **out);

/**
 * Stop and join the workers and free the runtime. Detached jobs still queued
 * are run before the workers stop (destroy drains). Prints the statistics
 * table when the config asked for it (WEIR_STATS=1). Must not be called from a
 * worker of `rt` (refused, with a line on stderr and a message in
 * weir_last_error()).
 *
 * Layers attached to `rt` (weir_runtime_attach(); every pipeline created on
 * it) may outlive it: destroy then does all of the above (workers stopped,
 * joined and freed with their deques, the topology and the plan freed) but
 * keeps the handle itself -- a small struct -- marked destroyed, and the last
 * weir_runtime_detach() frees it. A pipeline still running is failed with
 * -ESHUTDOWN (its join returns it) so that the drain ends; the pipeline may be
 * joined and destroyed afterwards.
 *
 * Destroying twice is a misuse. While the first destroy runs, or while an
 * attachment keeps the handle alive, the second call is refused (a line on
 * stderr; weir_last_error() says the runtime is already destroyed or being
 * destroyed); otherwise it is a use after free. NULL is ignored.
 */
WEIR_API void weir_runtime_destroy(weir_runtime *rt);

/**
 * Attach a layer to `rt`: for code built on the runtime that keeps a pointer
 * to it (the term layer's pipelines attach in weir_pipeline_create()). The
 * handle stays valid until the last detach, even if weir_runtime_destroy()
 * runs before it: calls on a destroyed handle return -ESHUTDOWN (message set)
 * or a neutral value (weir_runtime_workers() 0, weir_runtime_stopping() true,
 * weir_runtime_self() NULL, zeroed totals), and never touch freed memory.
 * Pair with weir_runtime_detach(). Allocates nothing.
 *
 * The caller must hold a valid handle: call it before weir_runtime_destroy()
 * (ordered by the caller), or while holding an attachment of its own. Any
 * thread.
 * @return 0; -EINVAL for NULL; -ESHUTDOWN once weir_runtime_destroy() has
 *         begun (nothing is attached then). An attach that races with the
 *         beginning of destroy may succeed: the layer then sees
 *         weir_runtime_stopping().
 */
WEIR_API int weir_runtime_attach(weir_runtime *rt);

/**
 * Drop an attachment taken with weir_runtime_attach(). The last detach after
 * weir_runtime_destroy() frees the handle: it is the caller's last access to
 * `rt`. Any thread, concurrently with destroy too. A detach without a matching
 * attach is a misuse; when it would free a runtime that was not destroyed it
 * is refused (a line on stderr, a message in weir_last_error()). NULL is
 * ignored.
 */
WEIR_API void weir_runtime_detach(weir_runtime *rt);

/** True once weir_runtime_destroy() has begun (and after it, on a handle an
 *  attachment keeps): layers built on the runtime (the term layer) use it to
 *  stop rescheduling work so that destroy's drain ends. */
WEIR_API bool weir_runtime_stopping(const weir_runtime *rt);

/** Number of workers (0 for NULL or a destroyed runtime). */
WEIR_API unsigned weir_runtime_workers(const weir_runtime *rt);

/** Where a worker was placed. */
typedef struct weir_worker_info {
    int pu;        /**< OS index of the PU it is pinned to, -1 if not pinned */
    int numa_node; /**< OS index of its NUMA node, -1 if unknown */
    int l3;        /**< logical index of its L3 cache, -1 if unknown */
    int pinned;    /**< 1 if the pin succeeded */
} weir_worker_info;

/** @return 0; -EINVAL for NULL or a bad index; -ESHUTDOWN for a destroyed
 *  runtime. */
WEIR_API int weir_runtime_worker_info(const weir_runtime *rt, unsigned worker,
                                      weir_worker_info *info);

/** Number of workers whose pin failed (reported, never fatal); 0 for a
 *  destroyed runtime. */
WEIR_API unsigned weir_runtime_failed_pins(const weir_runtime *rt);

/**
 * Copy the counters of worker `worker` into `out` (see stats.h for the
 * definitions). @return 0; -EINVAL for NULL or a bad index; -ESHUTDOWN for a
 * destroyed runtime.
 */
WEIR_API int weir_runtime_stats(const weir_runtime *rt, unsigned worker, weir_worker_stats *out);

/** Sum of all workers' counters (zeros for a destroyed runtime). */
WEIR_API void weir_runtime_stats_total(const weir_runtime *rt, weir_worker_stats *out);

/** Start counting afresh: later snapshots report what happened since this
 *  call. Safe while workers run (it records a base per worker instead of
 *  writing their counters); a snapshot taken concurrently with a reset may mix
 *  the old and the new base. The bases are taken counter by counter, so a
 *  steal in flight during the reset may count its outcome and not its attempt
 *  (or the reverse): reset a quiet runtime where related counters must agree
 *  exactly. No-op on a destroyed runtime. */
WEIR_API void weir_runtime_stats_reset(weir_runtime *rt);

/** Print the per-worker statistics table (the WEIR_STATS=1 output) to `f`;
 *  for a destroyed runtime, one line that says so. */
WEIR_API void weir_runtime_print_stats(const weir_runtime *rt, FILE *f);

/**
 * Describe `rt` as WEIR_DISPLAY_ENV=1 does: the version, the topology and
 * allowed PUs, the resolved configuration with where each value came from
 * (default, config or environment), and the placement table: worker, PU,
 * NUMA node, L3, pinned, and its victims nearest first. Several lines, each
 * ending in a newline, like snprintf: at most `len` bytes are written to
 * `buf`, always NUL-terminated when `len` > 0; the return value is the
 * length of the whole text, so a larger buffer can be tried.
 * Not concurrently with weir_runtime_destroy().
 * @return the length; -EINVAL for NULL `rt` (or NULL `buf` with `len` > 0);
 *         -ESHUTDOWN for a destroyed runtime.
 */
WEIR_API int weir_runtime_describe(const weir_runtime *rt, char *buf, size_t len);

/** weir_runtime_describe() written to `f`. @return 0; -EINVAL for NULL;
 *  -ESHUTDOWN for a destroyed runtime. */
WEIR_API int weir_runtime_print_description(const weir_runtime *rt, FILE *f);

/** The worker running the calling thread if it is a worker of `rt`, else NULL. */
WEIR_API weir_worker *weir_runtime_self(const weir_runtime *rt);

/** The runtime a worker belongs to. */
WEIR_API weir_runtime *weir_worker_runtime(const weir_worker *w);

/** Index of a worker in its runtime (0..workers-1). */
WEIR_API unsigned weir_worker_index(const weir_worker *w);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_RUNTIME_H */
