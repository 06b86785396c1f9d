/*
 * weir runtime — error codes as text, and the per-thread last-error message.
 *
 * Control calls return 0 or a negative errno. The code alone says what kind
 * of failure it was; the message kept here says which field, value or term
 * caused it. The message lives in thread-local storage so that two threads
 * failing at the same time never see each other's text and no lock is needed.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Large enough for a message that quotes a field name, a value and the
 * accepted range; longer messages are truncated, never overrun. */
#define WEIR__ERRBUF 256

static _Thread_local char weir__last_error[WEIR__ERRBUF];

/* Text for codes outside weir's own list comes from strerror_r(), whose GNU
 * variant may write into a caller buffer; that buffer must outlive the call,
 * hence thread-local too. */
static _Thread_local char weir__strerror_buf[128];

const char *weir_strerror(int err)
{
    /* The texts describe what the code means for a weir caller, not the
     * errno's historical wording ("Broken pipe" means "stream closed" here). */
    switch (err) {
    case 0:
        return "success";
    case -EINVAL:
        return "invalid argument";
    case -ENOMEM:
        return "out of memory";
    case -EAGAIN:
        return "resource temporarily unavailable (thread could not be created)";
    case -ENODEV:
        return "topology unavailable";
    case -EBUSY:
        return "busy";
    case -ESHUTDOWN:
        return "runtime is shutting down";
    case -EDEADLK:
        return "operation would deadlock";
    case -E2BIG:
        return "too many entries";
    case -ENOENT:
        return "not found";
    case -EALREADY:
        return "already done or in progress";
    case -ECANCELED:
        return "canceled";
    case -EPIPE:
        return "stream closed";
    case -EOVERFLOW:
        return "value too large";
    case -ENOSPC:
        return "capacity exhausted";
    case -ETIMEDOUT:
        return "timed out";
    case -EPERM:
        return "operation not permitted";
    case -ENOTSUP:
        return "not supported";
    default:
        break;
    }
    /* Positive values and INT_MIN (whose negation overflows) are not codes
     * any weir call returns. */
    if (err > 0 || err < -0x7fff)
        return "unknown error";
    const char *text = strerror_r(-err, weir__strerror_buf, sizeof weir__strerror_buf);
    /* glibc answers "Unknown error N" for numbers it does not know; the
     * documented contract is a fixed "unknown error" for those. */
    if (text == NULL || text[0] == '\0' || strncmp(text, "Unknown error", 13) == 0)
        return "unknown error";
    return text;
}

const char *weir_last_error(void)
{
    return weir__last_error;
}

void weir_clear_error(void)
{
    weir__last_error[0] = '\0';
}

static int set_error_v(int err, const char *fmt, va_list ap)
{
    /* Format into a local buffer first: callers may pass weir_last_error()
     * itself as an argument (to wrap a lower-level message), and vsnprintf
     * into the buffer it is reading from would be undefined. errno is kept
     * because a caller may still want to inspect it after reporting. */
    int saved_errno = errno;
    char tmp[WEIR__ERRBUF];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n < 0)
        tmp[0] = '\0';
    memcpy(weir__last_error, tmp, sizeof tmp);
    errno = saved_errno;
    return err;
}

int weir__error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(err, fmt, ap);
    va_end(ap);
    return err;
}

int weir_set_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(err, fmt, ap);
    va_end(ap);
    return err;
}
