/*
 * Unit tests: topology loading and the placement planner, on synthetic
 * multi-socket topologies (hwloc) so that every policy is exercised on a
 * small machine, plus one check that the real machine loads.
 *
 *   TWO_PKG  "pack:2 [numa] l3:2 core:8 pu:2"  64 PUs, 32 cores, 4 L3s, 2 nodes
 *   FOUR_PKG "pack:4 [numa] core:16 pu:1"      64 PUs, 64 cores, no L3, 4 nodes
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "weir_build_config.h"

#define TWO_PKG  "pack:2 [numa] l3:2 core:8 pu:2"
#define FOUR_PKG "pack:4 [numa] core:16 pu:1"

/* ---------------------------------------------------------------- helpers */

static void load(const char *synthetic, weir__topo *t)
{
    /* Synthetic topologies need hwloc's parser; the sysconf fallback
     * refuses them (checked in bad_synthetic_description_is_enodev). */
    if (!WEIR_HAVE_HWLOC && synthetic != NULL)
        cr_skip_test("built without hwloc: no synthetic topologies");
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.synthetic_topology = synthetic;
    int err = weir__topo_load(&cfg, t);
    cr_assert_eq(err, 0, "loading '%s': %s", synthetic ? synthetic : "machine", weir_last_error());
}

static void plan(const weir__topo *t, weir_affinity aff, unsigned workers, weir__plan *p)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.affinity = aff;
    cfg.workers = workers;
    int err = weir__plan_build(t, &cfg, p);
    cr_assert_eq(err, 0, "plan: %s", weir_last_error());
}

/* The topology entry of the PU with OS index `os`. */
static const weir__pu *pu_by_os(const weir__topo *t, int os)
{
    for (unsigned i = 0; i < t->npu; i++)
        if (t->pu[i].os == os)
            return &t->pu[i];
    cr_assert_fail("PU %d not in the topology", os);
    return NULL;
}

/* Every structural property a plan must have, whatever the policy:
 * per-worker NUMA/L3 consistent with the PU, victim lists that are a
 * permutation of the other workers, ordered by class (same L3, same node,
 * remote) and by index within a class, and class_end matching. */
static void check_plan_invariants(const weir__topo *t, const weir__plan *p)
{
    unsigned nw = p->nworkers;
    for (unsigned w = 0; w < nw; w++) {
        if (p->pu[w] >= 0) {
            const weir__pu *pu = pu_by_os(t, p->pu[w]);
            cr_assert_eq(p->numa[w], pu->numa, "worker %u", w);
            cr_assert_eq(p->numa_os[w], pu->numa_os, "worker %u", w);
            cr_assert_eq(p->l3[w], pu->l3, "worker %u", w);
        }
        const unsigned *list = p->victims + (size_t)w * (nw - 1);
        const unsigned *end = p->class_end + w * 3;
        cr_assert(end[0] <= end[1] && end[1] <= end[2], "worker %u: class_end not monotone", w);
        cr_assert_eq(end[2], nw - 1, "worker %u: victims do not cover the others", w);
        char seen[WEIR_MAX_WORKERS] = {0};
        for (unsigned k = 0; k < nw - 1; k++) {
            unsigned v = list[k];
            cr_assert(v < nw && v != w && !seen[v], "worker %u: bad victim %u at %u", w, v, k);
            seen[v] = 1;
            unsigned cls = k < end[0] ? 0 : k < end[1] ? 1 : 2;
            bool same_l3 = p->l3[w] >= 0 && p->l3[v] == p->l3[w];
            bool same_numa = p->numa[v] == p->numa[w];
            unsigned want = same_l3 ? 0 : same_numa ? 1 : 2;
            cr_assert_eq(cls, want, "worker %u: victim %u in class %u, expected %u", w, v, cls,
                         want);
            bool class_start = k == 0 || k == end[0] || k == end[1];
            if (!class_start)
                cr_assert(list[k - 1] < v, "worker %u: class %u not sorted by index", w, cls);
        }
    }
}

/* ---------------------------------------------------------------- topology */

Test(topology, real_machine_loads_with_at_least_one_pu)
{
    weir__topo t;
    load(NULL, &t);
    cr_assert(t.npu >= 1);
    cr_assert(t.ncore >= 1 && t.ncore <= t.npu);
    cr_assert(t.nnuma >= 1);
    cr_assert(t.npkg >= 1);
    cr_assert(!t.synthetic);
    for (unsigned i = 0; i < t.npu; i++) {
        cr_assert(t.pu[i].os >= 0);
        cr_assert(t.pu[i].core >= 0 && (unsigned)t.pu[i].core < t.ncore);
    }
    weir__plan p;
    plan(&t, WEIR_AFFINITY_COMPACT, 0, &p);
    cr_assert_eq(p.nworkers, t.ncore);
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

Test(topology, synthetic_two_packages_has_expected_shape)
{
    weir__topo t;
    load(TWO_PKG, &t);
    cr_assert(t.synthetic);
    cr_assert_eq(t.npu, 64u);
    cr_assert_eq(t.ncore, 32u);
    cr_assert_eq(t.nl3, 4u);
    cr_assert_eq(t.nnuma, 2u);
    cr_assert_eq(t.npkg, 2u);
    for (unsigned i = 0; i < t.npu; i++) {
        const weir__pu *p = &t.pu[i];
        cr_assert_eq(p->core, (int)i / 2);
        cr_assert_eq(p->smt, (int)i % 2);
        cr_assert_eq(p->l3, (int)i / 16);
        cr_assert_eq(p->pkg, (int)i / 32);
        cr_assert_eq(p->numa, p->pkg, "a node per package");
    }
    weir__topo_free(&t);

    load(FOUR_PKG, &t);
    cr_assert_eq(t.npu, 64u);
    cr_assert_eq(t.ncore, 64u);
    cr_assert_eq(t.nl3, 0u);
    cr_assert_eq(t.nnuma, 4u);
    cr_assert_eq(t.npkg, 4u);
    for (unsigned i = 0; i < t.npu; i++) {
        cr_assert_eq(t.pu[i].l3, -1);
        cr_assert_eq(t.pu[i].numa, (int)i / 16);
    }
    weir__topo_free(&t);
}

Test(topology, bad_synthetic_description_is_enodev)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.synthetic_topology = "pack:banana";
    weir__topo t;
    cr_assert_eq(weir__topo_load(&cfg, &t), -ENODEV);
    cr_assert(strstr(weir_last_error(), "pack:banana") != NULL, "%s", weir_last_error());
    if (!WEIR_HAVE_HWLOC)
        cr_assert(strstr(weir_last_error(), "without hwloc") != NULL, "%s", weir_last_error());
    weir__topo_free(&t); /* harmless on a failed load */
}

Test(topology, real_machine_pins_to_its_own_pus_only)
{
    weir__topo t;
    load(NULL, &t);
    /* Criterion runs each test in its own process, so the binding does not
     * leak. A sandbox may forbid binding; that is a failed pin, not a bug. */
    int err = weir__pin_self(&t, t.pu[t.npu - 1].os);
    cr_assert(err == 0 || err == -EPERM || err == -ENOSYS, "pin: %d %s", err, weir_last_error());
    cr_assert_eq(weir__pin_self(&t, 100000), -EINVAL);
    cr_assert_eq(weir__pin_self(&t, -1), -EINVAL);
    weir__topo_free(&t);
}

Test(topology, synthetic_pus_are_never_pinned_for_real)
{
    weir__topo t;
    load(TWO_PKG, &t);
    cr_assert_eq(weir__pin_self(&t, 0), -ENOTSUP);
    weir__topo_free(&t);
}

Test(topology, numa_alloc_is_zeroed_and_cache_line_aligned)
{
    const char *topos[] = {NULL, TWO_PKG};
    for (size_t k = 0; k < (WEIR_HAVE_HWLOC ? 2 : 1); k++) {
        weir__topo t;
        load(topos[k], &t);
        unsigned char *m = weir__numa_alloc(&t, 10000, t.pu[0].numa_os);
        cr_assert_not_null(m);
        cr_assert_eq((uintptr_t)m % WEIR_CACHELINE, 0u);
        for (int i = 0; i < 10000; i++)
            cr_assert_eq(m[i], 0);
        memset(m, 1, 10000);
        weir__numa_free(&t, m, 10000);
        weir__topo_free(&t);
    }
}

/* ---------------------------------------------------------------- compact */

Test(plan, compact_puts_workers_on_distinct_cores_in_order_first_pu)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir__plan p;
    plan(&t, WEIR_AFFINITY_COMPACT, 0, &p); /* 0 = one per core */
    cr_assert_eq(p.nworkers, 32u);
    for (unsigned w = 0; w < p.nworkers; w++) {
        const weir__pu *pu = pu_by_os(&t, p.pu[w]);
        cr_assert_eq(pu->core, (int)w, "worker %u on core %d", w, pu->core);
        cr_assert_eq(pu->smt, 0, "worker %u not on the first PU of its core", w);
        cr_assert_eq(p.numa[w], pu->pkg);
    }
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

Test(plan, compact_with_more_workers_than_cores_uses_smt_siblings_then_wraps)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir__plan p;
    plan(&t, WEIR_AFFINITY_COMPACT, 70, &p);
    for (unsigned w = 0; w < 32; w++)
        cr_assert_eq(pu_by_os(&t, p.pu[w])->smt, 0);
    for (unsigned w = 32; w < 64; w++) {
        const weir__pu *pu = pu_by_os(&t, p.pu[w]);
        cr_assert_eq(pu->smt, 1, "worker %u", w);
        cr_assert_eq(pu->core, (int)(w - 32), "worker %u", w);
    }
    /* 64 PUs, 70 workers: the last six oversubscribe from the start. */
    for (unsigned w = 64; w < 70; w++)
        cr_assert_eq(p.pu[w], p.pu[w - 64]);
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);

    /* No SMT at all: 4 workers on a 2-core topology share cores round-robin. */
    load("pack:1 core:2 pu:1", &t);
    plan(&t, WEIR_AFFINITY_COMPACT, 4, &p);
    cr_assert_eq(p.pu[0], 0);
    cr_assert_eq(p.pu[1], 1);
    cr_assert_eq(p.pu[2], 0);
    cr_assert_eq(p.pu[3], 1);
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

/* ---------------------------------------------------------------- scatter */

Test(plan, scatter_alternates_packages_and_matches_numa)
{
    weir__topo t;
    load(FOUR_PKG, &t);
    weir__plan p;
    plan(&t, WEIR_AFFINITY_SCATTER, 0, &p);
    cr_assert_eq(p.nworkers, 64u);
    bool used[64] = {false};
    for (unsigned w = 0; w < p.nworkers; w++) {
        const weir__pu *pu = pu_by_os(&t, p.pu[w]);
        cr_assert_eq(pu->pkg, (int)(w % 4), "worker %u on package %d", w, pu->pkg);
        cr_assert_eq(p.numa[w], pu->pkg, "worker %u: node differs from package", w);
        cr_assert(!used[pu->core], "core %d used twice", pu->core);
        used[pu->core] = true;
    }
    /* Within a package, cores are taken in order. */
    cr_assert_eq(pu_by_os(&t, p.pu[0])->core, 0);
    cr_assert_eq(pu_by_os(&t, p.pu[4])->core, 1);
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

Test(plan, scatter_spreads_over_l3s_within_a_package_before_smt)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir__plan p;
    plan(&t, WEIR_AFFINITY_SCATTER, 64, &p);
    /* Packages alternate; every second visit to a package switches L3:
     * worker 0 -> L3 0, 1 -> L3 2, 2 -> L3 1, 3 -> L3 3, 4 -> L3 0 ... */
    const int l3_cycle[4] = {0, 2, 1, 3};
    for (unsigned w = 0; w < 32; w++) {
        const weir__pu *pu = pu_by_os(&t, p.pu[w]);
        cr_assert_eq(pu->pkg, (int)(w % 2), "worker %u", w);
        cr_assert_eq(pu->l3, l3_cycle[w % 4], "worker %u on L3 %d", w, pu->l3);
        cr_assert_eq(pu->smt, 0, "worker %u uses an SMT sibling before all cores", w);
        cr_assert_eq(p.numa[w], pu->pkg);
    }
    for (unsigned w = 32; w < 64; w++)
        cr_assert_eq(pu_by_os(&t, p.pu[w])->smt, 1, "worker %u", w);
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

/* ---------------------------------------------------------------- victims */

Test(plan, victims_are_nearest_first)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir__plan p;
    plan(&t, WEIR_AFFINITY_COMPACT, 32, &p);
    check_plan_invariants(&t, &p);
    /* Worker 0 (core 0, L3 0, node 0): cores 1-7 share its L3, cores 8-15
     * its node, cores 16-31 are remote. */
    const unsigned *v0 = p.victims;
    cr_assert_eq(p.class_end[0], 7u);
    cr_assert_eq(p.class_end[1], 15u);
    cr_assert_eq(p.class_end[2], 31u);
    for (unsigned k = 0; k < 31; k++)
        cr_assert_eq(v0[k], k + 1);
    /* Worker 20 (L3 2, node 1): 16-23 minus itself, then 24-31, then 0-15. */
    const unsigned *v20 = p.victims + 20 * 31;
    cr_assert_eq(p.class_end[20 * 3 + 0], 7u);
    cr_assert_eq(p.class_end[20 * 3 + 1], 15u);
    cr_assert_eq(v20[0], 16u);
    cr_assert_eq(v20[4], 21u);
    cr_assert_eq(v20[7], 24u);
    cr_assert_eq(v20[15], 0u);
    weir__plan_free(&p);

    /* Without L3s, class 0 is empty and the node is the nearest class. */
    weir__topo_free(&t);
    load(FOUR_PKG, &t);
    plan(&t, WEIR_AFFINITY_SCATTER, 8, &p);
    check_plan_invariants(&t, &p);
    cr_assert_eq(p.class_end[0], 0u);
    cr_assert_eq(p.class_end[1], 1u); /* worker 4 is worker 0's node-mate */
    cr_assert_eq(p.victims[0], 4u);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

Test(plan, single_worker_has_no_victims)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir__plan p;
    plan(&t, WEIR_AFFINITY_COMPACT, 1, &p);
    cr_assert_eq(p.nworkers, 1u);
    cr_assert_eq(p.pu[0], 0);
    for (int c = 0; c < 3; c++)
        cr_assert_eq(p.class_end[c], 0u);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

/* ---------------------------------------------------------------- none, explicit */

Test(plan, affinity_none_leaves_workers_unpinned_with_compact_locality)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir__plan none, compact;
    plan(&t, WEIR_AFFINITY_NONE, 0, &none);
    plan(&t, WEIR_AFFINITY_COMPACT, 0, &compact);
    cr_assert_eq(none.nworkers, compact.nworkers);
    for (unsigned w = 0; w < none.nworkers; w++) {
        cr_assert_eq(none.pu[w], -1);
        cr_assert_eq(none.numa[w], compact.numa[w]);
        cr_assert_eq(none.numa_os[w], compact.numa_os[w]);
        cr_assert_eq(none.l3[w], compact.l3[w]);
    }
    size_t nv = (size_t)none.nworkers * (none.nworkers - 1);
    cr_assert(memcmp(none.victims, compact.victims, nv * sizeof *none.victims) == 0);
    check_plan_invariants(&t, &none);
    weir__plan_free(&none);
    weir__plan_free(&compact);
    weir__topo_free(&t);
}

Test(plan, explicit_list_assigns_places_round_robin)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir_config cfg;
    weir_config_init(&cfg);
    cr_assert_eq(weir_parse_places("40,3,17-18", cfg.places, WEIR_MAX_PLACES), 4);
    cfg.nplaces = 4;
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.workers = 6;
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());
    weir__plan p;
    cr_assert_eq(weir__plan_build(&t, &cfg, &p), 0, "%s", weir_last_error());
    const int want[6] = {40, 3, 17, 18, 40, 3};
    for (unsigned w = 0; w < 6; w++)
        cr_assert_eq(p.pu[w], want[w], "worker %u on PU %d", w, p.pu[w]);
    cr_assert_eq(p.numa[0], 1);
    cr_assert_eq(p.numa[1], 0);
    check_plan_invariants(&t, &p);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

Test(plan, explicit_places_are_os_indices)
{
    /* OS numbering differs from logical order here: PU P#4 is the second
     * PU of core 0, in package 0. */
    weir__topo t;
    load("pack:2 core:2 pu:2(indexes=0,4,1,5,2,6,3,7)", &t);
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.places[0] = 4;
    cfg.places[1] = 3;
    cfg.nplaces = 2;
    cfg.workers = 2;
    weir__plan p;
    cr_assert_eq(weir__plan_build(&t, &cfg, &p), 0, "%s", weir_last_error());
    cr_assert_eq(p.pu[0], 4);
    cr_assert_eq(p.pu[1], 3);
    cr_assert_eq(pu_by_os(&t, 4)->core, 0);
    cr_assert_eq(pu_by_os(&t, 4)->smt, 1);
    cr_assert_eq(pu_by_os(&t, 3)->pkg, 1);
    weir__plan_free(&p);

    /* Compact on this numbering: first PU of each core, i.e. P#0,1,2,3. */
    plan(&t, WEIR_AFFINITY_COMPACT, 0, &p);
    for (int w = 0; w < 4; w++)
        cr_assert_eq(p.pu[w], w);
    weir__plan_free(&p);
    weir__topo_free(&t);
}

Test(plan, explicit_pu_absent_from_topology_is_einval)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.places[0] = 1;
    cfg.places[1] = 64;
    cfg.nplaces = 2;
    cfg.workers = 1; /* even a place no worker would use must exist */
    weir__plan p;
    weir_clear_error();
    cr_assert_eq(weir__plan_build(&t, &cfg, &p), -EINVAL);
    cr_assert_str_eq(weir_last_error(), "config.places: PU 64 is not in the topology (PUs 0-63)");
    cr_assert_null(p.pu, "a failed build leaves nothing allocated");

    cfg.nplaces = 0;
    cr_assert_eq(weir__plan_build(&t, &cfg, &p), -EINVAL);
    weir__topo_free(&t);
}

/* ---------------------------------------------------------------- failure paths */

Test(plan, every_allocation_failure_is_enomem_and_leaves_nothing)
{
    weir__topo t;
    load(TWO_PKG, &t);
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_SCATTER;
    /* Fail the 1st, 2nd, ... allocation until the build needs fewer. */
    bool succeeded = false;
    for (long k = 1; k < 200 && !succeeded; k++) {
        weir__plan p;
        weir__alloc_fail_after(k);
        int err = weir__plan_build(&t, &cfg, &p);
        if (err == 0) {
            succeeded = true;
            check_plan_invariants(&t, &p);
        } else {
            cr_assert_eq(err, -ENOMEM, "k=%ld gave %d", k, err);
            cr_assert_null(p.pu);
            cr_assert_null(p.victims);
        }
        weir__plan_free(&p);
    }
    weir__alloc_fail_after(0);
    cr_assert(succeeded);
    weir__topo_free(&t);

    weir__alloc_fail_after(1);
    cfg.synthetic_topology = TWO_PKG;
    cr_assert_eq(weir__topo_load(&cfg, &t), -ENOMEM);
    weir__alloc_fail_after(0);
}
