/*
 * Exactly-once harnesses for the two deques, shared by the Criterion tests
 * (tests/unit/test_*deque.c) and the stress programs (tests/stress/): an
 * owner thread pushes and pops while K thief threads steal; every id must be
 * claimed exactly once. Uses the runtime's internal API on stand-alone
 * "workers" (no scheduler threads), so it tests the deque alone.
 */
#ifndef WEIR_TESTS_DEQUE_HARNESS_H
#define WEIR_TESTS_DEQUE_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

typedef struct harness {
    weir_runtime *rt;
    weir_worker *owner;
    weir_worker *thieves[8];
    unsigned nthieves;
    _Atomic int stop;
    _Atomic uint8_t *claimed; /* per id */
    size_t maxid;
    _Atomic uint64_t by_thieves, by_owner, steal_ok, steal_empty, steal_lost;
} harness;

static harness *H; /* the tasks below need it; one harness at a time */

static weir_worker *harness_worker(weir_runtime *rt, unsigned index, unsigned initial)
{
    weir_worker *w = weir__aligned_alloc(WEIR_CACHELINE, sizeof *w);
    if (!w)
        return NULL;
    w->rt = rt;
    w->index = index;
    w->numa_os = -1;
    w->rng = 88172645463325252ULL + index;
    /* no victims: a stand-alone owner waiting on a stolen frame only
     * leapfrogs on its thief */
    static const unsigned no_victims[3] = {0, 0, 0};
    w->class_end = no_victims;
    w->victims = NULL;
    if (weir__fj_init(w, initial) || weir__jd_init(&w->jd, initial < 2 ? 2 : initial)) {
        weir__free(w);
        return NULL;
    }
    return w;
}

static void harness_free_worker(weir_worker *w)
{
    weir__fj_destroy(w);
    weir__jd_destroy(&w->jd);
    weir__free(w);
}

static int harness_init(harness *h, unsigned nthieves, size_t maxid, unsigned initial)
{
    memset(h, 0, sizeof *h);
    h->rt = weir__aligned_alloc(WEIR_CACHELINE, sizeof *h->rt);
    if (!h->rt)
        return -ENOMEM;
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.synthetic_topology = "core:2 pu:1";
    if (weir__topo_load(&cfg, &h->rt->topo))
        return -ENODEV;
    h->owner = harness_worker(h->rt, 0, initial);
    h->nthieves = nthieves;
    for (unsigned i = 0; i < nthieves; i++)
        h->thieves[i] = harness_worker(h->rt, i + 1, 2);
    h->maxid = maxid;
    h->claimed = calloc(maxid, 1);
    H = h;
    return h->owner && h->claimed ? 0 : -ENOMEM;
}

static void harness_fini(harness *h)
{
    harness_free_worker(h->owner);
    for (unsigned i = 0; i < h->nthieves; i++)
        harness_free_worker(h->thieves[i]);
    weir__topo_free(&h->rt->topo);
    weir__free(h->rt);
    free((void *)h->claimed);
}

/* ---- frame deque ---- */

WEIR_VOID_TASK_1(claim_frame, long, id)
{
    atomic_fetch_add_explicit(&H->claimed[id], 1, memory_order_relaxed);
    if (weir_w == H->owner)
        atomic_fetch_add_explicit(&H->by_owner, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&H->by_thieves, 1, memory_order_relaxed);
}

static __attribute__((unused)) void *fj_thief(void *arg)
{
    weir_worker *self = arg;
    while (!atomic_load_explicit(&H->stop, memory_order_acquire)) {
        int r = weir__fj_steal(self, H->owner, self->segs[0]);
        if (r == WEIR__STEAL_OK)
            atomic_fetch_add_explicit(&H->steal_ok, 1, memory_order_relaxed);
        else if (r == WEIR__STEAL_EMPTY)
            atomic_fetch_add_explicit(&H->steal_empty, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&H->steal_lost, 1, memory_order_relaxed);
    }
    return NULL;
}

/* Owner: push `n` frames (ids base..base+n-1) then sync them all, with a pop
 * every `pop_every` pushes in between to mix pushes and pops. */
static __attribute__((unused)) void fj_owner_round(long base, long n, long pop_every)
{
    weir_worker *weir_w = H->owner;
    weir_frame *weir_sp = weir_w->segs[0];
    long live = 0;
    for (long i = 0; i < n; i++) {
        WEIR_SPAWN(claim_frame, base + i);
        live++;
        if (pop_every && i % pop_every == pop_every - 1) {
            WEIR_SYNC(claim_frame);
            live--;
        }
    }
    while (live--)
        WEIR_SYNC(claim_frame);
}

/* @return the number of ids not claimed exactly once */
static __attribute__((unused)) size_t fj_run(harness *h, const long *sizes, size_t nsizes, long pop_every)
{
    pthread_t th[8];
    for (unsigned i = 0; i < h->nthieves; i++)
        pthread_create(&th[i], NULL, fj_thief, h->thieves[i]);
    long base = 0;
    for (size_t s = 0; s < nsizes; s++) {
        fj_owner_round(base, sizes[s], pop_every);
        base += sizes[s];
    }
    atomic_store_explicit(&h->stop, 1, memory_order_release);
    for (unsigned i = 0; i < h->nthieves; i++)
        pthread_join(th[i], NULL);
    size_t bad = 0;
    for (long i = 0; i < base; i++)
        bad += h->claimed[i] != 1;
    return bad;
}

/* ---- job deque ---- */

typedef struct id_job {
    weir_job job;
    long id;
} id_job;

static __attribute__((unused)) void jd_claim(long id, int by_owner)
{
    atomic_fetch_add_explicit(&H->claimed[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(by_owner ? &H->by_owner : &H->by_thieves, 1, memory_order_relaxed);
}

static __attribute__((unused)) void *jd_thief(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&H->stop, memory_order_acquire)) {
        weir_job *j;
        int r = weir__jd_steal(&H->owner->jd, &j);
        if (r == WEIR__STEAL_OK) {
            atomic_fetch_add_explicit(&H->steal_ok, 1, memory_order_relaxed);
            jd_claim(((id_job *)(void *)j)->id, 0);
        } else if (r == WEIR__STEAL_EMPTY) {
            atomic_fetch_add_explicit(&H->steal_empty, 1, memory_order_relaxed);
        } else {
            atomic_fetch_add_explicit(&H->steal_lost, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

/* Owner pushes ids in rounds of sizes[s], taking one back every `pop_every`
 * pushes, then drains. jobs[] must hold maxid entries. */
static __attribute__((unused)) size_t jd_run(harness *h, id_job *jobs, const long *sizes, size_t nsizes, long pop_every)
{
    pthread_t th[8];
    for (unsigned i = 0; i < h->nthieves; i++)
        pthread_create(&th[i], NULL, jd_thief, NULL);
    long base = 0;
    for (size_t s = 0; s < nsizes; s++) {
        for (long i = 0; i < sizes[s]; i++) {
            jobs[base + i].id = base + i;
            if (weir__jd_push(&h->owner->jd, &jobs[base + i].job) != 0)
                return (size_t)-1;
            if (pop_every && i % pop_every == pop_every - 1) {
                weir_job *j = weir__jd_take(&h->owner->jd);
                if (j)
                    jd_claim(((id_job *)(void *)j)->id, 1);
            }
        }
        weir_job *j;
        while ((j = weir__jd_take(&h->owner->jd)) != NULL)
            jd_claim(((id_job *)(void *)j)->id, 1);
        base += sizes[s];
    }
    atomic_store_explicit(&h->stop, 1, memory_order_release);
    for (unsigned i = 0; i < h->nthieves; i++)
        pthread_join(th[i], NULL);
    size_t bad = 0;
    for (long i = 0; i < base; i++)
        bad += h->claimed[i] != 1;
    return bad;
}

#endif /* WEIR_TESTS_DEQUE_HARNESS_H */
