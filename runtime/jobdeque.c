/*
 * The job deque: a classic Chase–Lev deque of weir_job pointers for detached
 * work (see sched.h for the operation table). Memory orders follow Lê et al.
 * (PPoPP 2013), except that their two seq_cst fences (in take, between the
 * store of bottom and the load of top; in steal, between the loads of top and
 * bottom) are expressed as seq_cst accesses to those two locations. Under
 * C11 the seq_cst accesses are totally ordered, which gives exactly the
 * store→load ordering the fences provide (the Dekker pattern between an
 * owner taking the last item and a thief stealing it), and ThreadSanitizer
 * understands them, where it does not model standalone fences.
 * Indices are signed 64-bit and never wrap in practice.
 */
#include <string.h>

#include "scheduler.h"

static weir__jarray *array_new(int64_t cap)
{
    weir__jarray *a = weir__malloc(sizeof *a + (size_t)cap * sizeof(a->slot[0]));
    if (!a)
        return NULL;
    a->cap = cap;
    a->retired_next = NULL;
    for (int64_t i = 0; i < cap; i++)
        atomic_init(&a->slot[i], NULL);
    return a;
}

int weir__jd_init(weir__jobdeque *d, int64_t cap)
{
    if (cap < 2 || (cap & (cap - 1)))
        return -EINVAL;
    weir__jarray *a = array_new(cap);
    if (!a)
        return -ENOMEM;
    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    atomic_init(&d->array, a);
    d->retired = NULL;
    return 0;
}

void weir__jd_destroy(weir__jobdeque *d)
{
    weir__free(atomic_load_explicit(&d->array, memory_order_relaxed));
    for (weir__jarray *r = d->retired; r;) {
        weir__jarray *n = r->retired_next;
        weir__free(r);
        r = n;
    }
    d->retired = NULL;
    atomic_store_explicit(&d->array, NULL, memory_order_relaxed);
}

int weir__jd_push(weir__jobdeque *d, weir_job *job)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    /* acquire: pairs with a thief's CAS of top, so that the slot it read is
     * not overwritten before that read (the slot is reused only below top). */
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    weir__jarray *a = atomic_load_explicit(&d->array, memory_order_relaxed);
    if (b - t > a->cap - 1) {
        weir__jarray *n = array_new(a->cap * 2);
        if (!n)
            return -ENOMEM;
        for (int64_t i = t; i < b; i++)
            atomic_store_explicit(&n->slot[i & (n->cap - 1)],
                                  atomic_load_explicit(&a->slot[i & (a->cap - 1)],
                                                       memory_order_relaxed),
                                  memory_order_relaxed);
        /* release: a thief that loads the new array (acquire) sees the
         * copied slots. The old array stays readable until destroy. */
        atomic_store_explicit(&d->array, n, memory_order_release);
        a->retired_next = d->retired;
        d->retired = a;
        a = n;
    }
    atomic_store_explicit(&a->slot[b & (a->cap - 1)], job, memory_order_relaxed);
    /* release: pairs with the thief's seq_cst (acquire) load of bottom: the
     * slot and the job's contents are visible to whoever sees b + 1. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return 0;
}

weir_job *weir__jd_take(weir__jobdeque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
    weir__jarray *a = atomic_load_explicit(&d->array, memory_order_relaxed);
    /* seq_cst store then seq_cst load: the store-load order a thief's
     * seq_cst loads of top and bottom are checked against (Dekker). */
    atomic_store_explicit(&d->bottom, b, memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    if (t > b) { /* empty */
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
        return NULL;
    }
    weir_job *x = atomic_load_explicit(&a->slot[b & (a->cap - 1)], memory_order_relaxed);
    if (t == b) {
        /* the last item: race the thieves for it on top */
        if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                     memory_order_relaxed))
            x = NULL;
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

int weir__jd_steal(weir__jobdeque *d, weir_job **out)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    /* seq_cst (so also acquire): pairs with the owner's release store of
     * bottom in push, and orders against its seq_cst store in take. */
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
    if (t >= b)
        return WEIR__STEAL_EMPTY;
    /* acquire: pairs with the release store of a grown array */
    weir__jarray *a = atomic_load_explicit(&d->array, memory_order_acquire);
    weir_job *x = atomic_load_explicit(&a->slot[t & (a->cap - 1)], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return WEIR__STEAL_LOST;
    *out = x;
    return WEIR__STEAL_OK;
}

bool weir__jd_maybe_nonempty(weir__jobdeque *d)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
    return t < b;
}
