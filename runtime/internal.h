/*
 * weir runtime — private declarations shared by the files of runtime/.
 * Never installed. `weir__` names are internal but not static.
 */
#ifndef WEIR_RUNTIME_INTERNAL_H
#define WEIR_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "weir.h"

/* ---------------------------------------------------------------- errors */

/* Record a printf-style message as this thread's last error and return `err`
 * (a negative errno), so that callers can write `return weir__error(-EINVAL, ...)`. */
int weir__error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- log */

/* Send a message to the log sink (weir_set_log(); stderr by default):
 * one sentence, without the "weir: " prefix or a newline. */
void weir__log(weir_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a finished text (the WEIR_DISPLAY_ENV report). */
void weir__log_text(weir_log_level level, const char *msg);

/* ---------------------------------------------------------------- allocation */

/* Every allocation of the runtime goes through these: they are the public
 * weir_malloc() & co. (the user's allocator hook, weir_set_allocator), so a
 * test can fail the k-th one. Any of them is released with weir__free(). */
void *weir__malloc(size_t size);
void *weir__calloc(size_t n, size_t size);
void *weir__aligned_alloc(size_t align, size_t size); /* zeroed */
void weir__free(void *p);
/* Test hook, a countdown in front of whatever allocator is set: make the
 * k-th allocation (malloc, calloc, aligned or realloc, any thread) from now
 * fail (k >= 1); 0 disables. */
void weir__alloc_fail_after(long k);
/* Blocks allocated through weir and not yet freed (a leak check for tests). */
long weir__alloc_live(void);

/* ---------------------------------------------------------------- environment */

/* WEIR_DISPLAY_ENV: 0 (unset, empty or false), 1 (true) or 2 ("verbose").
 * @return that, or -EINVAL with a message naming the value. */
int weir__env_display(void);

/* ---------------------------------------------------------------- topology */

/* One processing unit as the planner sees it: a flat, pure description that
 * hwloc (real or synthetic) or the sysconf fallback produces. Indices of
 * core / l3 / numa / pkg are logical (0..n-1 in topology order) except `os`
 * and `numa_os`, which are the OS indices (what pinning and membind use). */
typedef struct weir__pu {
    int os;      /* OS index of the PU */
    int core;    /* logical core index */
    int smt;     /* rank of this PU within its core (0 = first hyperthread) */
    int l3;      /* logical L3 index, -1 if the topology has none */
    int numa;    /* logical NUMA node index */
    int numa_os; /* OS index of that NUMA node */
    int pkg;     /* logical package index */
} weir__pu;

typedef struct weir__topo {
    unsigned npu;    /* PUs, in topology (logical) order */
    unsigned ncore;  /* cores */
    unsigned nnuma;  /* NUMA nodes */
    unsigned nl3;    /* L3 caches (0 if none) */
    unsigned npkg;   /* packages */
    weir__pu *pu;
    void *hw;        /* hwloc_topology_t when built with hwloc, else NULL */
    bool synthetic;  /* loaded from cfg->synthetic_topology: never pin for real */
    /* OS indices of the machine's PUs that the process may not run on (the
     * calling thread's affinity mask, a cgroup cpuset), sorted: they are not
     * in `pu`, and are kept only so that an explicit place naming one gets a
     * message that says why. Empty for a synthetic topology. */
    int *excluded;
    unsigned nexcluded;
} weir__topo;

/* Load the machine's topology, or cfg->synthetic_topology when set. The
 * machine's is restricted to the PUs the calling thread may run on (its
 * affinity mask, within the cgroup's cpuset): those are the PUs its threads
 * inherit, so the default worker count and every policy see only them.
 * @return 0, -ENODEV (hwloc failed / bad synthetic string; message set),
 *         -ENOMEM. Pair with weir__topo_free(). */
int weir__topo_load(const weir_config *cfg, weir__topo *out);
void weir__topo_free(weir__topo *t);

/* The placement plan: a pure function of (topology, config). */
typedef struct weir__plan {
    unsigned nworkers;
    int *pu;          /* [w] OS index of the PU worker w is pinned to; -1 = not pinned */
    int *numa_os;     /* [w] OS index of its NUMA node (-1 unknown) */
    int *numa;        /* [w] logical NUMA index (-1 unknown) */
    int *l3;          /* [w] logical L3 index (-1 unknown) */
    /* victims[w * (nworkers-1) + k]: the k-th victim of worker w, nearest
     * first: same L3, then same NUMA node, then the rest. class_end[w*3 + c]
     * is one past the last victim of class c (0 = same L3, 1 = same NUMA,
     * 2 = remote) within w's list. */
    unsigned *victims;
    unsigned *class_end;
} weir__plan;

/* Build the plan (call weir_config_validate() first: only affinity, workers
 * and nplaces are re-checked here). cfg->workers == 0 means one per core. With affinity NONE
 * workers are not pinned (pu = -1) but still get a NUMA node / L3 as if placed
 * compactly, for victim ordering. EXPLICIT uses cfg->places (OS indices) and
 * fails with -EINVAL if a listed PU is not in the topology.
 * @return 0, -EINVAL (message set), -ENOMEM. Pair with weir__plan_free(). */
int weir__plan_build(const weir__topo *t, const weir_config *cfg, weir__plan *out);
void weir__plan_free(weir__plan *p);

/* Pin the calling thread to PU `pu_os`. @return 0 or a negative errno
 * (-ENOTSUP on a synthetic topology; never fatal: the caller counts a failed
 * pin). */
int weir__pin_self(const weir__topo *t, int pu_os);

/* Allocate `size` zeroed, 64-byte aligned bytes bound to NUMA node `numa_os`
 * when the machine has several nodes (hwloc area membind), else plain memory.
 * Always through weir__aligned_alloc, so the failure hook covers it.
 * Pair with weir__numa_free(t, p, size) (size is informational). */
void *weir__numa_alloc(const weir__topo *t, size_t size, int numa_os);
void weir__numa_free(const weir__topo *t, void *p, size_t size);

/* ---------------------------------------------------------------- clock */

uint64_t weir__now_ns(void);

#endif /* WEIR_RUNTIME_INTERNAL_H */
