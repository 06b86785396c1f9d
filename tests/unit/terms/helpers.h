/*
 * Shared helpers of the term-layer unit tests: a 2-worker runtime per test
 * (Criterion forks a process per test), record types, checking sinks.
 * Callbacks run on workers, where Criterion assertions must not be used:
 * they record what they saw and the test asserts afterwards.
 */
#ifndef WEIR_TEST_TERMS_HELPERS_H
#define WEIR_TEST_TERMS_HELPERS_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

typedef struct item {
    int64_t id, value;
} item;

static weir_runtime *rt;

static inline void rt_setup(void)
{
    weir_config c;
    weir_config_init(&c);
    c.workers = 2;
    c.affinity = WEIR_AFFINITY_NONE;
    c.print_stats = false;
    cr_assert_eq(weir_runtime_create(&c, &rt), 0, "runtime: %s", weir_last_error());
}

static inline void rt_teardown(void)
{
    weir_runtime_destroy(rt);
    rt = NULL;
}

__attribute__((unused)) static const weir_exec_mode all_modes[3] = {
    WEIR_EXEC_POOL, WEIR_EXEC_THREADS, WEIR_EXEC_HYBRID};

static inline weir_pipeline_config cfg_of(weir_exec_mode m, unsigned batch, unsigned capacity)
{
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = m;
    c.print_stats = false;
    if (batch)
        c.batch = batch;
    if (capacity)
        c.capacity = capacity;
    return c;
}

/* Create + run + keep the pipeline for inspection; returns join's result. */
static inline int run_cfg(weir_term *t, const weir_pipeline_config *c, weir_pipeline **out)
{
    weir_pipeline *p = NULL;
    int r = weir_pipeline_create(rt, t, c, &p);
    cr_assert_eq(r, 0, "create (%s): %d %s", weir_exec_mode_name(c->mode), r,
                 weir_terms_last_error());
    r = weir_pipeline_run(p);
    if (out)
        *out = p;
    else
        weir_pipeline_destroy(p);
    return r;
}

static inline int run_mode(weir_term *t, weir_exec_mode m, weir_pipeline **out)
{
    weir_pipeline_config c = cfg_of(m, 0, 0);
    return run_cfg(t, &c, out);
}

/* A sink that checks its int64 input is start, start+1, ... */
typedef struct seq_check {
    int64_t next;
    uint64_t count;
    uint64_t bad;
} seq_check;

static inline int seq_check_fn(void *state, const void *in)
{
    seq_check *s = state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    if (v != s->next)
        s->bad++;
    s->next = v + 1;
    s->count++;
    return 0;
}

static inline weir_term *seq_sink(const char *name, seq_check *s, int64_t start)
{
    s->next = start;
    s->count = s->bad = 0;
    return weir_sink(name, sizeof(int64_t), seq_check_fn, s);
}

/* A sink counting records (atomically: several branches may share it). */
static inline int count_fn(void *state, const void *in)
{
    (void)in;
    atomic_fetch_add_explicit((_Atomic uint64_t *)state, 1, memory_order_relaxed);
    return 0;
}

static inline weir_term *count_sink(const char *name, size_t size, _Atomic uint64_t *counter)
{
    return weir_sink(name, size, count_fn, (void *)counter);
}

static inline void int64_twice(void *state, const void *in, void *out)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v *= 2;
    memcpy(out, &v, sizeof v);
}

static inline bool int64_even(void *state, const void *in)
{
    (void)state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    return v % 2 == 0;
}

#endif
