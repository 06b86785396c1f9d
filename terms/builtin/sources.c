/*
 * weir terms — built-in pull sources: array, range, counter.
 */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

typedef struct weir__array_src {
    const char *base;
    size_t count, size, pos;
} weir__array_src;

static int weir__array_pull(void *state, void *out, size_t max, bool *end)
{
    weir__array_src *a = state;
    size_t n = a->count - a->pos;
    if (n > max)
        n = max;
    if (n > 0) /* base may be NULL for an empty array: no memcpy from NULL */
        memcpy(out, a->base + a->pos * a->size, n * a->size);
    a->pos += n;
    *end = a->pos == a->count;
    return (int)n;
}

WEIR_API weir_term *weir_array_source(const char *name, const void *base, size_t count, size_t size)
{
    if (!base && count) {
        weir__terms_error(-EINVAL, "array source '%s': base is NULL", name ? name : "(unnamed)");
        return NULL;
    }
    weir__array_src *a = weir_calloc(1, sizeof *a);
    if (!a) {
        weir__terms_error(-ENOMEM, "array source: out of memory");
        return NULL;
    }
    a->base = base;
    a->count = count;
    /* WEIR_VARSIZE: `base` is an array of `count` weir_bytes, copied as
     * descriptors (their bytes are read in place, so they outlive the run) */
    a->size = size == WEIR_VARSIZE ? sizeof(weir_bytes) : size;
    weir_term *t = weir_source(name, size, weir__array_pull, a);
    if (!t) {
        weir_free(a);
        return NULL;
    }
    weir__term_set_kind(t, name, "array source");
    return weir_term_on_free(t, weir_free);
}

typedef struct weir__range_src {
    int64_t next, end, step;
    bool endless;
} weir__range_src;

static int weir__range_pull(void *state, void *out, size_t max, bool *end)
{
    weir__range_src *r = state;
    int64_t *o = out;
    size_t n = 0;
    while (n < max) {
        if (!r->endless && (r->step > 0 ? r->next >= r->end : r->next <= r->end)) {
            *end = true;
            break;
        }
        o[n++] = r->next;
        /* Stop before the counter would overflow instead of wrapping. */
        if (__builtin_add_overflow(r->next, r->step, &r->next)) {
            r->endless = false;
            r->end = r->next = r->step > 0 ? INT64_MAX : INT64_MIN;
        }
    }
    if (!r->endless && (r->step > 0 ? r->next >= r->end : r->next <= r->end))
        *end = true;
    return (int)n;
}

static weir_term *weir__range(const char *name, int64_t start, int64_t end, int64_t step,
                              bool endless, const char *kind)
{
    weir__range_src *r = weir_calloc(1, sizeof *r);
    if (!r) {
        weir__terms_error(-ENOMEM, "%s: out of memory", kind);
        return NULL;
    }
    r->next = start;
    r->end = end;
    r->step = step;
    r->endless = endless;
    weir_term *t = weir_source(name, sizeof(int64_t), weir__range_pull, r);
    if (!t) {
        weir_free(r);
        return NULL;
    }
    weir__term_set_kind(t, name, kind);
    return weir_term_on_free(t, weir_free);
}

WEIR_API weir_term *weir_range_source(const char *name, int64_t start, int64_t end, int64_t step)
{
    if (step == 0) {
        weir__terms_error(-EINVAL, "range source '%s': step is 0", name ? name : "(unnamed)");
        return NULL;
    }
    return weir__range(name, start, end, step, false, "range source");
}

WEIR_API weir_term *weir_counter_source(const char *name, int64_t start)
{
    return weir__range(name, start, INT64_MAX, 1, true, "counter source");
}
