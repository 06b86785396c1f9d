/*
 * weir runtime — topology, pinning and NUMA-bound memory with hwloc 2.x.
 *
 * The rest of the runtime never sees hwloc: this file flattens the tree into
 * an array of weir__pu (the planner's input) and answers the two questions
 * that need the OS — pin this thread, allocate on that node. A synthetic
 * topology (cfg->synthetic_topology) is only a description for the planner:
 * its PUs do not exist, so this file never hands them to the OS.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hwloc.h>

#include "internal.h"

/* Logical index of the ancestor of `pu` of type `type`, or -1. */
static int weir__ancestor_index(hwloc_topology_t topo, hwloc_obj_t pu, hwloc_obj_type_t type)
{
    hwloc_obj_t a = hwloc_get_ancestor_obj_by_type(topo, type, pu);
    return a != NULL ? (int)a->logical_index : -1;
}

/* The NUMA node whose cpuset contains `pu_os`. In hwloc 2 NUMA nodes are
 * memory children hanging off the side of the tree, not ancestors of PUs,
 * so they cannot be found with get_ancestor; their cpusets say which PUs are
 * local to them. The first match wins (cpusets of nodes do not overlap on
 * real machines; CPU-less nodes have empty cpusets and never match). */
static hwloc_obj_t weir__numa_of(hwloc_topology_t topo, unsigned pu_os)
{
    hwloc_obj_t node = NULL;
    while ((node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, node)) != NULL) {
        if (node->cpuset != NULL && hwloc_bitmap_isset(node->cpuset, pu_os))
            return node;
    }
    return NULL;
}

static unsigned weir__count(hwloc_topology_t topo, hwloc_obj_type_t type)
{
    int n = hwloc_get_nbobjs_by_type(topo, type);
    return n > 0 ? (unsigned)n : 0;
}

static int weir__cmp_os(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Restrict the machine's topology to the PUs the calling thread may run on:
 * its affinity mask (taskset, sched_setaffinity, a launcher's binding) and
 * the cgroup's cpuset (hwloc leaves disallowed PUs out already). The workers
 * inherit that mask, so a PU outside it is one they cannot be pinned to, and
 * counting it would start a worker too many (libgomp and oneTBB count the
 * same mask). Cores, caches and NUMA nodes left without an allowed PU go
 * too. The PUs cut away are listed in `excluded` for the planner's message.
 * A mask that cannot be read leaves the machine whole: placement then errs
 * as before rather than failing create. @return 0, -ENOMEM or -ENODEV. */
static int weir__restrict_allowed(hwloc_topology_t topo, weir__topo *out)
{
    int err = 0;
    hwloc_bitmap_t mask = hwloc_bitmap_alloc();
    hwloc_bitmap_t cut = hwloc_bitmap_alloc();
    if (mask == NULL || cut == NULL) {
        err = weir__error(-ENOMEM, "topology: out of memory for a cpuset");
        goto out;
    }
    /* The calling thread's binding is what sched_getaffinity(0) returns and
     * what pthread_create() hands to each worker. */
    if (hwloc_get_cpubind(topo, mask, HWLOC_CPUBIND_THREAD) != 0)
        goto out;
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(topo);
    hwloc_bitmap_and(mask, mask, all);
    if (hwloc_bitmap_iszero(mask) || hwloc_bitmap_isincluded(all, mask))
        goto out; /* nothing allowed (cannot be) or everything: keep the machine */
    hwloc_bitmap_andnot(cut, all, mask);
    int n = hwloc_bitmap_weight(cut);
    if (n > 0) {
        out->excluded = weir__malloc((size_t)n * sizeof *out->excluded);
        if (out->excluded == NULL) {
            err = weir__error(-ENOMEM, "topology: out of memory for %d excluded PUs", n);
            goto out;
        }
        unsigned k = 0;
        unsigned id;
        hwloc_bitmap_foreach_begin(id, cut)
        {
            if (k < (unsigned)n)
                out->excluded[k++] = (int)id;
        }
        hwloc_bitmap_foreach_end();
        out->nexcluded = k;
        qsort(out->excluded, k, sizeof *out->excluded, weir__cmp_os);
    }
    if (hwloc_topology_restrict(topo, mask, HWLOC_RESTRICT_FLAG_REMOVE_CPULESS) != 0) {
        int e = errno;
        err = weir__error(e == ENOMEM ? -ENOMEM : -ENODEV,
                          "topology: hwloc could not restrict the topology to the allowed PUs "
                          "(%s)",
                          strerror(e));
    }
out:
    if (err < 0) {
        weir__free(out->excluded);
        out->excluded = NULL;
        out->nexcluded = 0;
    }
    hwloc_bitmap_free(mask);
    hwloc_bitmap_free(cut);
    return err;
}

int weir__topo_load(const weir_config *cfg, weir__topo *out)
{
    if (out == NULL)
        return weir__error(-EINVAL, "topology: NULL output");
    memset(out, 0, sizeof *out);
    const char *synthetic = cfg != NULL ? cfg->synthetic_topology : NULL;

    /* hwloc allocates the topology tree with libc's malloc, outside the
     * weir_allocator hook (hwloc has no allocator hook of its own); only the
     * flattened PU array below goes through weir. */
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0)
        return weir__error(-ENOMEM, "topology: hwloc_topology_init failed");
    if (synthetic != NULL && hwloc_topology_set_synthetic(topo, synthetic) != 0) {
        hwloc_topology_destroy(topo);
        return weir__error(-ENODEV,
                           "config.synthetic_topology: invalid value '%.96s' (hwloc cannot parse "
                           "it)",
                           synthetic);
    }
    if (hwloc_topology_load(topo) != 0) {
        int e = errno;
        hwloc_topology_destroy(topo);
        return weir__error(-ENODEV, "topology: hwloc could not load the %s topology (%s)",
                           synthetic != NULL ? "synthetic" : "machine", strerror(e));
    }
    /* A synthetic topology describes another machine: the caller's mask
     * says nothing about its PUs. */
    if (synthetic == NULL) {
        int err = weir__restrict_allowed(topo, out);
        if (err < 0) {
            hwloc_topology_destroy(topo);
            return err;
        }
    }

    unsigned npu = weir__count(topo, HWLOC_OBJ_PU);
    if (npu == 0) {
        weir__free(out->excluded);
        hwloc_topology_destroy(topo);
        return weir__error(-ENODEV, "topology: hwloc reports no processing unit");
    }
    weir__pu *pus = weir__calloc(npu, sizeof *pus);
    if (pus == NULL) {
        weir__free(out->excluded);
        hwloc_topology_destroy(topo);
        return weir__error(-ENOMEM, "topology: out of memory for %u PUs", npu);
    }

    /* PUs in logical order are a depth-first walk of the tree, so the PUs of
     * any one core (or cache, or package) are consecutive. That lets smt
     * ranks, and core numbers for PUs that hwloc could not group into cores,
     * be assigned by comparing each PU with the one before it. */
    hwloc_obj_t prev_core = NULL;
    int next_core = 0;
    for (unsigned i = 0; i < npu; i++) {
        hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, i);
        if (obj == NULL) {
            /* Cannot happen for i < the count hwloc gave, but a NULL here
             * must not become a crash inside the runtime's create(). */
            weir__free(pus);
            weir__free(out->excluded);
            hwloc_topology_destroy(topo);
            return weir__error(-ENODEV, "topology: hwloc lost PU %u of %u", i, npu);
        }
        weir__pu *p = &pus[i];
        p->os = (int)obj->os_index;

        hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, obj);
        if (core != NULL && i > 0 && core == prev_core) {
            p->core = pus[i - 1].core;
            p->smt = pus[i - 1].smt + 1;
        } else {
            /* A new core, or a PU without a core object (some VMs), which
             * is then its own core. */
            p->core = next_core++;
            p->smt = 0;
        }
        prev_core = core;

        p->l3 = weir__ancestor_index(topo, obj, HWLOC_OBJ_L3CACHE);
        int pkg = weir__ancestor_index(topo, obj, HWLOC_OBJ_PACKAGE);
        p->pkg = pkg >= 0 ? pkg : 0;

        hwloc_obj_t node = weir__numa_of(topo, obj->os_index);
        p->numa = node != NULL ? (int)node->logical_index : 0;
        p->numa_os = node != NULL ? (int)node->os_index : -1;
    }

    out->npu = npu;
    out->ncore = (unsigned)next_core;
    out->nnuma = weir__count(topo, HWLOC_OBJ_NUMANODE);
    if (out->nnuma == 0)
        out->nnuma = 1;
    out->nl3 = weir__count(topo, HWLOC_OBJ_L3CACHE);
    out->npkg = weir__count(topo, HWLOC_OBJ_PACKAGE);
    if (out->npkg == 0)
        out->npkg = 1;
    out->pu = pus;
    out->hw = topo;
    out->synthetic = synthetic != NULL;
    return 0;
}

void weir__topo_free(weir__topo *t)
{
    if (t == NULL)
        return;
    if (t->hw != NULL)
        hwloc_topology_destroy((hwloc_topology_t)t->hw);
    weir__free(t->pu);
    weir__free(t->excluded);
    memset(t, 0, sizeof *t);
}

int weir__pin_self(const weir__topo *t, int pu_os)
{
    if (t == NULL || t->hw == NULL || pu_os < 0)
        return weir__error(-EINVAL, "pin: no topology or no PU");
    /* The PUs of a synthetic topology are a description, not the machine's:
     * binding to "PU 37" of a made-up 64-PU box would bind to a real PU that
     * happens to share the number, or fail confusingly. */
    if (t->synthetic)
        return weir__error(-ENOTSUP, "pin: PU %d belongs to a synthetic topology", pu_os);
    hwloc_topology_t topo = (hwloc_topology_t)t->hw;
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(topo, (unsigned)pu_os);
    if (pu == NULL)
        return weir__error(-EINVAL, "pin: PU %d is not in the topology", pu_os);
    if (hwloc_set_cpubind(topo, pu->cpuset, HWLOC_CPUBIND_THREAD) != 0) {
        int e = errno != 0 ? errno : EINVAL;
        return weir__error(-e, "pin: binding to PU %d failed (%s)", pu_os, strerror(e));
    }
    return 0;
}

/* Pages are the unit of binding: a bound area gets whole pages of its own so
 * that binding it never moves a neighbouring allocation's data. */
static size_t weir__page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

void *weir__numa_alloc(const weir__topo *t, size_t size, int numa_os)
{
    bool bind = t != NULL && t->hw != NULL && !t->synthetic && t->nnuma > 1 && numa_os >= 0;
    if (!bind)
        return weir__aligned_alloc(WEIR_CACHELINE, size);

    /* Always the same allocator (so that weir__numa_free needs no record of
     * which path was taken, and the failure-injection hook sees it), then
     * migrate the pages to the node. weir__aligned_alloc has touched them
     * to zero them; MIGRATE moves them, and a failed bind is harmless: the
     * memory is still valid, only its placement is not the requested one. */
    size_t page = weir__page_size();
    if (size > SIZE_MAX - page)
        return NULL;
    size_t len = (size + page - 1) / page * page;
    void *p = weir__aligned_alloc(page, len);
    if (p == NULL)
        return NULL;
    hwloc_topology_t topo = (hwloc_topology_t)t->hw;
    hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(topo, (unsigned)numa_os);
    if (node != NULL)
        (void)hwloc_set_area_membind(topo, p, len, node->nodeset, HWLOC_MEMBIND_BIND,
                                     HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE);
    return p;
}

void weir__numa_free(const weir__topo *t, void *p, size_t size)
{
    (void)t;
    (void)size;
    weir__free(p);
}
