/*
 * weir runtime — the description of a runtime: version, the resolved
 * configuration with where each value came from, and the placement table
 * (worker -> PU -> NUMA node -> victim order). It is what WEIR_DISPLAY_ENV=1
 * prints once at create (the OMP_DISPLAY_ENV / TBB_VERSION=1 habit) and what
 * weir_runtime_describe() returns.
 *
 * Where a value came from is worked out at create by comparing the config
 * with the build defaults and with what the environment would give: equal to
 * what its WEIR_* variable says (and the variable changed it) is
 * "environment", equal to the default is "default", anything else is
 * "config" (the caller set it). A
 * caller that set a field to its default value therefore reads "default",
 * which is what the value is.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "weir_build_config.h"

static const char *const weir__src_name[] = {"default", "config", "environment"};

/* The environment variable behind each field, for the "environment" label. */
static const char *const weir__field_env[WEIR__CFG_NFIELDS] = {
    [WEIR__CFG_WORKERS] = "WEIR_WORKERS",
    [WEIR__CFG_AFFINITY] = "WEIR_AFFINITY",
    [WEIR__CFG_PLACES] = "WEIR_PLACES",
    [WEIR__CFG_NUMA] = "WEIR_NUMA",
    [WEIR__CFG_SPIN] = "WEIR_SPIN",
    [WEIR__CFG_STATS] = "WEIR_STATS",
    [WEIR__CFG_DEQUE] = NULL,
    [WEIR__CFG_STACK] = NULL,
};

static bool weir__same_field(const weir_config *a, const weir_config *b, int field)
{
    switch (field) {
    case WEIR__CFG_WORKERS:
        return a->workers == b->workers;
    case WEIR__CFG_AFFINITY:
        return a->affinity == b->affinity;
    case WEIR__CFG_PLACES:
        return a->nplaces == b->nplaces &&
               (a->nplaces == 0 ||
                memcmp(a->places, b->places, a->nplaces * sizeof a->places[0]) == 0);
    case WEIR__CFG_NUMA:
        return a->numa == b->numa;
    case WEIR__CFG_SPIN:
        return a->spin == b->spin;
    case WEIR__CFG_STATS:
        return a->print_stats == b->print_stats;
    case WEIR__CFG_DEQUE:
        return a->deque_initial == b->deque_initial;
    default:
        return a->stack_size == b->stack_size;
    }
}

int weir__config_sources(const weir_config *cfg, unsigned char *src)
{
    /* Two configs of ~16 KiB each (the places arrays): heap, not stack. */
    weir_config *d = weir__malloc(2 * sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    weir_config *e = d + 1;
    weir_config_init(d);
    *e = *d;
    /* The environment as weir_config_from_env() reads it; a bad variable
     * leaves `e` at the defaults (create has reported it already, or the
     * caller's config did not ask for the environment). The thread's last
     * error is the caller's business, so it is kept. */
    char saved[256];
    snprintf(saved, sizeof saved, "%s", weir_last_error());
    (void)weir_config_from_env(e);
    weir__error(0, "%s", saved);
    for (int f = 0; f < WEIR__CFG_NFIELDS; f++) {
        if (weir__same_field(cfg, e, f) && !weir__same_field(e, d, f))
            src[f] = WEIR__SRC_ENV;
        else if (weir__same_field(cfg, d, f))
            src[f] = WEIR__SRC_DEFAULT;
        else
            src[f] = WEIR__SRC_CONFIG;
    }
    weir__free(d);
    return 0;
}

/* ---------------------------------------------------------------- output */

/* Text goes to a FILE, or into a buffer like snprintf: `len` counts every
 * character, what fits is written and kept NUL-terminated. */
typedef struct weir__out {
    FILE *f;
    char *buf;
    size_t cap;
    size_t len;
} weir__out;

static void weir__put(weir__out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void weir__put(weir__out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n;
    if (o->f != NULL) {
        n = vfprintf(o->f, fmt, ap);
    } else {
        size_t room = o->len < o->cap ? o->cap - o->len : 0;
        n = vsnprintf(room > 0 ? o->buf + o->len : NULL, room, fmt, ap);
    }
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void weir__put_src(weir__out *o, const weir_runtime *rt, int field)
{
    int s = rt->cfg_src[field];
    /* An explicit policy from the environment comes from the place list. */
    if (s == WEIR__SRC_ENV && field == WEIR__CFG_AFFINITY &&
        rt->cfg.affinity == WEIR_AFFINITY_EXPLICIT)
        weir__put(o, "  [environment WEIR_PLACES]\n");
    else if (s == WEIR__SRC_ENV && weir__field_env[field] != NULL)
        weir__put(o, "  [environment %s]\n", weir__field_env[field]);
    else
        weir__put(o, "  [%s]\n", weir__src_name[s]);
}

/* A PU list as ranges ("0-3,8"). */
static void weir__put_list(weir__out *o, const int *v, unsigned n)
{
    if (n == 0) {
        weir__put(o, "-");
        return;
    }
    for (unsigned i = 0; i < n;) {
        unsigned j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        if (j > i)
            weir__put(o, "%s%d-%d", i ? "," : "", v[i], v[j]);
        else
            weir__put(o, "%s%d", i ? "," : "", v[i]);
        i = j + 1;
    }
}

static int weir__cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Victims shown per worker unless verbose. */
#define WEIR__SHORT_VICTIMS 8

static void weir__describe(const weir_runtime *rt, bool verbose, weir__out *o)
{
    const weir_config *c = &rt->cfg;
    const weir__topo *t = &rt->topo;
    weir__put(o, "WEIR DISPLAY ENVIRONMENT BEGIN\n");
    weir__put(o, "  version        %s\n", weir_version());
    if (t->synthetic)
        weir__put(o, "  topology       synthetic \"%s\"\n", c->synthetic_topology);
    else
        weir__put(o, "  topology       %s\n",
                  WEIR_HAVE_HWLOC ? "hwloc" : "sysconf (built without hwloc)");
    weir__put(o, "  machine        %u PUs, %u cores, %u NUMA nodes, %u L3, %u packages\n", t->npu,
              t->ncore, t->nnuma, t->nl3, t->npkg);
    int *pus = weir__malloc((t->npu > 0 ? t->npu : 1) * sizeof *pus);
    if (pus != NULL) {
        for (unsigned i = 0; i < t->npu; i++)
            pus[i] = t->pu[i].os;
        qsort(pus, t->npu, sizeof *pus, weir__cmp_int);
        weir__put(o, "  allowed PUs    ");
        weir__put_list(o, pus, t->npu);
        if (t->nexcluded > 0) {
            weir__put(o, " (outside the affinity mask: ");
            weir__put_list(o, t->excluded, t->nexcluded);
            weir__put(o, ")");
        }
        weir__put(o, "\n");
        weir__free(pus);
    }

    weir__put(o, "  workers        %-10u", rt->nworkers);
    if (rt->cfg_src[WEIR__CFG_WORKERS] == WEIR__SRC_DEFAULT && c->workers == 0)
        weir__put(o, "  [default: one per core]\n");
    else
        weir__put_src(o, rt, WEIR__CFG_WORKERS);
    weir__put(o, "  affinity       %-10s", weir_affinity_name(c->affinity));
    weir__put_src(o, rt, WEIR__CFG_AFFINITY);
    /* The list first into a small buffer, so that the column lines up. */
    char places[64] = "-";
    if (c->affinity == WEIR_AFFINITY_EXPLICIT && c->nplaces > 0) {
        int *pl = weir__malloc(c->nplaces * sizeof *pl);
        if (pl != NULL) {
            weir__out po = {.buf = places, .cap = sizeof places};
            for (unsigned i = 0; i < c->nplaces; i++)
                pl[i] = (int)c->places[i];
            weir__put_list(&po, pl, c->nplaces);
            if (po.len >= sizeof places)
                memcpy(places + sizeof places - 4, "...", 4);
            weir__free(pl);
        }
    } else if (c->nplaces > 0) {
        snprintf(places, sizeof places, "- (a list is set; affinity %s ignores it)",
                 weir_affinity_name(c->affinity));
    }
    weir__put(o, "  places         %-10s", places);
    weir__put_src(o, rt, WEIR__CFG_PLACES);
    weir__put(o, "  numa           %-10s", c->numa ? "true" : "false");
    weir__put_src(o, rt, WEIR__CFG_NUMA);
    weir__put(o, "  spin           %-10u", c->spin);
    weir__put_src(o, rt, WEIR__CFG_SPIN);
    weir__put(o, "  stats          %-10s", c->print_stats ? "true" : "false");
    weir__put_src(o, rt, WEIR__CFG_STATS);
    weir__put(o, "  deque_initial  %-10u", c->deque_initial);
    weir__put_src(o, rt, WEIR__CFG_DEQUE);
    weir__put(o, "  stack_size     %-10zu", c->stack_size ? c->stack_size : (size_t)8 << 20);
    weir__put_src(o, rt, WEIR__CFG_STACK);

    weir__put(o, "  %6s %5s %5s %4s %7s  %s\n", "worker", "pu", "numa", "l3", "pinned",
              "victims, nearest first: same L3 | same NUMA node | remote");
    unsigned nw = rt->nworkers;
    for (unsigned w = 0; w < nw; w++) {
        const weir_worker *wk = rt->workers[w];
        weir__put(o, "  %6u ", w);
        if (wk->pu >= 0)
            weir__put(o, "%5d ", wk->pu);
        else
            weir__put(o, "%5s ", "-");
        if (wk->numa_os >= 0)
            weir__put(o, "%5d ", wk->numa_os);
        else
            weir__put(o, "%5s ", "-");
        if (wk->l3 >= 0)
            weir__put(o, "%4d ", wk->l3);
        else
            weir__put(o, "%4s ", "-");
        const char *pinned =
            wk->pu < 0                                                                 ? "-"
            : atomic_load_explicit(&((weir_worker *)wk)->pinned, memory_order_relaxed) ? "yes"
                                                                                       : "no";
        weir__put(o, "%7s  ", pinned);
        unsigned nv = nw - 1;
        unsigned show = verbose || nv <= WEIR__SHORT_VICTIMS ? nv : WEIR__SHORT_VICTIMS;
        /* The three classes, each "-" when empty, until `show` are out. */
        unsigned k = 0;
        if (nv == 0)
            weir__put(o, "-");
        for (unsigned cl = 0; cl < 3 && k < show; cl++) {
            if (cl > 0)
                weir__put(o, " | ");
            if (k == wk->class_end[cl])
                weir__put(o, "-");
            for (; k < wk->class_end[cl] && k < show; k++)
                weir__put(o, "%s%u", k > (cl > 0 ? wk->class_end[cl - 1] : 0) ? " " : "",
                          wk->victims[k]);
        }
        if (show < nv)
            weir__put(o, " ... (%u more)", nv - show);
        weir__put(o, "\n");
    }
    weir__put(o, "WEIR DISPLAY ENVIRONMENT END\n");
}

int weir_runtime_describe(const weir_runtime *rt, char *buf, size_t len)
{
    if (rt == NULL || (buf == NULL && len > 0))
        return weir__error(-EINVAL, "weir_runtime_describe: NULL argument");
    if (weir__runtime_destroyed(rt))
        return weir__error(-ESHUTDOWN, "weir_runtime_describe: the runtime was destroyed");
    weir__out o = {.f = NULL, .buf = buf, .cap = len, .len = 0};
    if (len > 0)
        buf[0] = '\0';
    weir__describe(rt, true, &o);
    if (o.len > (size_t)INT32_MAX)
        return weir__error(-EOVERFLOW, "weir_runtime_describe: the text is too long");
    return (int)o.len;
}

int weir_runtime_print_description(const weir_runtime *rt, FILE *f)
{
    if (rt == NULL || f == NULL)
        return weir__error(-EINVAL, "weir_runtime_print_description: NULL argument");
    if (weir__runtime_destroyed(rt))
        return weir__error(-ESHUTDOWN, "weir_runtime_print_description: the runtime was destroyed");
    weir__out o = {.f = f};
    weir__describe(rt, true, &o);
    return 0;
}

void weir__display_env(const weir_runtime *rt, int level)
{
    /* Measure, then write into a buffer of that size: the log takes one
     * text. Out of memory, the report is skipped (it is informational). */
    weir__out o = {0};
    weir__describe(rt, level > 1, &o);
    char *text = weir__malloc(o.len + 1);
    if (text == NULL)
        return;
    o = (weir__out){.buf = text, .cap = o.len + 1};
    weir__describe(rt, level > 1, &o);
    weir__log_text(WEIR_LOG_INFO, text);
    weir__free(text);
}
