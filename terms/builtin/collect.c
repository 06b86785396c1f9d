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
    c->size = size;
    c->weir__lock = mu;
    return 0;
}

WEIR_API void weir_collector_deinit(weir_collector *c)
{
    if (!c)
        return;
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
    if (r == 0) {
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
    weir_term *t = weir_batch_sink(name, c->size, weir__collect_fn, c);
    if (t)
        weir__term_set_kind(t, name, "collect");
    return t;
}
