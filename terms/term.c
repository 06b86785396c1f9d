/*
 * weir terms — primitive term constructors and tree ownership.
 *
 * A constructor copies the name and remembers the callback and the state
 * pointer; nothing runs until a pipeline is started. Argument errors return
 * NULL with a message (weir_terms_last_error()) so that a chain of nested
 * constructor calls ends in a NULL that weir_pipeline_create() reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Generated names only need to be unique within a process; relaxed is
 * enough because nothing else is ordered by this counter. */
static _Atomic unsigned weir__term_seq;

const char *weir__kind_name(weir__kind k)
{
    switch (k) {
    case WEIR__K_PULL:
        return "source";
    case WEIR__K_BLOCKING:
        return "blocking source";
    case WEIR__K_FUNCTION:
        return "function";
    case WEIR__K_MAP:
        return "map";
    case WEIR__K_FILTER:
        return "filter";
    case WEIR__K_SINK:
        return "sink";
    case WEIR__K_BATCH_SINK:
        return "batch sink";
    case WEIR__K_MERGE:
        return "merge";
    case WEIR__K_ZIP:
        return "zip";
    case WEIR__K_STOP:
        return "stop";
    case WEIR__K_SEQ:
        return "seq";
    case WEIR__K_PAR:
        return "par";
    case WEIR__K_PARALLEL:
        return "parallel";
    case WEIR__K_KEYED:
        return "keyed";
    case WEIR__K_SPAWN:
        return "spawn shard";
    }
    return "?";
}

/* A generated name "<kind>#<n>" (what snprintf "%s#%u" would make, without
 * its cost: a wide pipeline of unnamed composites makes one per branch). */
static char *weir__gen_name(const char *kind_name)
{
    unsigned n = atomic_fetch_add_explicit(&weir__term_seq, 1, memory_order_relaxed) + 1;
    char digits[16];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    size_t len = strlen(kind_name);
    char *name = weir_malloc(len + 1 + nd + 1);
    if (!name)
        return NULL;
    memcpy(name, kind_name, len);
    name[len] = '#';
    for (size_t i = 0; i < nd; i++)
        name[len + 1 + i] = digits[nd - 1 - i];
    name[len + 1 + nd] = '\0';
    return name;
}

void weir__term_set_kind(weir_term *t, const char *given_name, const char *kind_name)
{
    t->kind_name = kind_name;
    if (given_name)
        return;
    char *copy = weir__gen_name(kind_name);
    if (copy) {
        weir_free(t->name);
        t->name = copy;
    }
}

weir_term *weir__term_new(weir__kind kind, const char *kind_name, const char *name)
{
    weir_term *t = weir_calloc(1, sizeof *t);
    if (!t) {
        weir__terms_error(-ENOMEM, "%s: out of memory", kind_name);
        return NULL;
    }
    t->name = name ? weir_strdup(name) : weir__gen_name(kind_name);
    if (!t->name) {
        weir_free(t);
        weir__terms_error(-ENOMEM, "%s: out of memory", kind_name);
        return NULL;
    }
    t->kind = kind;
    t->kind_name = kind_name;
    return t;
}

void weir__term_reset_compile(weir_term *t)
{
    /* inputs, consumers and consumer_slot point into the pipeline's term
     * table (compile.c, weir__link), which weir__compile_free() frees */
    t->inputs = NULL;
    t->consumers = NULL;
    t->consumer_slot = NULL;
    t->ninputs = t->nconsumers = t->consumers_cap = 0;
    t->stage = NULL;
    t->out = NULL;
    t->node = 0;
    t->index = 0;
}

static void weir__term_free_rec(weir_term *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nchildren; i++)
        if (t->child_owned[i])
            weir__term_free_rec(t->children[i]);
    weir_free(t->children); /* child_owned lives in the same block (compose.c) */
    if (t->free_state)
        t->free_state(t->state);
    weir__term_reset_compile(t);
    weir_free(t->name);
    weir_free(t);
}

void weir__term_free_tree(weir_term *t)
{
    weir__term_free_rec(t);
}

WEIR_API void weir_term_destroy(weir_term *t)
{
    if (!t)
        return;
    if (t->owner != WEIR__FREE) {
        /* Freeing a term that a composite or a pipeline still points to
         * would leave a dangling child: refuse, never crash. */
        weir__terms_error(-EBUSY,
                          "weir_term_destroy: term '%s' belongs to %s; destroy that instead",
                          t->name, t->owner == WEIR__IN_PIPELINE ? "a pipeline" : "a composite");
        return;
    }
    weir__term_free_rec(t);
}

WEIR_API const char *weir_term_name(const weir_term *t)
{
    return t ? t->name : NULL;
}

static bool weir__check(const char *what, const char *name, size_t s1, size_t s2, bool has_fn)
{
    if (!has_fn) {
        weir__terms_error(-EINVAL, "%s '%s': callback is NULL", what, name ? name : "(unnamed)");
        return false;
    }
    if (s1 == 0 || s2 == 0) {
        weir__terms_error(-EINVAL, "%s '%s': record size 0 (sizes must be > 0)", what,
                          name ? name : "(unnamed)");
        return false;
    }
    return true;
}

void weir__term_set_sizes(weir_term *t, size_t in, size_t out)
{
    /* WEIR_VARSIZE: the records are weir_bytes descriptors of bytes kept in
     * the stream's byte ring (stream.c) */
    t->in_var = in == WEIR_VARSIZE;
    t->out_var = out == WEIR_VARSIZE;
    t->in_size = t->in_var ? sizeof(weir_bytes) : in;
    t->out_size = t->out_var ? sizeof(weir_bytes) : out;
}

static weir_term *weir__prim(weir__kind kind, const char *name, size_t in, size_t out, void *state)
{
    weir_term *t = weir__term_new(kind, weir__kind_name(kind), name);
    if (!t)
        return NULL;
    weir__term_set_sizes(t, in, out);
    t->state = state;
    return t;
}

WEIR_API weir_term *weir_source(const char *name, size_t out_size, weir_pull_fn fn, void *state)
{
    if (!weir__check("source", name, out_size, 1, fn != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_PULL, name, 0, out_size, state);
    if (t)
        t->fn.pull = fn;
    return t;
}

WEIR_API weir_term *weir_blocking_source(const char *name, size_t out_size, weir_blocking_fn fn,
                                         void *state)
{
    if (!weir__check("blocking source", name, out_size, 1, fn != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_BLOCKING, name, 0, out_size, state);
    if (t)
        t->fn.blocking = fn;
    return t;
}

WEIR_API weir_term *weir_function(const char *name, size_t in_size, size_t out_size,
                                  weir_function_fn fn, void *state)
{
    if (!weir__check("function", name, in_size, out_size, fn != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_FUNCTION, name, in_size, out_size, state);
    if (t)
        t->fn.function = fn;
    return t;
}

WEIR_API weir_term *weir_map(const char *name, size_t in_size, size_t out_size, weir_map_fn fn,
                             void *state)
{
    if (!weir__check("map", name, in_size, out_size, fn != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_MAP, name, in_size, out_size, state);
    if (t)
        t->fn.map = fn;
    return t;
}

WEIR_API weir_term *weir_filter(const char *name, size_t size, weir_pred_fn pred, void *state)
{
    if (!weir__check("filter", name, size, size, pred != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_FILTER, name, size, size, state);
    if (t)
        t->fn.pred = pred;
    return t;
}

WEIR_API weir_term *weir_id(const char *name, size_t size)
{
    if (size == 0) {
        weir__terms_error(-EINVAL, "id '%s': record size 0 (sizes must be > 0)",
                          name ? name : "(unnamed)");
        return NULL;
    }
    /* A filter without predicate passes every record on without copying. */
    weir_term *t = weir__term_new(WEIR__K_FILTER, "id", name);
    if (t)
        weir__term_set_sizes(t, size, size);
    return t;
}

WEIR_API weir_term *weir_sink(const char *name, size_t in_size, weir_sink_fn fn, void *state)
{
    if (!weir__check("sink", name, in_size, 1, fn != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_SINK, name, in_size, 0, state);
    if (t)
        t->fn.sink = fn;
    return t;
}

WEIR_API weir_term *weir_batch_sink(const char *name, size_t in_size, weir_batch_sink_fn fn,
                                    void *state)
{
    if (!weir__check("batch sink", name, in_size, 1, fn != NULL))
        return NULL;
    weir_term *t = weir__prim(WEIR__K_BATCH_SINK, name, in_size, 0, state);
    if (t)
        t->fn.batch_sink = fn;
    return t;
}

WEIR_API weir_term *weir_term_on_finish(weir_term *t, weir_finish_fn fn)
{
    if (!t)
        return NULL;
    if (t->owner != WEIR__FREE) {
        weir__terms_error(-EBUSY, "weir_term_on_finish: term '%s' is already composed", t->name);
        return NULL;
    }
    switch (t->kind) {
    case WEIR__K_FUNCTION:
    case WEIR__K_MAP:
    case WEIR__K_FILTER:
    case WEIR__K_SINK:
    case WEIR__K_BATCH_SINK:
    case WEIR__K_MERGE:
    case WEIR__K_ZIP:
        t->finish = fn;
        return t;
    default:
        weir__terms_error(-EINVAL, "weir_term_on_finish: %s '%s' has no input to finish",
                          t->kind_name, t->name);
        weir__term_free_rec(t);
        return NULL;
    }
}

WEIR_API weir_term *weir_term_on_interrupt(weir_term *t, weir_interrupt_fn fn)
{
    if (!t)
        return NULL;
    if (t->owner != WEIR__FREE) {
        weir__terms_error(-EBUSY, "weir_term_on_interrupt: term '%s' is already composed", t->name);
        return NULL;
    }
    if (t->kind != WEIR__K_BLOCKING) {
        weir__terms_error(-EINVAL,
                          "weir_term_on_interrupt: %s '%s' is not a blocking source (only a "
                          "blocking source waits where weir cannot wake it)",
                          t->kind_name, t->name);
        weir__term_free_rec(t);
        return NULL;
    }
    t->interrupt = fn;
    return t;
}

/* A built-in that allocated its own state: it was made from a generic
 * constructor, renamed by weir__term_set_kind() (so its kind is no longer
 * the generic one), and then gave weir_term_on_free() its own free function.
 * The built-in's own call finds no free function yet and is accepted; any
 * later one is a user's. Built-ins whose state is the caller's (weir_collect:
 * the collector) or that have none (weir_id) attach no free function and are
 * not caught: there the user's function gets what the user passed, or NULL. */
static bool weir__frees_own_state(const weir_term *t)
{
    return t->free_state && strcmp(t->kind_name, weir__kind_name(t->kind)) != 0;
}

WEIR_API weir_term *weir_term_on_free(weir_term *t, weir_free_fn fn)
{
    if (!t)
        return NULL;
    if (t->kind == WEIR__K_SEQ || t->kind == WEIR__K_PAR || t->kind == WEIR__K_PARALLEL ||
        t->kind == WEIR__K_KEYED) {
        weir__terms_error(-EINVAL, "weir_term_on_free: '%s' is a composite (no state)", t->name);
        return t;
    }
    if (weir__frees_own_state(t)) {
        /* Replacing the free function would leak the built-in's state and
         * hand the user's function weir's private struct. Refuse loudly, as
         * weir_term_on_finish() and weir_term_on_interrupt() refuse a wrong
         * kind: the NULL reaches weir_pipeline_create() with this message. */
        weir__terms_error(-EINVAL,
                          "weir_term_on_free: %s '%s' is a built-in that frees its own state "
                          "(weir's, not the caller's); free what you passed to it after the "
                          "pipeline is destroyed",
                          t->kind_name, t->name);
        if (t->owner == WEIR__FREE)
            weir__term_free_rec(t);
        return NULL;
    }
    t->free_state = fn;
    return t;
}
