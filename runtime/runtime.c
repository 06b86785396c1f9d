/* Runtime lifecycle: plan, allocate workers on their NUMA nodes, start, stop. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "scheduler.h"

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

static void free_runtime(weir_runtime *rt)
{
    if (rt->workers) {
        free_workers(rt, rt->nworkers);
        weir__free(rt->workers);
    }
    weir__plan_free(&rt->plan);
    weir__topo_free(&rt->topo);
    cds_wfcq_destroy(&rt->ihead, &rt->itail);
    weir__free(rt);
}

static void stop_and_join(weir_runtime *rt, unsigned started)
{
    atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst);
    weir__notify_all(rt);
    for (unsigned i = 0; i < started; i++)
        pthread_join(rt->workers[i]->thread, NULL);
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
    atomic_init(&rt->epoch, 0);
    atomic_init(&rt->waiters, 0);
    atomic_init(&rt->stopping, 0);
    atomic_init(&rt->started, 0);
    weir_latch_init(&rt->all_started);
    rt->created_ns = weir__now_ns();

    err = weir__topo_load(&cfg, &rt->topo);
    if (err) {
        cds_wfcq_destroy(&rt->ihead, &rt->itail);
        weir__free(rt);
        return err;
    }
    err = weir__plan_build(&rt->topo, &cfg, &rt->plan);
    if (err) {
        weir__topo_free(&rt->topo);
        cds_wfcq_destroy(&rt->ihead, &rt->itail);
        weir__free(rt);
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
        fprintf(stderr, "weir: warning: %u of %u workers could not be pinned (running unpinned)\n",
                rt->failed_pins, n);
    *out = rt;
    return 0;
}

void weir_runtime_destroy(weir_runtime *rt)
{
    if (!rt)
        return;
    if (weir__self() && weir__self()->rt == rt) {
        weir__error(-EDEADLK, "weir_runtime_destroy: called from a worker of the runtime");
        fprintf(stderr, "weir: weir_runtime_destroy called from one of its own workers; ignored\n");
        return;
    }
    stop_and_join(rt, rt->nworkers);
    if (rt->cfg.print_stats)
        weir_runtime_print_stats(rt, stderr);
    free_runtime(rt);
}

bool weir_runtime_stopping(const weir_runtime *rt)
{
    /* relaxed: a hint for layers above; destroy's join is what synchronizes */
    return rt && atomic_load_explicit(&((weir_runtime *)rt)->stopping, memory_order_relaxed);
}

unsigned weir_runtime_workers(const weir_runtime *rt)
{
    return rt ? rt->nworkers : 0;
}

int weir_runtime_worker_info(const weir_runtime *rt, unsigned worker, weir_worker_info *info)
{
    if (!rt || !info)
        return weir__error(-EINVAL, "weir_runtime_worker_info: NULL argument");
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
    if (!rt)
        return 0;
    unsigned n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->workers[i]->pu >= 0 &&
            !atomic_load_explicit(&rt->workers[i]->pinned, memory_order_relaxed))
            n++;
    return n;
}
