/*
 * weir terms — error reporting. Control calls of the term layer set the same
 * thread-local message as the runtime's (weir_last_error(), through the
 * public weir_set_error()). Pipelines also keep their own message
 * (weir_pipeline_error()) because a callback failure happens on a worker, not
 * on the thread that later reads it.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int weir__terms_error(int err, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return weir_set_error(err, "%s", buf);
}

WEIR_API const char *weir_terms_last_error(void)
{
    return weir_last_error();
}

const char *weir__errtext(int err, char *buf, size_t n)
{
    /* With _GNU_SOURCE this is the GNU strerror_r, which returns the text
     * (possibly a static string) rather than filling buf. */
    return strerror_r(err < 0 ? -err : err, buf, n);
}

uint64_t weir__terms_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
