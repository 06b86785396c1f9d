/*
 * weir runtime — topology, pinning and memory without hwloc (meson option
 * hwloc=disabled).
 *
 * The machine is described as flat: every PU is a core of its own, in one
 * package, one NUMA node, with no L3 the planner could group by. That is
 * enough for correct scheduling; only the placement refinements are lost.
 * Synthetic topologies need hwloc's parser and are refused.
 */
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int weir__topo_load(const weir_config *cfg, weir__topo *out)
{
    if (out == NULL)
        return weir__error(-EINVAL, "topology: NULL output");
    memset(out, 0, sizeof *out);
    if (cfg != NULL && cfg->synthetic_topology != NULL)
        return weir__error(-ENODEV,
                           "config.synthetic_topology: invalid value '%.96s' (weir was built "
                           "without hwloc)",
                           cfg->synthetic_topology);

    /* The CPUs this process may run on, with their real OS numbers: under
     * taskset or a cgroup cpuset the online count would overstate what the
     * workers can use, and online CPUs need not be numbered 0..n-1. The
     * online count is the fallback when the mask cannot be read. */
    cpu_set_t set;
    CPU_ZERO(&set);
    unsigned npu = 0;
    bool have_mask = sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0;
    if (have_mask) {
        npu = (unsigned)CPU_COUNT(&set);
    } else {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        npu = n > 0 ? (unsigned)n : 1;
    }

    weir__pu *pus = weir__calloc(npu, sizeof *pus);
    if (pus == NULL)
        return weir__error(-ENOMEM, "topology: out of memory for %u PUs", npu);
    /* The machine's CPUs outside the mask, for the planner's message about
     * an explicit place naming one (see weir__topo.excluded). */
    long nconf = sysconf(_SC_NPROCESSORS_CONF);
    if (have_mask && nconf > (long)npu) {
        int ncpu = nconf < CPU_SETSIZE ? (int)nconf : CPU_SETSIZE;
        out->excluded = weir__calloc((size_t)ncpu, sizeof *out->excluded);
        if (out->excluded == NULL) {
            weir__free(pus);
            return weir__error(-ENOMEM, "topology: out of memory for %d CPUs", ncpu);
        }
        for (int cpu = 0; cpu < ncpu; cpu++)
            if (!CPU_ISSET(cpu, &set))
                out->excluded[out->nexcluded++] = cpu;
    }
    unsigned k = 0;
    for (int cpu = 0; k < npu; cpu++) {
        if (have_mask && !CPU_ISSET(cpu, &set))
            continue;
        pus[k] = (weir__pu){
            .os = cpu, .core = (int)k, .smt = 0, .l3 = -1, .numa = 0, .numa_os = 0, .pkg = 0};
        k++;
    }

    out->npu = npu;
    out->ncore = npu;
    out->nnuma = 1;
    out->nl3 = 0;
    out->npkg = 1;
    out->pu = pus;
    out->hw = NULL;
    out->synthetic = false;
    return 0;
}

void weir__topo_free(weir__topo *t)
{
    if (t == NULL)
        return;
    weir__free(t->pu);
    weir__free(t->excluded);
    memset(t, 0, sizeof *t);
}

int weir__pin_self(const weir__topo *t, int pu_os)
{
    (void)t;
    if (pu_os < 0 || pu_os >= CPU_SETSIZE)
        return weir__error(-EINVAL, "pin: PU %d is out of range", pu_os);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(pu_os, &set);
    int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (e != 0)
        return weir__error(-e, "pin: binding to PU %d failed (%s)", pu_os, strerror(e));
    return 0;
}

void *weir__numa_alloc(const weir__topo *t, size_t size, int numa_os)
{
    /* One node: nothing to bind; first touch by the worker does the rest. */
    (void)t;
    (void)numa_os;
    return weir__aligned_alloc(WEIR_CACHELINE, size);
}

void weir__numa_free(const weir__topo *t, void *p, size_t size)
{
    (void)t;
    (void)size;
    weir__free(p);
}
