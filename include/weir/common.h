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

#define WEIR_VERSION_MAJOR 0
#define WEIR_VERSION_MINOR 1
#define WEIR_VERSION_PATCH 0

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

#ifdef __cplusplus
}
#endif
#endif /* WEIR_COMMON_H */
