/* Runtime lifecycle: plan, allocate workers on their NUMA nodes, start, stop. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "tracing.h"

static void free_workers(weir_runtime *rt, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        weir_worker *w = rt->workers[i];
        if (!w)
            continue;
        weir__fj_destroy(w);
        if (atomic_load_explicit(&w->jd.array, memory_order_relaxed))
            weir__jd_destroy(&w->jd);
        weir__numa_free(&rt->topo, w, sizeof *w);
        rt->workers[i] = NULL;
    }
}

/*
 * Lifetime. Layers built on the runtime (the term layer's pipelines) keep a
 * pointer to it and may be destroyed after it. They attach
 * (weir_runtime_attach), and the handle -- this struct, nothing else --
 * stays valid until the last detach:
 *
 *   refs    = 1 (the owner, until destroy) + one per attachment
 *   destroy = stop and join the workers, free everything the struct points
 *             to (release_resources), store DESTROYED, drop the owner's
 *             reference
 *   detach  = drop one reference
 *
 * and whoever drops the last reference frees the struct (free_handle). So
 * the struct is freed exactly once, by destroy when nothing is attached
 * (as before) or by the last detach. Calls on a destroyed handle see
 * DESTROYED (weir__runtime_destroyed) before they read anything destroy
 * freed, and return -ESHUTDOWN or a neutral value (destroy also leaves
 * `workers` NULL, so a missed check faults rather than reads freed memory).
 *
 * Memory orders. Every drop is an acq_rel RMW on `refs`: release, so that
 * what its holder did with the struct (destroy: the teardown and the
 * DESTROYED store; a layer: its last reads) happens before the free;
 * acquire, so that the one that reaches 0 has seen every other holder's
 * release (the RMWs on `refs` form a release sequence) before it frees.
 * The destroying thread and a pipeline's thread thus never race on the
 * struct's memory, whichever of them drops last. An attach is an acquire
 * fetch_add: its caller holds a reference already (the owner's, or an
 * attachment of its own), so the count is > 0 and cannot reach 0 under it;
 * acquire, so that an attach that follows destroy's drop in the count's
 * modification order sees DESTROYED and fails. An attach that races with
 * destroy's beginning may succeed: the layer then sees the runtime stopping
 * at its next weir_runtime_stopping(), like any call that races with
 * destroy. A detach never drops the owner's reference (it refuses when only
 * that one is left and the runtime is not destroyed), so unbalanced detaches
 * cannot free a running runtime.
 */

/* Everything but the struct itself: the workers (their deques and frame
 * segments), the plan and the topology. `workers` is left NULL; `nworkers`
 * is not written (it stays immutable, so weir_runtime_workers() may run
 * concurrently with destroy). */
static void release_resources(weir_runtime *rt)
{
    if (rt->workers) {
        free_workers(rt, rt->nworkers);
        weir__free(rt->workers);
        rt->workers = NULL;
    }
    weir__plan_free(&rt->plan);
    weir__topo_free(&rt->topo);
}

static void free_handle(weir_runtime *rt)
{
    weir__timers_fini(rt);
    cds_wfcq_destroy(&rt->ihead, &rt->itail);
    weir__free(rt);
}

/* Create's failure paths: nothing can be attached yet. */
static void free_runtime(weir_runtime *rt)
{
    release_resources(rt);
    free_handle(rt);
}

/* Drop one reference; the last one frees the struct (see "Lifetime"). */
static void unref(weir_runtime *rt)
{
    /* acq_rel: release our accesses to the struct, acquire everybody
     * else's when we are the last; pairs with the other drops ("Lifetime"). */
    if (atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) == 1)
        free_handle(rt);
}

/* The caller has set `stopping` (seq_cst: see weir__work_visible(), a
 * parking worker's re-check either sees it or parks on a key that the
 * epoch bump below changes). */
static void stop_and_join(weir_runtime *rt, unsigned started)
{
    weir__notify_all(rt);
    for (unsigned i = 0; i < started; i++)
        pthread_join(rt->workers[i]->thread, NULL);
}

/* WEIR_DISPLAY_ENV: the report of the first runtime created in the process,
 * like OMP_DISPLAY_ENV (once per process). A bad value is a warning, not a
 * failed create: the variable only asks for a report. */
static void weir__display_once(const weir_runtime *rt)
{
    static atomic_flag shown = ATOMIC_FLAG_INIT;
    if (getenv("WEIR_DISPLAY_ENV") == NULL)
        return;
    /* relaxed: only the flag's own value matters, nothing is published. */
    if (atomic_flag_test_and_set_explicit(&shown, memory_order_relaxed))
        return;
    char saved[256];
    snprintf(saved, sizeof saved, "%s", weir_last_error());
    int level = weir__env_display();
    if (level < 0)
        weir__log(WEIR_LOG_WARNING, "%s; no report", weir_last_error());
    else if (level > 0)
        weir__display_env(rt, level);
    weir__error(0, "%s", saved);
}

int weir_runtime_create(const weir_config *user_cfg, weir_runtime **out)
{
    if (!out)
        return weir__error(-EINVAL, "weir_runtime_create: out is NULL");
    weir_config cfg;
    if (user_cfg) {
        cfg = *user_cfg;
    } else {
        weir_config_init(&cfg);
        int err = weir_config_from_env(&cfg);
        if (err)
            return err;
    }
    int err = weir_config_validate(&cfg);
    if (err)
        return err;

    weir_runtime *rt = weir__aligned_alloc(WEIR_CACHELINE, sizeof *rt);
    if (!rt)
        return weir__error(-ENOMEM, "weir_runtime_create: out of memory");
    rt->cfg = cfg;
    cds_wfcq_init(&rt->ihead, &rt->itail);
    weir__timers_init(rt);
    if (weir__config_sources(&cfg, rt->cfg_src) < 0) {
        free_handle(rt);
        return weir__error(-ENOMEM, "weir_runtime_create: out of memory");
    }
    atomic_init(&rt->epoch, 0);
    atomic_init(&rt->waiters, 0);
    atomic_init(&rt->stopping, WEIR__RT_RUNNING);
    atomic_init(&rt->refs, 1); /* the owner's, dropped by destroy */
    atomic_init(&rt->submitters, 0);
    atomic_init(&rt->started, 0);
    weir_latch_init(&rt->all_started);
    rt->created_ns = weir__now_ns();

    err = weir__topo_load(&cfg, &rt->topo);
    if (err) {
        free_handle(rt);
        return err;
    }
    err = weir__plan_build(&rt->topo, &cfg, &rt->plan);
    if (err) {
        weir__topo_free(&rt->topo);
        free_handle(rt);
        return err;
    }
    unsigned n = rt->plan.nworkers;
    rt->nworkers = n;
    rt->workers = weir__calloc(n, sizeof *rt->workers);
    if (!rt->workers) {
        free_runtime(rt);
        return weir__error(-ENOMEM, "weir_runtime_create: out of memory");
    }

    /* Each worker's struct, frame segments and job deque are bound to its
     * NUMA node (hwloc membind on multi-node machines). */
    for (unsigned i = 0; i < n; i++) {
        int node = rt->plan.numa_os[i];
        weir_worker *w = weir__numa_alloc(&rt->topo, sizeof *w, node);
        if (!w) {
            free_runtime(rt);
            return weir__error(-ENOMEM, "weir_runtime_create: out of memory for worker %u", i);
        }
        rt->workers[i] = w;
        w->rt = rt;
        w->index = i;
        w->pu = rt->plan.pu[i];
        w->numa_os = node;
        w->numa = rt->plan.numa[i];
        w->l3 = rt->plan.l3[i];
        w->victims = rt->plan.victims + (size_t)i * (n - 1);
        w->class_end = rt->plan.class_end + (size_t)i * 3;
        w->rng = 0x9E3779B97F4A7C15ULL * (i + 1) ^ rt->created_ns;
        if (!w->rng)
            w->rng = 1;
        err = weir__fj_init(w, cfg.deque_initial);
        if (!err)
            err = weir__jd_init(&w->jd, 256);
        if (err) {
            free_runtime(rt);
            return weir__error(err, "weir_runtime_create: cannot allocate the deques of worker %u",
                               i);
        }
    }

    /* Thread stacks and thread-local storage come from the C library
     * (mmap), outside the weir_allocator hook. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, cfg.stack_size ? cfg.stack_size : (size_t)8 << 20);
    for (unsigned i = 0; i < n; i++) {
        int e = pthread_create(&rt->workers[i]->thread, &attr, weir__worker_main, rt->workers[i]);
        if (e) {
            pthread_attr_destroy(&attr);
            /* seq_cst: see stop_and_join() */
            atomic_store_explicit(&rt->stopping, WEIR__RT_STOPPING, memory_order_seq_cst);
            stop_and_join(rt, i);
            free_runtime(rt);
            return weir__error(-EAGAIN, "weir_runtime_create: cannot start worker %u: %s", i,
                               weir_strerror(-e));
        }
    }
    pthread_attr_destroy(&attr);
    weir_latch_wait(&rt->all_started);
    rt->failed_pins = weir_runtime_failed_pins(rt);
    if (rt->failed_pins && !rt->topo.synthetic)
        weir__log(WEIR_LOG_WARNING, "%u of %u workers could not be pinned (running unpinned)",
                  rt->failed_pins, n);
    weir__display_once(rt);
    /* WEIR_TRACE: trace until this runtime's destroy (only once created:
     * a failed create has no destroy to write the file) */
    weir__trace_env_start(rt);
    *out = rt;
    return 0;
}

void weir_runtime_destroy(weir_runtime *rt)
{
    if (!rt)
        return;
    if (weir__self() && weir__self()->rt == rt) {
        weir__error(-EDEADLK, "weir_runtime_destroy: called from a worker of the runtime");
        weir__log(WEIR_LOG_WARNING,
                  "weir_runtime_destroy called from one of its own workers; ignored");
        return;
    }
    /* A second destroy is a misuse; while an attachment keeps the struct
     * alive it can at least be refused (and a concurrent one too: only one
     * caller wins the CAS). seq_cst: see stop_and_join(). */
    int exp = WEIR__RT_RUNNING;
    if (!atomic_compare_exchange_strong_explicit(&rt->stopping, &exp, WEIR__RT_STOPPING,
                                                 memory_order_seq_cst, memory_order_relaxed)) {
        weir__error(-EALREADY, "weir_runtime_destroy: the runtime is already %s",
                    exp == WEIR__RT_DESTROYED ? "destroyed" : "being destroyed");
        weir__log(WEIR_LOG_WARNING, "weir_runtime_destroy called twice on one runtime; ignored");
        return;
    }
    stop_and_join(rt, rt->nworkers);
    /* Timers still armed now never fire: drop them, say so (include/weir/
     * timer.h). Later arms see the heap closed and get -ESHUTDOWN. */
    size_t dropped = weir__timers_shutdown(rt);
    if (dropped)
        weir__log(WEIR_LOG_WARNING,
                  "weir_runtime_destroy: %zu armed timer%s dropped before their deadline "
                  "(weir_timer_status() reports WEIR_TIMER_DROPPED)",
                  dropped, dropped == 1 ? "" : "s");
    weir__trace_env_stop(rt);
    if (rt->cfg.print_stats)
        weir_runtime_print_stats(rt, stderr);
    release_resources(rt);
    /* release: pairs with the acquire in weir__runtime_destroyed(): a caller
     * that sees DESTROYED sees `workers` NULL too. */
    atomic_store_explicit(&rt->stopping, WEIR__RT_DESTROYED, memory_order_release);
    unref(rt); /* the owner's reference: frees the struct unless attached */
}

int weir_runtime_attach(weir_runtime *rt)
{
    if (!rt)
        return weir__error(-EINVAL, "weir_runtime_attach: runtime is NULL");
    /* acquire: pairs with destroy's release drop of the owner's reference
     * (unref): if that drop came first, we see DESTROYED below. The caller
     * holds a reference, so the count cannot reach 0 under us. */
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_acquire);
    /* relaxed: ordered by the acquire above; only the value decides (an
     * attach racing with the beginning of destroy may succeed, see
     * "Lifetime"). */
    int st = atomic_load_explicit(&rt->stopping, memory_order_relaxed);
    if (st == WEIR__RT_RUNNING)
        return 0;
    unref(rt); /* may free the struct: the last access */
    return weir__error(-ESHUTDOWN, "weir_runtime_attach: the runtime %s",
                       st == WEIR__RT_DESTROYED ? "was destroyed" : "is being destroyed");
}

void weir_runtime_detach(weir_runtime *rt)
{
    if (!rt)
        return;
    /* Refuse a detach that would drop the owner's reference (more detaches
     * than attaches): that would free a runtime whose workers still run.
     * acquire (load and CAS failure): pairs with destroy's release drop, so
     * a count of 1 after destroy's drop comes with the DESTROYED state.
     * acq_rel on success: as unref(). */
    unsigned long n = atomic_load_explicit(&rt->refs, memory_order_acquire);
    do {
        if (n == 0 || (n == 1 && !weir__runtime_destroyed(rt))) {
            weir__error(-EINVAL, "weir_runtime_detach: the runtime has no attachment left");
            weir__log(WEIR_LOG_WARNING, "weir_runtime_detach without a matching attach; ignored");
            return;
        }
    } while (!atomic_compare_exchange_weak_explicit(&rt->refs, &n, n - 1, memory_order_acq_rel,
                                                    memory_order_acquire));
    if (n == 1)
        free_handle(rt);
}

bool weir_runtime_stopping(const weir_runtime *rt)
{
    /* relaxed: a hint for layers above; destroy's join is what synchronizes.
     * STOPPING and DESTROYED both count. */
    return rt && atomic_load_explicit(&((weir_runtime *)rt)->stopping, memory_order_relaxed) !=
                     WEIR__RT_RUNNING;
}

unsigned weir_runtime_workers(const weir_runtime *rt)
{
    return rt && !weir__runtime_destroyed(rt) ? rt->nworkers : 0;
}

int weir_runtime_worker_info(const weir_runtime *rt, unsigned worker, weir_worker_info *info)
{
    if (!rt || !info)
        return weir__error(-EINVAL, "weir_runtime_worker_info: NULL argument");
    if (weir__runtime_destroyed(rt))
        return weir__error(-ESHUTDOWN, "weir_runtime_worker_info: the runtime was destroyed");
    if (worker >= rt->nworkers)
        return weir__error(-EINVAL, "weir_runtime_worker_info: worker %u out of range (0..%u)",
                           worker, rt->nworkers - 1);
    const weir_worker *w = rt->workers[worker];
    info->pu = w->pu;
    info->numa_node = w->numa_os;
    info->l3 = w->l3;
    info->pinned = atomic_load_explicit(&w->pinned, memory_order_relaxed);
    return 0;
}

unsigned weir_runtime_failed_pins(const weir_runtime *rt)
{
    if (!rt || weir__runtime_destroyed(rt))
        return 0;
    unsigned n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i]->pu >= 0 &&
            !atomic_load_explicit(&rt->workers[i]->pinned, memory_order_relaxed))
            n++;
    return n;
}
