/*
 * weir terms — per-thread scratch memory of the activations (stage.c).
 *
 * An activation uses it only while it runs, and one thread runs one
 * activation at a time, so every stage a thread runs shares it: memory does
 * not grow with the number of stages (a 10 000-branch fan-out). It holds
 * the batch path's intermediate records (two buffers used in turn, so a map
 * never overwrites its own input) and pointer array, and the records (and,
 * variable-size, the bytes) a fused batch sink buffers within one
 * activation. Freed by the thread-specific key's destructor when the
 * thread exits.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

static pthread_key_t weir__scratch_key;
static pthread_once_t weir__scratch_once = PTHREAD_ONCE_INIT;

static void weir__scratch_free(void *p)
{
    weir__scratch *sc = p;
    weir_free((void *)sc->ptrs);
    weir_free(sc->buf[0]);
    weir_free(sc->buf[1]);
    weir_free(sc->sink);
    weir_free(sc->sinkb);
    weir_free(sc);
}

static void weir__scratch_init(void)
{
    /* The destructor frees a thread's scratch when the thread exits. */
    pthread_key_create(&weir__scratch_key, weir__scratch_free);
}

weir__scratch *weir__scratch_self(void)
{
    pthread_once(&weir__scratch_once, weir__scratch_init);
    weir__scratch *sc = pthread_getspecific(weir__scratch_key);
    if (!sc) {
        sc = weir_calloc(1, sizeof *sc);
        if (!sc || pthread_setspecific(weir__scratch_key, sc) != 0) {
            weir_free(sc);
            return NULL;
        }
    }
    return sc;
}

/* A variable-size batch sink's bytes: the records it buffers point into
 * streams or callbacks' memory that will not last until the flush, so their
 * bytes are copied here (offsets until weir__flush_batch). */
int weir__scratch_sink_bytes(weir__node *n, weir_bytes *d)
{
    weir__scratch *sc = weir__scratch_self();
    if (!sc)
        return -ENOMEM;
    size_t need = (d->len + 7) / 8 * 8;
    if (sc->sinkb_cap - n->nbytes < need || !sc->sinkb) {
        size_t cap = sc->sinkb_cap ? sc->sinkb_cap : 4096;
        while (cap - n->nbytes < need)
            cap *= 2;
        char *nb = weir_realloc(sc->sinkb, cap);
        if (!nb)
            return -ENOMEM;
        sc->sinkb = nb;
        sc->sinkb_cap = cap;
    }
    if (d->len)
        memcpy(sc->sinkb + n->nbytes, d->data, d->len);
    d->data = (const void *)(uintptr_t)n->nbytes;
    n->nbytes += need;
    return 0;
}

/* The buffer of a batch sink fused after other terms. It holds records only
 * within one activation (the stage flushes it before the activation ends),
 * so one per thread serves every stage: no B-record buffer per branch. */
char *weir__scratch_sink(size_t bytes)
{
    weir__scratch *sc = weir__scratch_self();
    if (!sc)
        return NULL;
    if (sc->sink_cap < bytes) {
        char *nb = weir_realloc(sc->sink, bytes);
        if (!nb)
            return NULL;
        sc->sink = nb;
        sc->sink_cap = bytes;
    }
    return sc->sink;
}

weir__scratch *weir__scratch_get(size_t n, size_t size)
{
    weir__scratch *sc = weir__scratch_self();
    if (!sc)
        return NULL;
    if (sc->nptrs < n) {
        const void **np = weir_realloc((void *)sc->ptrs, n * sizeof *np);
        if (!np)
            return NULL;
        sc->ptrs = np;
        sc->nptrs = n;
    }
    if (sc->cap < n * size) {
        for (int i = 0; i < 2; i++) {
            char *nb = weir_realloc(sc->buf[i], n * size);
            if (!nb)
                return NULL;
            sc->buf[i] = nb;
        }
        sc->cap = n * size;
    }
    return sc;
}
