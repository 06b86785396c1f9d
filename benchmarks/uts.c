/*
 * weir-bench uts --tree T1|T3 — the Unbalanced Tree Search benchmark's
 * published trees (Olivier et al., "UTS: An Unbalanced Tree Search
 * Benchmark", LCPC 2006), generated exactly as the UTS reference code
 * defines them, so the node counts can be checked against the published
 * figures:
 *
 *   T1  geometric, fixed shape: -t 1 -a 3 -d 10 -b 4 -r 19    4 130 071 nodes, depth 10
 *   T3  binomial:               -t 0 -b 2000 -q 0.124875 -m 8 -r 42
 *                                                              4 112 897 nodes, depth 1572
 *
 * The splittable generator is SHA-1 (benchmarks/sha1.c):
 *   root state    = SHA-1(16 zero bytes || seed as 4 big-endian bytes)
 *   child i state = SHA-1(parent state (20 bytes) || i as 4 big-endian bytes)
 *   rand(node)    = the last 4 bytes of its state, big-endian, & 0x7fffffff
 *   prob(node)    = rand / 2^31
 * Children of a node at height h:
 *   binomial   h == 0: floor(b0); else m if prob < q, else 0
 *   geometric  b = b0 if h < depth (or h == 0), else 0; p = 1 / (1 + b);
 *              floor(log(1 - prob) / log(1 - p)), at most 100
 *
 * Every node is a task: it hashes its own state from its parent's (so the
 * root's 2000 children of T3 hash in parallel), spawns all its children but
 * the last, calls the last and syncs. The serial twin is the same recursion
 * with plain calls. --n scales the tree for smoke runs: the depth of T1 or
 * the root branching of T3; only the default sizes are checked against the
 * published counts (the other variants are always checked against serial).
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "weir.h"

#include "bench.h"
#include "sha1.h"

typedef struct uts_tree {
    const char *name;  /**< "T1", "T3" */
    const char *bench; /**< row name: "uts-T1", "uts-T3" */
    bool geometric;    /**< else binomial */
    double b0;         /**< root branching factor */
    unsigned gen_mx;   /**< geometric: depth (shape "fixed") */
    double q;          /**< binomial: probability of a non-leaf */
    unsigned m;        /**< binomial: children of a non-leaf */
    uint32_t seed;     /**< root seed (-r) */
    uint64_t nodes;    /**< published node count */
    const char *args;  /**< the reference uts's arguments */
} uts_tree;

static const uts_tree trees[] = {
    {"T1", "uts-T1", true, 4.0, 10, 0.0, 0, 19, UINT64_C(4130071), "-t 1 -a 3 -d 10 -b 4 -r 19"},
    {"T3", "uts-T3", false, 2000.0, 0, 0.124875, 8, 42, UINT64_C(4112897),
     "-t 0 -b 2000 -q 0.124875 -m 8 -r 42"},
};

/* The UTS reference caps every non-root node (MAXNUMCHILDREN). */
#define UTS_MAX_CHILDREN 100

typedef struct uts_node {
    unsigned char s[SHA1_DIGEST];
    uint32_t height;
} uts_node;

/* The tree of the current invocation: set before the runs, read-only during them. */
static uts_tree g_tree;

static void uts_root(uts_node *root)
{
    unsigned char b[20] = {0};
    b[16] = (unsigned char)(g_tree.seed >> 24);
    b[17] = (unsigned char)(g_tree.seed >> 16);
    b[18] = (unsigned char)(g_tree.seed >> 8);
    b[19] = (unsigned char)g_tree.seed;
    sha1(b, sizeof b, root->s);
    root->height = 0;
}

static void uts_child(const uts_node *parent, uint32_t i, uts_node *child)
{
    unsigned char b[SHA1_DIGEST + 4];
    memcpy(b, parent->s, SHA1_DIGEST);
    b[20] = (unsigned char)(i >> 24);
    b[21] = (unsigned char)(i >> 16);
    b[22] = (unsigned char)(i >> 8);
    b[23] = (unsigned char)i;
    sha1(b, sizeof b, child->s);
    child->height = parent->height + 1;
}

static double uts_prob(const uts_node *n)
{
    uint32_t r = (uint32_t)n->s[16] << 24 | (uint32_t)n->s[17] << 16 | (uint32_t)n->s[18] << 8 |
                 (uint32_t)n->s[19];
    return (double)(r & UINT32_C(0x7fffffff)) / 2147483648.0;
}

static uint32_t uts_nchildren(const uts_node *n)
{
    if (!g_tree.geometric) {
        if (n->height == 0)
            return (uint32_t)floor(g_tree.b0);
        return uts_prob(n) < g_tree.q ? g_tree.m : 0;
    }
    double b = g_tree.b0;
    if (n->height > 0)
        b = n->height < g_tree.gen_mx ? g_tree.b0 : 0.0;
    double p = 1.0 / (1.0 + b);
    int k = (int)floor(log(1.0 - uts_prob(n)) / log(1.0 - p));
    if (k > UTS_MAX_CHILDREN && n->height > 0)
        k = UTS_MAX_CHILDREN;
    return k > 0 ? (uint32_t)k : 0;
}

/* ---- serial twin ------------------------------------------------------------ */

static uint64_t uts_serial_rec(const uts_node *n)
{
    uint32_t k = uts_nchildren(n);
    uint64_t count = 1;
    for (uint32_t i = 0; i < k; i++) {
        uts_node c;
        uts_child(n, i, &c);
        count += uts_serial_rec(&c);
    }
    return count;
}

/* ---- weir: one task per node ------------------------------------------------- */

WEIR_TASK_2(uint64_t, uts_sha, uts_node, parent, uint32_t, i)
{
    uts_node n;
    uts_child(&parent, i, &n);
    uint32_t k = uts_nchildren(&n);
    if (k == 0)
        return 1;
    for (uint32_t j = 0; j + 1 < k; j++)
        WEIR_SPAWN(uts_sha, n, j);
    uint64_t count = 1 + WEIR_CALL(uts_sha, n, k - 1);
    for (uint32_t j = 0; j + 1 < k; j++)
        count += WEIR_SYNC(uts_sha);
    return count;
}

WEIR_TASK_1(uint64_t, uts_top, uts_node, root)
{
    uint32_t k = uts_nchildren(&root);
    for (uint32_t j = 0; j < k; j++)
        WEIR_SPAWN(uts_sha, root, j);
    uint64_t count = 1;
    for (uint32_t j = 0; j < k; j++)
        count += WEIR_SYNC(uts_sha);
    return count;
}

struct uts_run {
    bool check;      /**< the published tree: check the count */
    bool wrong;      /**< a run counted something else */
    const char *who; /**< the variant that did */
    uint64_t got;
};

static uint64_t uts_checked(bench_ctx *c, const char *who, uint64_t got)
{
    struct uts_run *u = c->user;
    if (u->check && got != g_tree.nodes && !u->wrong) {
        u->wrong = true;
        u->who = who;
        u->got = got;
    }
    return got;
}

static uint64_t uts_serial_v(bench_ctx *c)
{
    uts_node root;
    uts_root(&root);
    return uts_checked(c, "serial", uts_serial_rec(&root));
}

static uint64_t uts_weir_v(bench_ctx *c)
{
    uts_node root;
    uts_root(&root);
    return uts_checked(c, "weir", uts_top_run(c->rt, root));
}

int bench_uts_published(const bench_opts *o, int argc, char **argv)
{
    static const bench_variant variants[] = {
        {"serial", BENCH_BASELINE, uts_serial_v, NULL, NULL, NULL, NULL},
        {"weir", BENCH_WEIR, uts_weir_v, NULL, NULL, NULL, NULL},
    };
    const uts_tree *t = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int m = bench_opt_value(argc, argv, &i, "--tree", &val);
        if (m < 0)
            return BENCH_EXIT_USAGE;
        if (m == 0)
            return bench_usage_error("uts: unknown option '%s'", argv[i]);
        t = NULL;
        for (size_t k = 0; k < sizeof trees / sizeof trees[0]; k++)
            if (strcmp(val, trees[k].name) == 0)
                t = &trees[k];
        if (t == NULL)
            return bench_usage_error("uts: --tree '%s': expected T1 or T3", val);
    }
    if (t == NULL)
        return bench_usage_error("uts: expected --tree T1 or --tree T3");
    if (sha1_selftest() != 0)
        return BENCH_EXIT_FAIL;

    g_tree = *t;
    uint64_t def = t->geometric ? t->gen_mx : (uint64_t)t->b0;
    uint64_t n = o->has_n ? o->n : def;
    if (n < 1 || n > (t->geometric ? 20u : 100000u))
        return bench_usage_error("uts: --n %" PRIu64 " out of range for %s (1..%u: %s)", n, t->name,
                                 t->geometric ? 20u : 100000u,
                                 t->geometric ? "depth" : "root branching");
    if (t->geometric)
        g_tree.gen_mx = (unsigned)n;
    else
        g_tree.b0 = (double)n;

    struct uts_run u = {n == def, false, NULL, 0};
    bench_spec spec = {t->bench, variants, sizeof variants / sizeof variants[0], "nodes_per_s",
                       true};
    bench_ctx c = {0};
    c.n = n;
    c.user = &u;
    bench_note(o, "UTS %s (uts %s%s): %s", t->name, t->args, n == def ? "" : ", scaled by --n",
               n == def ? "node count checked against the published figure"
                        : "not the published size");
    int rc = bench_run(o, &spec, &c);
    if (u.wrong) {
        fprintf(stderr,
                "weir-bench: uts-%s/%s: %" PRIu64 " nodes, the published tree has %" PRIu64 "\n",
                t->name, u.who, u.got, t->nodes);
        rc = BENCH_EXIT_FAIL;
    }
    return rc;
}
