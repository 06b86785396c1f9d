/*
 * weir runtime — the placement planner: which PU each worker is pinned to,
 * which NUMA node and L3 it belongs to, and in which order it looks for
 * victims.
 *
 * The planner is a pure function of (topology, config): it touches no OS
 * state, so every policy can be tested on synthetic multi-socket topologies
 * on a small machine, and the runtime only executes the plan.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---------------------------------------------------------------- orders */

/* The four levels scatter spreads over, outermost first. */
enum { WEIR__LVL_PKG, WEIR__LVL_NUMA, WEIR__LVL_L3, WEIR__LVL_CORE, WEIR__NLVL };

static int weir__level_key(const weir__pu *p, int level)
{
    switch (level) {
    case WEIR__LVL_PKG:
        return p->pkg;
    case WEIR__LVL_NUMA:
        return p->numa;
    case WEIR__LVL_L3:
        return p->l3;
    default:
        return p->core;
    }
}

/* Reorder idx[0..n) (PU indices in topology order) so that consecutive
 * entries are as far apart as the hierarchy allows: group by the key of
 * `level` (groups in order of first appearance, members in their current
 * order), order each group the same way one level down, then deal the groups
 * round-robin, one entry from each in turn. Dealing rather than concatenating
 * is what sends worker 0 to package 0, worker 1 to package 1, and worker 2
 * back to package 0 but to its other NUMA node or L3.
 * @return 0 or -ENOMEM. */
static int weir__scatter(const weir__pu *pus, unsigned *idx, unsigned n, int level)
{
    if (n <= 1 || level >= WEIR__NLVL)
        return 0;
    int err = -ENOMEM;
    unsigned *tmp = weir__malloc(n * sizeof *tmp);
    int *keys = weir__malloc(n * sizeof *keys);
    unsigned *start = weir__malloc((n + 1) * sizeof *start);
    unsigned *pos = weir__malloc(n * sizeof *pos);
    if (tmp == NULL || keys == NULL || start == NULL || pos == NULL)
        goto out;

    /* Distinct keys in order of first appearance, and each group's size. */
    unsigned ngroups = 0;
    for (unsigned i = 0; i < n; i++) {
        int k = weir__level_key(&pus[idx[i]], level);
        unsigned g = 0;
        while (g < ngroups && keys[g] != k)
            g++;
        if (g == ngroups) {
            keys[ngroups] = k;
            pos[ngroups] = 0;
            ngroups++;
        }
        pos[g]++;
    }
    /* Stable partition into tmp: group g occupies tmp[start[g]..start[g+1]). */
    start[0] = 0;
    for (unsigned g = 0; g < ngroups; g++)
        start[g + 1] = start[g] + pos[g];
    for (unsigned g = 0; g < ngroups; g++)
        pos[g] = start[g];
    for (unsigned i = 0; i < n; i++) {
        int k = weir__level_key(&pus[idx[i]], level);
        unsigned g = 0;
        while (keys[g] != k)
            g++;
        tmp[pos[g]++] = idx[i];
    }
    for (unsigned g = 0; g < ngroups; g++) {
        err = weir__scatter(pus, tmp + start[g], start[g + 1] - start[g], level + 1);
        if (err < 0)
            goto out;
    }
    /* Deal. */
    for (unsigned g = 0; g < ngroups; g++)
        pos[g] = start[g];
    for (unsigned k = 0; k < n;) {
        for (unsigned g = 0; g < ngroups; g++) {
            if (pos[g] < start[g + 1])
                idx[k++] = tmp[pos[g]++];
        }
    }
    err = 0;
out:
    weir__free(tmp);
    weir__free(keys);
    weir__free(start);
    weir__free(pos);
    return err;
}

/* Fill order[0..npu) with every PU index: first the first PU (smt rank 0)
 * of each core, then the second PU of each core, and so on, so that workers
 * share a core only once every core has one. Within one smt rank the cores
 * come in topology order (compact) or spread by weir__scatter (scatter). */
static int weir__pu_order(const weir__topo *t, bool scatter, unsigned *order)
{
    int max_smt = 0;
    for (unsigned i = 0; i < t->npu; i++)
        if (t->pu[i].smt > max_smt)
            max_smt = t->pu[i].smt;
    unsigned k = 0;
    for (int s = 0; s <= max_smt; s++) {
        unsigned first = k;
        /* A negative rank (not produced by the loaders) counts as rank 0,
         * so that every PU lands in the order exactly once. */
        for (unsigned i = 0; i < t->npu; i++)
            if ((t->pu[i].smt > 0 ? t->pu[i].smt : 0) == s)
                order[k++] = i;
        if (scatter) {
            int err = weir__scatter(t->pu, order + first, k - first, WEIR__LVL_PKG);
            if (err < 0)
                return err;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- explicit */

static int weir__cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Write the topology's PU OS indices as a range list ("0-15", "0-3,8") into
 * buf, cut short with "..." if it does not fit, so that an error message can
 * say which PUs would have been valid. */
static void weir__format_pus(const weir__topo *t, char *buf, size_t cap)
{
    buf[0] = '\0';
    int *os = weir__malloc(t->npu * sizeof *os);
    if (os == NULL)
        return;
    for (unsigned i = 0; i < t->npu; i++)
        os[i] = t->pu[i].os;
    qsort(os, t->npu, sizeof *os, weir__cmp_int);
    size_t len = 0;
    for (unsigned i = 0; i < t->npu;) {
        unsigned j = i;
        while (j + 1 < t->npu && os[j + 1] == os[j] + 1)
            j++;
        char item[32];
        int n = j > i ? snprintf(item, sizeof item, "%s%d-%d", i ? "," : "", os[i], os[j])
                      : snprintf(item, sizeof item, "%s%d", i ? "," : "", os[i]);
        if (n < 0 || len + (size_t)n + 4 > cap) {
            if (len + 4 <= cap)
                memcpy(buf + len, "...", 4);
            break;
        }
        memcpy(buf + len, item, (size_t)n + 1);
        len += (size_t)n;
        i = j + 1;
    }
    weir__free(os);
}

static int weir__find_pu(const weir__topo *t, unsigned os)
{
    for (unsigned i = 0; i < t->npu; i++)
        if (t->pu[i].os >= 0 && (unsigned)t->pu[i].os == os)
            return (int)i;
    return -1;
}

/* A PU of the machine that the process may not run on (weir__topo.excluded). */
static bool weir__is_excluded(const weir__topo *t, unsigned os)
{
    for (unsigned i = 0; i < t->nexcluded; i++)
        if (t->excluded[i] >= 0 && (unsigned)t->excluded[i] == os)
            return true;
    return false;
}

/* ---------------------------------------------------------------- victims */

/* 0 = shares an L3 with w, 1 = shares a NUMA node, 2 = remote. A worker
 * whose cache or node is unknown (-1) shares it with nobody. */
static unsigned weir__victim_class(const weir__plan *p, unsigned w, unsigned v)
{
    if (p->l3[w] >= 0 && p->l3[v] == p->l3[w])
        return 0;
    if (p->numa[w] >= 0 && p->numa[v] == p->numa[w])
        return 1;
    return 2;
}

static void weir__fill_victims(weir__plan *p)
{
    unsigned nw = p->nworkers;
    for (unsigned w = 0; w < nw; w++) {
        unsigned *list = p->victims + (size_t)w * (nw - 1);
        unsigned k = 0;
        for (unsigned c = 0; c < 3; c++) {
            for (unsigned v = 0; v < nw; v++)
                if (v != w && weir__victim_class(p, w, v) == c)
                    list[k++] = v;
            p->class_end[w * 3 + c] = k;
        }
    }
}

/* ---------------------------------------------------------------- build */

int weir__plan_build(const weir__topo *t, const weir_config *cfg, weir__plan *out)
{
    if (out == NULL || t == NULL || cfg == NULL)
        return weir__error(-EINVAL, "plan: NULL argument");
    memset(out, 0, sizeof *out);
    if (t->npu == 0 || t->pu == NULL)
        return weir__error(-EINVAL, "plan: empty topology");

    /* The planner re-checks what it relies on instead of trusting that
     * weir_config_validate() ran: it indexes arrays with these values. */
    int aff = (int)cfg->affinity;
    if (aff < (int)WEIR_AFFINITY_NONE || aff > (int)WEIR_AFFINITY_EXPLICIT)
        return weir__error(-EINVAL, "config.affinity: invalid value %d", aff);
    unsigned nw = cfg->workers != 0 ? cfg->workers : (t->ncore != 0 ? t->ncore : t->npu);
    if (nw > WEIR_MAX_WORKERS)
        return weir__error(-EINVAL, "config.workers: invalid value %u (expected 0..%u)", nw,
                           (unsigned)WEIR_MAX_WORKERS);
    bool expl = cfg->affinity == WEIR_AFFINITY_EXPLICIT;
    if (expl && (cfg->nplaces == 0 || cfg->nplaces > WEIR_MAX_PLACES))
        return weir__error(-EINVAL,
                           "config.nplaces: invalid value %u (affinity explicit needs 1..%u "
                           "places)",
                           cfg->nplaces, (unsigned)WEIR_MAX_PLACES);

    int err = -ENOMEM;
    unsigned *order = NULL;
    int *place_idx = NULL;
    out->nworkers = nw;
    out->pu = weir__malloc(nw * sizeof *out->pu);
    out->numa_os = weir__malloc(nw * sizeof *out->numa_os);
    out->numa = weir__malloc(nw * sizeof *out->numa);
    out->l3 = weir__malloc(nw * sizeof *out->l3);
    /* One worker has no victims; keep the array non-NULL anyway so that
     * "allocated" and "empty" are not confused by callers. */
    size_t nvict = (size_t)nw * (nw - 1);
    out->victims = weir__malloc((nvict > 0 ? nvict : 1) * sizeof *out->victims);
    out->class_end = weir__malloc((size_t)nw * 3 * sizeof *out->class_end);
    if (out->pu == NULL || out->numa_os == NULL || out->numa == NULL || out->l3 == NULL ||
        out->victims == NULL || out->class_end == NULL)
        goto fail_nomem;

    if (expl) {
        /* Every listed place must exist, even one no worker will use:
         * a typo in the list is an error whatever the worker count. */
        place_idx = weir__malloc(cfg->nplaces * sizeof *place_idx);
        if (place_idx == NULL)
            goto fail_nomem;
        for (unsigned i = 0; i < cfg->nplaces; i++) {
            place_idx[i] = weir__find_pu(t, cfg->places[i]);
            if (place_idx[i] < 0) {
                char have[96];
                weir__format_pus(t, have, sizeof have);
                if (weir__is_excluded(t, cfg->places[i]))
                    err = weir__error(-EINVAL,
                                      "config.places: PU %u is outside the CPUs this process may "
                                      "run on (allowed PUs %s)",
                                      cfg->places[i], have);
                else
                    err =
                        weir__error(-EINVAL, "config.places: PU %u is not in the topology (PUs %s)",
                                    cfg->places[i], have);
                goto fail;
            }
        }
        for (unsigned w = 0; w < nw; w++) {
            const weir__pu *p = &t->pu[place_idx[w % cfg->nplaces]];
            out->pu[w] = p->os;
            out->numa_os[w] = p->numa_os;
            out->numa[w] = p->numa;
            out->l3[w] = p->l3;
        }
    } else {
        order = weir__malloc(t->npu * sizeof *order);
        if (order == NULL)
            goto fail_nomem;
        err = weir__pu_order(t, cfg->affinity == WEIR_AFFINITY_SCATTER, order);
        if (err < 0)
            goto fail_nomem;
        /* More workers than PUs wrap around: oversubscription is allowed
         * (4 workers on a 2-core box), the OS time-slices them. */
        for (unsigned w = 0; w < nw; w++) {
            const weir__pu *p = &t->pu[order[w % t->npu]];
            out->pu[w] = cfg->affinity == WEIR_AFFINITY_NONE ? -1 : p->os;
            out->numa_os[w] = p->numa_os;
            out->numa[w] = p->numa;
            out->l3[w] = p->l3;
        }
    }

    weir__fill_victims(out);
    weir__free(order);
    weir__free(place_idx);
    return 0;

fail_nomem:
    err = weir__error(-ENOMEM, "plan: out of memory for %u workers", nw);
fail:
    weir__free(order);
    weir__free(place_idx);
    weir__plan_free(out);
    return err;
}

void weir__plan_free(weir__plan *p)
{
    if (p == NULL)
        return;
    weir__free(p->pu);
    weir__free(p->numa_os);
    weir__free(p->numa);
    weir__free(p->l3);
    weir__free(p->victims);
    weir__free(p->class_end);
    memset(p, 0, sizeof *p);
}
