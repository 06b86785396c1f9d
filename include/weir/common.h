/*
 * weir — common definitions: error codes, visibility, version.
 *
 * Every fallible control call returns 0 or a negative errno value
 * (-EINVAL, -ENOMEM, -EBUSY, ...). weir_strerror() turns a code into text;
 * weir_last_error() returns the message of the last failure on the calling
 * thread, which names the offending field, value or term.
 */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Atomics in the public headers, for C11 and C++ alike. In C a field is
 * `_Atomic T`; in C++ (which has no _Atomic before C++23) it is
 * `std::atomic<T>`, which has the same size, alignment and lock-free
 * representation for the integer types weir uses (checked below), so a C++
 * program and the C library agree on every struct's layout. The inline
 * functions of the headers use WEIR__LOAD / WEIR__STORE, which expand to the
 * C11 generic functions or to std::atomic's members.
 */
#ifdef __cplusplus
#include <atomic>
#define WEIR_ATOMIC(T)                 std::atomic<T>
#define WEIR__LOAD(p, order)           ((p)->load(std::memory_order_##order))
#define WEIR__STORE(p, v, order)       ((p)->store((v), std::memory_order_##order))
#define WEIR__STATIC_ASSERT(cond, msg) static_assert(cond, msg)
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  sizeof(std::atomic<int32_t>) == sizeof(int32_t) &&
                  sizeof(std::atomic<uint64_t>) == sizeof(uint64_t) &&
                  sizeof(std::atomic<uintptr_t>) == sizeof(uintptr_t),
              "weir: std::atomic<T> must have the layout of C11 _Atomic T");
static_assert(std::atomic<uint64_t>::is_always_lock_free &&
                  std::atomic<uintptr_t>::is_always_lock_free,
              "weir: the shared atomics must be lock-free to match the C library");
#else
#include <stdatomic.h>
#define WEIR_ATOMIC(T)                 _Atomic T
#define WEIR__LOAD(p, order)           atomic_load_explicit((p), memory_order_##order)
#define WEIR__STORE(p, v, order)       atomic_store_explicit((p), (v), memory_order_##order)
#define WEIR__STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEIR_BUILDING) && defined(__GNUC__)
#define WEIR_API __attribute__((visibility("default")))
#else
#define WEIR_API
#endif

#if defined(__GNUC__)
#define WEIR_LIKELY(x)   __builtin_expect(!!(x), 1)
#define WEIR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define WEIR_LIKELY(x)   (x)
#define WEIR_UNLIKELY(x) (x)
#endif

/* The version of the headers: WEIR_VERSION_MAJOR, _MINOR, _PATCH, _STRING
 * and _NUMBER, generated from the Meson project version. */
#include "weir/version.h"

/**
 * The version of the library linked, "MAJOR.MINOR.PATCH" (WEIR_VERSION_STRING
 * when the headers and the library come from the same build). Never NULL.
 */
WEIR_API const char *weir_version(void);

/** The size of a cache line on the targets weir is tuned for. */
#define WEIR_CACHELINE 64

/**
 * Text for an error code returned by any weir call (0 or a negative errno).
 * Never returns NULL; unknown codes give "unknown error".
 */
WEIR_API const char *weir_strerror(int err);

/**
 * The message of the last failed weir call on this thread, e.g.
 * "WEIR_WORKERS: invalid value 'abc' (expected an integer 0..4096)".
 * Empty string when no call has failed yet. The pointer stays valid until
 * the next failing weir call on the same thread.
 */
WEIR_API const char *weir_last_error(void);

/** Forget the last error message of this thread. */
WEIR_API void weir_clear_error(void);

/**
 * Set this thread's last-error message (printf-style) and return `err`, so
 * that code layered on weir (the term layer, user extensions) reports through
 * the same weir_last_error(): `return weir_set_error(-EINVAL, "...", ...);`.
 */
WEIR_API int weir_set_error(int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- log */

/** How serious a line of weir's log is. */
typedef enum weir_log_level {
    WEIR_LOG_FATAL = 0, /**< the process is about to abort (a frame deque that cannot grow) */
    WEIR_LOG_ERROR,     /**< reserved for failures nobody else will report */
    WEIR_LOG_WARNING,   /**< a fallback (a failed pin) or an ignored misuse */
    WEIR_LOG_INFO,      /**< what was asked for: the WEIR_DISPLAY_ENV report */
} weir_log_level;

/**
 * A log sink. `msg` is the text without a "weir: " prefix and without a
 * trailing newline (an info report spans several lines); it is valid only
 * during the call. Called from whichever thread logs (workers included), so
 * it must be thread-safe, and it must not call back into the runtime that
 * logs (a warning may come from inside weir_runtime_create()).
 */
typedef void (*weir_log_fn)(weir_log_level level, const char *msg, void *ctx);

/**
 * Route weir's log through `fn` (NULL restores the default: each line
 * written to stderr as "weir: <level>: <msg>", an info report as it is).
 * Global to the process; any thread, at any time. Every line weir writes on
 * its own goes through the sink; the statistics tables of WEIR_STATS=1 go to
 * the FILE that weir_runtime_print_stats() is given (stderr at destroy).
 */
WEIR_API void weir_set_log(weir_log_fn fn, void *ctx);

/** "fatal", "error", "warning" or "info". */
WEIR_API const char *weir_log_level_name(weir_log_level level);

/* ---------------------------------------------------------------- memory */

/**
 * A memory allocator for everything weir allocates: runtime, workers and
 * their deques, terms, pipelines, streams, scratch buffers, collectors.
 *
 * `malloc_fn` and `free_fn` are required; `realloc_fn` may be NULL (weir then
 * allocates, copies and frees). `malloc_fn` and `realloc_fn` return memory
 * aligned for any object type (like malloc(3)), or NULL on failure, which
 * weir reports as -ENOMEM; they are called from any thread, workers
 * included, so they must be thread-safe. `free_fn` is only given pointers
 * `malloc_fn` or `realloc_fn` returned. `ctx` is passed to every call.
 *
 * The fields are not called malloc/realloc/free so that code defining those
 * names as macros (memory debuggers do) can still use this struct.
 *
 * Outside the hook: hwloc's own allocations (topology discovery), the C
 * library's (thread stacks and thread-local storage in pthread_create(),
 * stdio buffers of FILEs the terms print to or read from) and the kernel's.
 * liburcu's queue, used for submissions, is intrusive and allocates nothing.
 */
typedef struct weir_allocator {
    void *(*malloc_fn)(size_t size, void *ctx);
    void *(*realloc_fn)(void *p, size_t size, void *ctx);
    void (*free_fn)(void *p, void *ctx);
    void *ctx;
} weir_allocator;

/**
 * Route every allocation weir makes through `a` (copied; NULL restores the
 * C library's malloc, realloc and free). The setting is global to the
 * process. Set it while no weir object exists (before the first
 * weir_runtime_create(), or after everything was destroyed): a block is
 * always freed through the allocator that allocated it, so switching with
 * blocks alive would hand them to the wrong free. Threads that ran
 * pipeline stages (workers, stage threads) keep small scratch buffers until
 * they exit: weir_runtime_destroy() and weir_pipeline_join() end those
 * threads. Not thread-safe against any other weir call.
 * @return 0; -EINVAL if `a` lacks malloc_fn or free_fn; -EBUSY if blocks
 *         allocated through weir (objects not yet destroyed, memory from
 *         weir_malloc() not yet freed) are still live: nothing changes then.
 */
WEIR_API int weir_set_allocator(const weir_allocator *a);

/**
 * Allocate `size` bytes through the current allocator (for the term layer
 * and for extensions whose memory weir frees, such as a state freed with
 * weir_term_on_free(t, weir_free)). A size of 0 still returns a distinct
 * block. Pair with weir_free().
 * @return the block, or NULL when the allocator fails or `size` is too large.
 */
WEIR_API void *weir_malloc(size_t size);

/** weir_malloc() of `n * size` zeroed bytes. @return NULL on failure or
 *  when `n * size` overflows. */
WEIR_API void *weir_calloc(size_t n, size_t size);

/**
 * Resize a block from weir_malloc(), weir_calloc(), weir_realloc() or
 * weir_aligned_alloc() (NULL: like weir_malloc()). The contents up to the
 * smaller of the two sizes are kept; the new block is aligned like
 * weir_malloc()'s, not like an over-aligned original. A size of 0 returns a
 * distinct empty block (and frees `p`).
 * @return the new block, or NULL on failure (then `p` is left untouched).
 */
WEIR_API void *weir_realloc(void *p, size_t size);

/**
 * Allocate `size` bytes aligned to `align` (a power of two; WEIR_CACHELINE
 * for data written by different threads) through the current allocator,
 * which sees one ordinary allocation: weir over-allocates and aligns within
 * it. The memory is not zeroed. Pair with weir_free().
 * @return the block, or NULL on failure or when `align` is not a power of two.
 */
WEIR_API void *weir_aligned_alloc(size_t align, size_t size);

/** A weir_malloc() copy of the string `s` (NULL for NULL). @return NULL on failure. */
WEIR_API char *weir_strdup(const char *s);

/** Free a block from any of the functions above (NULL is ignored), through
 *  the allocator that is current, which must be the one that allocated it. */
WEIR_API void weir_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_COMMON_H */
