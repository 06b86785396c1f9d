/*
 * weir terms — the collector and its sink (the seed's shared list under
 * one lock; the sink takes the lock once per batch, not once per record).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

WEIR_API int weir_collector_init(weir_collector *c, size_t size)
{
    if (!c || size == 0)
        return weir__terms_error(-EINVAL, "weir_collector_init: %s",
                                 c ? "record size 0" : "collector is NULL");
    memset(c, 0, sizeof *c);
    pthread_mutex_t *mu = weir_malloc(sizeof *mu);
    if (!mu)
        return weir__terms_error(-ENOMEM, "weir_collector_init: out of memory");
    pthread_mutex_init(mu, NULL);
    c->varsize = size == WEIR_VARSIZE;
    c->size = c->varsize ? sizeof(weir_bytes) : size;
    c->weir__lock = mu;
    return 0;
}

/* A variable-size collector owns a copy of each record's bytes. */
static void weir__collector_free_bytes(weir_collector *c)
{
    if (!c->varsize)
        return;
    weir_bytes *d = c->data;
    for (size_t i = 0; i < c->count; i++)
        weir_free((void *)d[i].data);
}

WEIR_API void weir_collector_deinit(weir_collector *c)
{
    if (!c)
        return;
    weir__collector_free_bytes(c);
    if (c->weir__lock) {
        pthread_mutex_destroy(c->weir__lock);
        weir_free(c->weir__lock);
    }
    weir_free(c->data);
    memset(c, 0, sizeof *c);
}

WEIR_API void weir_collector_clear(weir_collector *c)
{
    if (!c || !c->weir__lock)
        return;
    pthread_mutex_lock(c->weir__lock);
    weir__collector_free_bytes(c);
    c->count = 0;
    pthread_mutex_unlock(c->weir__lock);
}

static int weir__collect_fn(void *state, const void *recs, size_t n)
{
    weir_collector *c = state;
    int r = 0;
    pthread_mutex_lock(c->weir__lock);
    if (c->count + n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->count + n)
            cap *= 2;
        void *d = weir_realloc(c->data, cap * c->size);
        if (!d)
            r = -ENOMEM;
        else {
            c->data = d;
            c->cap = cap;
        }
    }
    if (r == 0 && c->varsize) {
        const weir_bytes *in = recs;
        weir_bytes *d = (weir_bytes *)c->data + c->count;
        for (size_t i = 0; i < n; i++) {
            /* one byte more, so that an empty record has a pointer too */
            char *copy = weir_malloc(in[i].len + 1);
            if (!copy) {
                r = -ENOMEM;
                break;
            }
            if (in[i].len)
                memcpy(copy, in[i].data, in[i].len);
            copy[in[i].len] = '\0';
            d[i].data = copy;
            d[i].len = in[i].len;
            c->count++;
        }
    } else if (r == 0) {
        memcpy((char *)c->data + c->count * c->size, recs, n * c->size);
        c->count += n;
    }
    pthread_mutex_unlock(c->weir__lock);
    return r;
}

WEIR_API weir_term *weir_collect(const char *name, weir_collector *c)
{
    if (!c || !c->weir__lock) {
        weir__terms_error(-EINVAL, "collect '%s': collector is NULL or not initialised",
                          name ? name : "(unnamed)");
        return NULL;
    }
    weir_term *t = weir_batch_sink(name, c->varsize ? WEIR_VARSIZE : c->size, weir__collect_fn, c);
    if (t)
        weir__term_set_kind(t, name, "collect");
    return t;
}
