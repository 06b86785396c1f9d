/*
 * Tracing (include/weir/trace.h): per-thread bounded buffers of events,
 * written as Chrome trace-event JSON when the trace stops.
 *
 * Buffers. A thread gets a buffer (struct tbuf) at its first event and keeps
 * it for its life; the list of buffers only grows (a buffer whose thread has
 * exited and whose events were written is handed to the next new thread).
 * The event array is allocated at the first event of a trace and freed when
 * the trace is written.
 *
 * Recording against stop, without a lock on the recording path: a recorder
 * sets its buffer's `busy`, then re-checks the global flag; stop clears the
 * flag, then waits until every buffer's `busy` is clear before it reads or
 * frees anything. Both sides are seq_cst (a store, then a load of the other
 * variable: the Dekker pattern), so either the recorder sees the flag clear
 * and backs off, or stop sees it busy and waits for it to finish.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "scheduler.h"
#include "tracing.h"

#define NAME_MAX_LEN   39 /* bytes of an event name, NUL included */
#define THREAD_NAME    48
#define MAX_OPEN       16
#define DEFAULT_EVENTS 262144u

typedef struct tev {
    uint64_t ts;  /* ns since the trace started */
    uint64_t dur; /* X: ns */
    double value; /* C: the sample; i "steal": the victim */
    char ph;      /* 'X', 'i', 'C' */
    char name[NAME_MAX_LEN];
} tev;

typedef struct tbuf {
    struct tbuf *next;
    _Atomic int busy;
    bool owned; /* a live thread records into it (under g_lock) */
    unsigned tid;
    int sort; /* track order: workers by index, then the rest */
    char name[THREAD_NAME];
    tev *ev;
    uint32_t n, cap;
    uint64_t dropped;
    unsigned depth; /* open begin()s, recorded or not */
    uint64_t open_ts[MAX_OPEN];
    char open_name[MAX_OPEN][NAME_MAX_LEN];
} tbuf;

_Atomic int weir__trace_on;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static tbuf *g_bufs;
static unsigned g_next_tid = 1;
static FILE *g_file;
static uint64_t g_t0;
static uint32_t g_cap = DEFAULT_EVENTS;
static const void *g_env_owner;

static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static _Thread_local tbuf *tls_buf;
static _Thread_local char tls_name[THREAD_NAME];
static _Thread_local int tls_sort = -1;

/* The thread exits: its buffer may go to a new thread once written. */
static void thread_gone(void *p)
{
    tbuf *b = p;
    pthread_mutex_lock(&g_lock);
    b->owned = false;
    pthread_mutex_unlock(&g_lock);
}

static void make_key(void)
{
    (void)pthread_key_create(&g_key, thread_gone);
}

static void name_buffer(tbuf *b)
{
    if (tls_name[0])
        memcpy(b->name, tls_name, sizeof b->name);
    else
        snprintf(b->name, sizeof b->name, "thread %u", b->tid);
    b->sort = tls_sort >= 0 ? tls_sort : 100000 + (int)b->tid;
}

static tbuf *register_thread(void)
{
    pthread_once(&g_key_once, make_key);
    pthread_mutex_lock(&g_lock);
    tbuf *b = g_bufs;
    while (b && (b->owned || b->ev || b->n))
        b = b->next;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) {
            pthread_mutex_unlock(&g_lock);
            return NULL;
        }
        b->next = g_bufs;
        g_bufs = b;
    }
    b->owned = true;
    b->tid = g_next_tid++;
    b->depth = 0;
    b->dropped = 0;
    name_buffer(b);
    pthread_mutex_unlock(&g_lock);
    tls_buf = b;
    (void)pthread_setspecific(g_key, b);
    return b;
}

/* The calling thread's buffer, marked busy, with room for events; NULL if
 * tracing is off (or stopping) or memory ran out. Pair: put(). */
static tbuf *get(void)
{
    if (!atomic_load_explicit(&weir__trace_on, memory_order_relaxed))
        return NULL;
    tbuf *b = tls_buf ? tls_buf : register_thread();
    if (!b)
        return NULL;
    /* seq_cst store then seq_cst load of the flag: see the top of the file */
    atomic_store_explicit(&b->busy, 1, memory_order_seq_cst);
    if (!atomic_load_explicit(&weir__trace_on, memory_order_seq_cst)) {
        atomic_store_explicit(&b->busy, 0, memory_order_release);
        return NULL;
    }
    if (!b->ev) {
        b->ev = malloc((size_t)g_cap * sizeof *b->ev);
        if (!b->ev) {
            atomic_store_explicit(&b->busy, 0, memory_order_release);
            return NULL;
        }
        b->cap = g_cap;
        b->n = 0;
    }
    return b;
}

static void put(tbuf *b)
{
    /* release: our event writes happen before stop's acquire (seq_cst) load */
    atomic_store_explicit(&b->busy, 0, memory_order_release);
}

static uint64_t since_t0(void)
{
    return weir__now_ns() - g_t0;
}

static void add(tbuf *b, char ph, const char *name, uint64_t ts, uint64_t dur, double value)
{
    if (b->n >= b->cap) {
        b->dropped++;
        return;
    }
    tev *e = &b->ev[b->n++];
    e->ts = ts;
    e->dur = dur;
    e->value = value;
    e->ph = ph;
    snprintf(e->name, sizeof e->name, "%s", name);
}

bool weir_trace_enabled(void)
{
    return atomic_load_explicit(&weir__trace_on, memory_order_relaxed) != 0;
}

void weir_trace_thread_name(const char *name)
{
    snprintf(tls_name, sizeof tls_name, "%s", name ? name : "");
    tbuf *b = tls_buf;
    if (b) {
        pthread_mutex_lock(&g_lock);
        name_buffer(b);
        pthread_mutex_unlock(&g_lock);
    }
}

void weir_trace_begin(const char *name)
{
    tbuf *b = get();
    if (!b)
        return;
    if (b->depth < MAX_OPEN) {
        b->open_ts[b->depth] = since_t0();
        snprintf(b->open_name[b->depth], NAME_MAX_LEN, "%s", name ? name : "");
    }
    b->depth++;
    put(b);
}

void weir_trace_end(void)
{
    tbuf *b = get();
    if (!b)
        return;
    if (b->depth > 0) {
        b->depth--;
        if (b->depth < MAX_OPEN) {
            uint64_t ts = b->open_ts[b->depth];
            add(b, 'X', b->open_name[b->depth], ts, since_t0() - ts, 0);
        }
    }
    put(b);
}

void weir_trace_instant(const char *name)
{
    tbuf *b = get();
    if (!b)
        return;
    add(b, 'i', name ? name : "", since_t0(), 0, -1);
    put(b);
}

void weir_trace_counter(const char *name, double value)
{
    tbuf *b = get();
    if (!b)
        return;
    add(b, 'C', name ? name : "", since_t0(), 0, value);
    put(b);
}

/* ---- scheduler hooks (tracing.h) ------------------------------------------ */

void weir__trace_job(weir_worker *w, weir_job *job)
{
    weir_trace_begin("job");
    job->fn(w, job);
    weir_trace_end();
}

void weir__trace_root(weir_worker *w, weir_frame *sp, weir_frame *root)
{
    weir_trace_begin("fork-join root");
    ((weir__frame_fn)root->run)(w, sp, root);
    weir_trace_end();
}

void weir__trace_steal(unsigned victim)
{
    tbuf *b = get();
    if (!b)
        return;
    add(b, 'i', "steal", since_t0(), 0, (double)victim);
    put(b);
}

/* ---- start / stop ------------------------------------------------------------ */

int weir_trace_start(const char *path)
{
    if (!path || !*path)
        return weir__error(-EINVAL, "weir_trace_start: no path");
    pthread_mutex_lock(&g_lock);
    if (g_file) {
        pthread_mutex_unlock(&g_lock);
        return weir__error(-EALREADY, "weir_trace_start: a trace is running");
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        int e = errno;
        pthread_mutex_unlock(&g_lock);
        return weir__error(-e, "weir_trace_start: cannot open '%s': %s", path, weir_strerror(-e));
    }
    const char *ev = getenv("WEIR_TRACE_EVENTS");
    g_cap = DEFAULT_EVENTS;
    if (ev && *ev) {
        char *end;
        unsigned long v = strtoul(ev, &end, 10);
        if (*end == '\0' && v >= 16 && v <= (1ul << 26))
            g_cap = (uint32_t)v;
    }
    g_file = f;
    g_t0 = weir__now_ns();
    /* seq_cst: the flag's Dekker pair (top of the file) */
    atomic_store_explicit(&weir__trace_on, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&g_lock);
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_event(FILE *f, const tbuf *b, const tev *e, bool *first)
{
    fputs(*first ? "\n" : ",\n", f);
    *first = false;
    fputs("{\"name\":", f);
    json_str(f, e->name);
    double ts = (double)e->ts / 1e3;
    switch (e->ph) {
    case 'X':
        fprintf(f, ",\"ph\":\"X\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,\"dur\":%.3f}", b->tid, ts,
                (double)e->dur / 1e3);
        break;
    case 'C':
        fprintf(f, ",\"ph\":\"C\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,\"args\":{\"depth\":%.17g}}",
                b->tid, ts, e->value);
        break;
    default:
        fprintf(f, ",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%u,\"ts\":%.3f", b->tid, ts);
        if (e->value >= 0)
            fprintf(f, ",\"args\":{\"victim\":%.0f}", e->value);
        fputc('}', f);
        break;
    }
}

int weir_trace_stop(void)
{
    pthread_mutex_lock(&g_lock);
    if (!g_file) {
        pthread_mutex_unlock(&g_lock);
        return weir__error(-EINVAL, "weir_trace_stop: no trace running");
    }
    /* seq_cst: the flag's Dekker pair; then wait out every recorder */
    atomic_store_explicit(&weir__trace_on, 0, memory_order_seq_cst);
    for (tbuf *b = g_bufs; b; b = b->next)
        while (atomic_load_explicit(&b->busy, memory_order_seq_cst))
            sched_yield();

    FILE *f = g_file;
    uint64_t dropped = 0;
    bool first = true;
    fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", f);
    fputs("\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"weir\"}}", f);
    first = false;
    for (tbuf *b = g_bufs; b; b = b->next) {
        if (!b->ev && !b->owned)
            continue;
        fprintf(
            f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"args\":{\"name\":",
            b->tid);
        json_str(f, b->name);
        fprintf(f,
                "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,"
                "\"args\":{\"sort_index\":%d}}",
                b->tid, b->sort);
        for (uint32_t i = 0; i < b->n; i++)
            write_event(f, b, &b->ev[i], &first);
        dropped += b->dropped;
        free(b->ev);
        b->ev = NULL;
        b->n = b->cap = 0;
        b->dropped = 0;
        b->depth = 0;
    }
    fprintf(f, "\n],\"otherData\":{\"dropped_events\":%" PRIu64 "}}\n", dropped);
    int err = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0)
        err = -EIO;
    g_file = NULL;
    pthread_mutex_unlock(&g_lock);
    return err ? weir__error(err, "weir_trace_stop: cannot write the trace") : 0;
}

void weir__trace_env_start(const void *owner)
{
    const char *path = getenv("WEIR_TRACE");
    if (!path || !*path || weir_trace_enabled())
        return;
    int err = weir_trace_start(path);
    if (err) {
        weir__log(WEIR_LOG_WARNING, "WEIR_TRACE=%s: %s (not tracing)", path, weir_last_error());
        return;
    }
    pthread_mutex_lock(&g_lock);
    g_env_owner = owner;
    pthread_mutex_unlock(&g_lock);
}

void weir__trace_env_stop(const void *owner)
{
    pthread_mutex_lock(&g_lock);
    bool mine = owner && g_env_owner == owner;
    if (mine)
        g_env_owner = NULL;
    pthread_mutex_unlock(&g_lock);
    if (mine && weir_trace_stop() != 0)
        weir__log(WEIR_LOG_WARNING, "WEIR_TRACE: %s", weir_last_error());
}
