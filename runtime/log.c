/*
 * weir runtime — the log: where weir's own lines go (a pin that failed, a
 * misuse that was ignored, the fatal line before the one abort, the
 * WEIR_DISPLAY_ENV report). By default they are written to stderr; an
 * embedding program routes them elsewhere with weir_set_log().
 *
 * The sink is read under a mutex and called outside it, so a callback may
 * itself call weir_set_log() (or log) without deadlocking; a sink replaced
 * concurrently may still receive the message that was being logged.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t weir__log_lock = PTHREAD_MUTEX_INITIALIZER;
static weir_log_fn weir__log_fn;
static void *weir__log_ctx;

const char *weir_log_level_name(weir_log_level level)
{
    switch (level) {
    case WEIR_LOG_FATAL:
        return "fatal";
    case WEIR_LOG_ERROR:
        return "error";
    case WEIR_LOG_WARNING:
        return "warning";
    case WEIR_LOG_INFO:
        return "info";
    }
    return "unknown";
}

void weir_set_log(weir_log_fn fn, void *ctx)
{
    pthread_mutex_lock(&weir__log_lock);
    weir__log_fn = fn;
    weir__log_ctx = fn != NULL ? ctx : NULL;
    pthread_mutex_unlock(&weir__log_lock);
}

/* The default sink: one line "weir: <level>: <message>" on stderr; an info
 * message (the WEIR_DISPLAY_ENV report, several lines of its own) as it is. */
static void weir__log_stderr(weir_log_level level, const char *msg)
{
    size_t n = strlen(msg);
    if (level == WEIR_LOG_INFO)
        fprintf(stderr, "%s%s", msg, n > 0 && msg[n - 1] == '\n' ? "" : "\n");
    else
        fprintf(stderr, "weir: %s: %s\n", weir_log_level_name(level), msg);
    fflush(stderr);
}

void weir__log_text(weir_log_level level, const char *msg)
{
    pthread_mutex_lock(&weir__log_lock);
    weir_log_fn fn = weir__log_fn;
    void *ctx = weir__log_ctx;
    pthread_mutex_unlock(&weir__log_lock);
    if (fn != NULL)
        fn(level, msg, ctx);
    else
        weir__log_stderr(level, msg);
}

void weir__log(weir_log_level level, const char *fmt, ...)
{
    /* A line's worth: the messages are one sentence each. */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    weir__log_text(level, msg);
}
