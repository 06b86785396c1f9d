/* Per-worker statistics: snapshot, totals, reset and the WEIR_STATS table. */
#include <inttypes.h>
#include <string.h>

#include "scheduler.h"

#define NSTATS (sizeof(weir_worker_stats) / sizeof(uint64_t))
_Static_assert(sizeof(((weir_worker *)0)->stats_base) == sizeof(weir_worker_stats),
               "stats_base mirrors weir_worker_stats");

/* The counters as the worker wrote them, since the runtime started. */
static void raw_snapshot(const weir_worker *w, weir_worker_stats *o)
{
#define LD(f) atomic_load_explicit(&((weir_worker *)w)->ctr.f, memory_order_relaxed)
    o->tasks_run = LD(tasks_run);
    o->spawns = atomic_load_explicit(&((weir_worker *)w)->fj.spawns, memory_order_relaxed);
    o->jobs_submitted = LD(jobs_submitted);
    /* outcomes before attempts: a worker counts the attempt first, so this
     * order keeps attempts >= outcomes in a live snapshot (on x86, whose
     * stores become visible in order; exact only when quiescent) */
    o->steals = LD(steals);
    o->tasks_stolen = LD(tasks_stolen);
    o->steal_empty = LD(steal_empty);
    o->steal_contended = LD(steal_contended);
    o->steal_attempts = LD(steal_attempts);
    o->leapfrogs = LD(leapfrogs);
    o->publishes = LD(publishes);
    o->parks = LD(parks);
    o->wakeups = LD(wakeups);
    o->injected = LD(injected);
    o->busy_ns = LD(busy_ns);
    o->idle_ns = LD(idle_ns);
    /* add the open span (approximate: the fields are read one by one) */
    uint64_t since = LD(since_ns), now = weir__now_ns();
    if (since && now > since && w->thread) {
        if (LD(idle))
            o->idle_ns += now - since;
        else
            o->busy_ns += now - since;
    }
#undef LD
}

/* Since the last weir_runtime_stats_reset(): the raw counters minus the base
 * that reset recorded. Reset never writes the worker's counters (a relaxed
 * load-and-store by the owner racing with a store from another thread could
 * resurrect an old value); it records a base instead. */
static void snapshot(const weir_worker *w, weir_worker_stats *o)
{
    raw_snapshot(w, o);
    uint64_t *x = (uint64_t *)o;
    for (size_t k = 0; k < NSTATS; k++) {
        uint64_t b = atomic_load_explicit(&((weir_worker *)w)->stats_base[k], memory_order_relaxed);
        x[k] = x[k] >= b ? x[k] - b : 0;
    }
}

int weir_runtime_stats(const weir_runtime *rt, unsigned worker, weir_worker_stats *out)
{
    if (!rt || !out)
        return weir__error(-EINVAL, "weir_runtime_stats: NULL argument");
    if (weir__runtime_destroyed(rt))
        return weir__error(-ESHUTDOWN, "weir_runtime_stats: the runtime was destroyed");
    if (worker >= rt->nworkers)
        return weir__error(-EINVAL, "weir_runtime_stats: worker %u out of range (0..%u)", worker,
                           rt->nworkers - 1);
    snapshot(rt->workers[worker], out);
    return 0;
}

void weir_runtime_stats_total(const weir_runtime *rt, weir_worker_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!rt || weir__runtime_destroyed(rt))
        return;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weir_worker_stats s;
        snapshot(rt->workers[i], &s);
        uint64_t *d = (uint64_t *)out;
        const uint64_t *x = (const uint64_t *)&s;
        for (size_t k = 0; k < sizeof s / sizeof(uint64_t); k++)
            d[k] += x[k];
    }
}

void weir_runtime_stats_reset(weir_runtime *rt)
{
    if (!rt || weir__runtime_destroyed(rt))
        return;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weir_worker *w = rt->workers[i];
        weir_worker_stats raw;
        raw_snapshot(w, &raw);
        const uint64_t *x = (const uint64_t *)&raw;
        /* relaxed: readers subtract whichever base they see; a reset is not
         * ordered with concurrent reads */
        for (size_t k = 0; k < NSTATS; k++)
            atomic_store_explicit(&w->stats_base[k], x[k], memory_order_relaxed);
    }
}

void weir_runtime_print_stats(const weir_runtime *rt, FILE *f)
{
    if (!rt || !f)
        return;
    if (weir__runtime_destroyed(rt)) {
        fprintf(f, "weir: runtime destroyed (no worker statistics)\n");
        return;
    }
    fprintf(f, "weir: %u workers\n", rt->nworkers);
    fprintf(f, "%4s %4s %4s %12s %12s %10s %10s %10s %10s %9s %9s %8s %8s %8s %6s\n", "wkr", "pu",
            "numa", "tasks_run", "spawns", "jobs", "steal_att", "steals", "stolen", "leapfrog",
            "publish", "parks", "wakeups", "inject", "util%");
    weir_worker_stats t;
    memset(&t, 0, sizeof t);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weir_worker *w = rt->workers[i];
        weir_worker_stats s;
        snapshot(w, &s);
        double busy = (double)s.busy_ns, idle = (double)s.idle_ns;
        double util = busy + idle > 0 ? 100.0 * busy / (busy + idle) : 0.0;
        fprintf(f,
                "%4u %4d %4d %12" PRIu64 " %12" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64
                " %10" PRIu64 " %9" PRIu64 " %9" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64
                " %6.1f\n",
                i, atomic_load_explicit(&w->pinned, memory_order_relaxed) ? w->pu : -1, w->numa_os, s.tasks_run, s.spawns, s.jobs_submitted,
                s.steal_attempts, s.steals, s.tasks_stolen, s.leapfrogs, s.publishes, s.parks,
                s.wakeups, s.injected, util);
    }
    weir_runtime_stats_total(rt, &t);
    fprintf(f,
            "%4s %4s %4s %12" PRIu64 " %12" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64
            " %10" PRIu64 " %9" PRIu64 " %9" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n",
            "all", "", "", t.tasks_run, t.spawns, t.jobs_submitted, t.steal_attempts, t.steals,
            t.tasks_stolen, t.leapfrogs, t.publishes, t.parks, t.wakeups, t.injected);
    fprintf(f, "weir: steal attempts %" PRIu64 " = %" PRIu64 " successful + %" PRIu64
               " empty + %" PRIu64 " contended; failed pins %u\n",
            t.steal_attempts, t.steals, t.steal_empty, t.steal_contended, rt->failed_pins);
}
