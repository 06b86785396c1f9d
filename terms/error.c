/*
 * weir terms — the term layer's thread-local last-error message.
 *
 * The runtime keeps its own (weir_last_error()); its setter is internal to
 * runtime/, which terms/ may not include, so the term layer keeps a second
 * buffer read by weir_terms_last_error(). Pipelines also keep their own
 * message (weir_pipeline_error()) because a callback failure happens on a
 * worker, not on the thread that later reads it.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static _Thread_local char weir__terms_errbuf[512];

int weir__terms_error(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(weir__terms_errbuf, sizeof weir__terms_errbuf, fmt, ap);
    va_end(ap);
    return err;
}

WEIR_API const char *weir_terms_last_error(void)
{
    return weir__terms_errbuf;
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
