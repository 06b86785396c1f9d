/*
 * Random term trees against a sequential reference evaluator (issue 4).
 * Plain main(), runnable under TSan.
 *
 * For --seconds, generates random term trees — seq, par (1..6 branches),
 * pull / array / blocking sources, map, filter, flat-map (a function term
 * emitting 0..3 records), id, stateful terms (a running sum, add-index),
 * merge, zip (with and without callback), sinks (per record, batch,
 * collect), stop, finish callbacks — over 24-byte records, with a random
 * batch size (1..300), stream capacity (1..2048), runtime (1..4 workers, or
 * --workers W up to 256; each created once and reused) and execution mode. Each tree runs on weir
 * and, independently, on a direct recursive interpretation of the same tree
 * over arrays (LogicSponge's semantics: seq feeds outputs on, par broadcasts
 * and unions by name, merge is the union of its inputs, zip pairs the i-th
 * records and stops at the shortest input). Every sink's records must match.
 *
 * What can be compared exactly, and why:
 *   - Every stream is FIFO and every term sees its records in stream order,
 *     so a sink whose records never went through a merge of two or more
 *     inputs must receive exactly the reference sequence.
 *   - A merge's interleaving of its inputs is arrival order, which is not
 *     deterministic; only each input's order is kept. Every merge input is
 *     therefore preceded by a "tag" map that folds (merge, input) into the
 *     record's `origin` field, so records with equal `origin` at a sink came
 *     down one path of the graph, on which every term keeps order. A sink
 *     downstream of a merge ("tainted") is compared after a stable sort by
 *     origin: the same multiset, and the same order within each path.
 *   - Terms whose output depends on the order of their input (running sum,
 *     add-index, a zip pairing two independent streams) are only generated
 *     where that order is deterministic. Finish callbacks emit the count of
 *     records they saw, which does not depend on order.
 *
 * Variable-size records (WEIR_VARSIZE, issue 10). Any stream may carry
 * variable-size records instead: a source of that kind, or a conversion term
 * (a map or function rec -> bytes, and back) anywhere in a chain. A
 * variable-size record carries its rec, 24 bytes, followed by a tail whose
 * length (0 .. vt) and bytes are a function of the rec and the graph's salt,
 * with vt chosen per graph so that the largest records are exactly the
 * stream's byte capacity (64 .. 8192 bytes, random per graph) in half of
 * them. Every term has a variable-size twin (map, tag, running sum, filter,
 * flat-map emitting through weir_emit_bytes, weir_emit_reserve/commit,
 * weir_emit_record and weir_emit_records, id, keyed shards, replicas in
 * weir_parallel, merge, zip with a function over inputs of both kinds, finish
 * callbacks, the three sinks and a variable-size collector); every consumer
 * decodes the rec and checks the record's length and every tail byte. So the
 * reference evaluator still works on recs (a conversion is the identity
 * there), and a byte out of place anywhere is a mismatch. Not generated on
 * variable-size streams: add-index (it refuses them) and the concatenating
 * zip.
 *
 * Graph shapes weir cannot run with bounded streams are not generated: a zip
 * whose inputs descend from one broadcast must see them at the same rate
 * (maps, ids, stateful maps, tags, nested such zips; no filter, flat-map or
 * merge on the way), otherwise one input's stream fills while the zip waits
 * for the other, the broadcast producer stops, and nothing can move (an
 * artificial deadlock of bounded buffers; LogicSponge's unbounded queues
 * would grow instead). Zips of inputs with rate-changing terms take sources
 * of their own (independent subtrees).
 *
 * Prints one summary line; exits 1 on a mismatch or a hang (join bounded by
 * 120 s). STRESS_REF_GRAPH=<graph seed> replays one graph verbosely.
 *
 *   stress_reference [--seconds S] [--workers W] [--seed N]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stress_common.h"
#include "weir.h"

/* ------------------------------------------------------------- records */

typedef struct rec {
    int64_t id;
    int64_t value;
    uint64_t origin; /* the path the record took through merges (see above) */
} rec;

#define RS sizeof(rec)

static uint64_t mix(uint64_t x, uint64_t y)
{
    /* splitmix64 finaliser of a combination: distinct paths get distinct
     * origins with overwhelming probability. */
    uint64_t z = x ^ (y + 0x9E3779B97F4A7C15ull + (x << 6) + (x >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int64_t u2i(uint64_t u)
{
    /* Modular arithmetic in uint64_t, stored as int64_t without overflow UB. */
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return i;
}

static uint64_t i2u(int64_t i)
{
    uint64_t u;
    memcpy(&u, &i, sizeof u);
    return u;
}

/* ---------------------------------------------------------------- rng */

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static unsigned rndn(unsigned n) /* 0..n-1 */
{
    return (unsigned)(rnd() % n);
}

/* -------------------------------------------------------------- the tree */

typedef enum nkind {
    N_SRC,
    N_MAP,
    N_FILTER,
    N_FLAT,
    N_ID,
    N_TAG,
    N_RSUM,
    N_INDEX, /* weir_add_index + a map folding the index into the value */
    N_MERGE,
    N_ZIP,
    N_SINK,
    N_STOP,
    N_SEQ,
    N_PAR,
    N_PARALLEL, /* weir_parallel(child, width = sub): transparent in the reference */
    N_KEYED,    /* weir_keyed, sub shards: each record's per-key running count */
    N_TOVAR,    /* rec -> variable-size record (identity in the reference) */
    N_FROMVAR,  /* variable-size record -> rec (identity in the reference) */
} nkind;

static const char *const kind_names[] = {"src",  "map",   "filter",   "flat",  "id",    "tag",
                                         "rsum", "index", "merge",    "zip",   "sink",  "stop",
                                         "seq",  "par",   "parallel", "keyed", "tovar", "fromvar"};

enum { MAXCH = 8 };

typedef struct node {
    nkind k;
    int uid;    /* names: "t<uid>" */
    int sub;    /* variant (source kind, sink kind, zip kind, tag kind) */
    uint64_t a; /* parameters */
    uint64_t b;
    int64_t n;   /* source: records */
    bool finish; /* a finish callback emitting (or, for sinks, counting) */
    int nch;
    struct node *ch[MAXCH];
    int sink;        /* index of a sink */
    bool var;        /* its output stream (and, but for conversions, its input) is variable-size */
    unsigned inmask; /* zip: bit i set when input i is variable-size */
} node;

/* Per-term state given to weir (mutable counters live here). */
typedef struct tstate {
    const node *nd;
    uint64_t count; /* records seen (finish callbacks report it) */
    uint64_t sum;   /* running sum */
    int64_t pos;    /* pull / blocking source position */
    uint64_t r;     /* source's private rng (chunk sizes) */
    unsigned finish_calls;
    bool emit_error;       /* a blocking source's emit failed */
    uint64_t kcnt[4][8];   /* keyed: each shard's per-key counts */
    unsigned char *varena; /* variable-size sources: the bytes of one call */
    size_t vused;
    /* sinks */
    rec *got;
    size_t ngot, capgot;
    weir_collector coll;
    bool has_coll;
} tstate;

enum { MAXNODES = 512, MAXSINKS = 128 };

typedef struct graph {
    node nodes[MAXNODES];
    int nnodes;
    tstate st[MAXNODES];
    rec *arrays[MAXNODES]; /* array sources' data (must outlive the pipeline) */
    int nsinks;
    node *sinks[MAXSINKS];
    /* reference results per sink */
    rec *want[MAXSINKS];
    size_t nwant[MAXSINKS];
    bool tainted[MAXSINKS];
    uint64_t total;  /* records on every reference stream (size control) */
    uint64_t vtotal; /* of which on variable-size streams */
    bool overflow;   /* too many nodes / sinks */
} graph;

static graph *G;

static node *new_node(nkind k)
{
    if (G->nnodes >= MAXNODES - 4) {
        G->overflow = true;
        return NULL;
    }
    node *n = &G->nodes[G->nnodes];
    memset(n, 0, sizeof *n);
    n->k = k;
    n->uid = G->nnodes++;
    n->a = rnd();
    n->b = rnd();
    n->sink = -1;
    return n;
}

static node *add(node *parent, node *child)
{
    if (parent && child && parent->nch < MAXCH)
        parent->ch[parent->nch++] = child;
    else if (parent)
        G->overflow = true;
    return parent;
}

static node *seq2(node *a, node *b)
{
    node *s = new_node(N_SEQ);
    if (!s || !a || !b)
        return NULL;
    add(s, a);
    return add(s, b);
}

/* ------------------------------------------------------------ generator */

/*
 * gen_s(depth, in, ...) returns a subtree with exactly one output stream:
 * with in == NULL it takes no input (it starts with sources), otherwise it
 * consumes the one stream described by *in. gen_t() returns a terminal
 * subtree (no output) consuming one stream.
 */
typedef struct sdesc {
    bool tainted; /* order not deterministic (after a merge of >= 2 inputs) */
    bool var;     /* variable-size records */
} sdesc;

static int max_depth;
static int budget; /* primitive terms left */

static node *gen_s(int depth, const sdesc *in, bool need_untainted, bool rate1, sdesc *out);
static node *gen_t(int depth, sdesc in);

static bool deeper(int depth)
{
    return depth < max_depth && budget > 0;
}

static node *leaf(nkind k)
{
    budget--;
    return new_node(k);
}

static node *gen_source(sdesc *out)
{
    node *n = leaf(N_SRC);
    if (!n)
        return NULL;
    n->sub = (int)rndn(3); /* 0 pull, 1 array, 2 blocking */
    /* Mostly small sources, some up to 2000 records, some empty. */
    unsigned r = rndn(10);
    n->n = r == 0 ? 0 : r < 6 ? (int64_t)rndn(64) : (int64_t)rndn(2001);
    /* a third of the sources emit variable-size records (pull or blocking:
     * an array source of weir_bytes is not supported) */
    n->var = rndn(3) == 0;
    if (n->var && n->sub == 1)
        n->sub = rndn(2) ? 0 : 2;
    out->tainted = false;
    out->var = n->var;
    return n;
}

static node *tag(int salt, bool var)
{
    node *t = leaf(N_TAG);
    if (t) {
        t->a = mix((uint64_t)t->uid, (uint64_t)salt);
        t->sub = (int)rndn(2); /* map or function term */
        t->var = var;
    }
    return t;
}

/* A conversion of a stream of kind `from_var` to the other kind. */
static node *conv(bool from_var)
{
    node *c = leaf(from_var ? N_FROMVAR : N_TOVAR);
    if (c) {
        c->var = !from_var;
        c->sub = (int)rndn(2); /* map or function term */
    }
    return c;
}

/* b, converted to `var` records when it is not of that kind already. */
static node *as_kind(node *b, bool b_var, bool var)
{
    return b_var == var ? b : seq2(b, conv(b_var));
}

static bool maybe_finish(void)
{
    return rndn(5) == 0;
}

/* A zip of k subtrees: with a callback, or a concatenating zip followed by a
 * map that folds the k records into one. A callback takes inputs of either
 * kind (bvar) and emits either kind (*ovar); the concatenation only fixed
 * records. */
static node *zip_of(node **br, const bool *bvar, int k, bool *ovar)
{
    node *z = leaf(N_ZIP);
    node *p = new_node(N_PAR);
    if (!z || !p)
        return NULL;
    z->sub = (int)rndn(2);
    z->b = (uint64_t)k;
    for (int i = 0; i < k; i++)
        if (bvar[i])
            z->inmask |= 1u << i;
    if (z->inmask)
        z->sub = 0;
    z->var = z->sub == 0 && rndn(2) == 0;
    *ovar = z->var;
    z->finish = z->sub == 0 && maybe_finish();
    for (int i = 0; i < k; i++)
        add(p, br[i]);
    return seq2(p, z);
}

static node *gen_unary(const sdesc *in, bool rate1, sdesc *out)
{
    /* Rate-1 terms keep a zip's inputs in lock step; stateful terms need a
     * deterministic input order. */
    for (;;) {
        if (rndn(6) == 0) {
            /* a conversion to the other kind (rate 1, stateless) */
            node *c = conv(in->var);
            if (!c)
                return NULL;
            *out = *in;
            out->var = c->var;
            if (rndn(3) == 0) {
                node *w = new_node(N_PARALLEL);
                if (!w)
                    return NULL;
                w->sub = (int)rndn(5);
                return add(w, c);
            }
            return c;
        }
        nkind k = (nkind)(N_MAP + (int)rndn(7));
        if (rate1 && (k == N_FILTER || k == N_FLAT))
            continue;
        if (in->tainted && (k == N_RSUM || k == N_INDEX))
            continue;
        if (in->var && k == N_INDEX)
            continue; /* weir_add_index refuses variable-size records */
        if (!in->tainted && rndn(8) == 0) {
            /* keyed shards counting per key: rate 1, order-dependent */
            node *kd = leaf(N_KEYED);
            if (!kd)
                return NULL;
            kd->sub = 1 + (int)rndn(4);
            kd->var = in->var;
            *out = *in;
            return kd;
        }
        node *n = leaf(k);
        if (!n)
            return NULL;
        n->var = in->var;
        if (k == N_MAP || k == N_FILTER || k == N_FLAT)
            n->finish = maybe_finish();
        if (k == N_TAG || k == N_RSUM || k == N_MAP)
            n->sub = (int)rndn(2); /* weir_map or weir_function */
        *out = *in;
        if (k != N_RSUM && k != N_INDEX && rndn(3) == 0) {
            /* stateless: replicate it (width 0..4, 0 = every worker) */
            node *w = new_node(N_PARALLEL);
            if (!w)
                return NULL;
            w->sub = (int)rndn(5);
            return add(w, n);
        }
        return n;
    }
}

static node *gen_s(int depth, const sdesc *in, bool need_untainted, bool rate1, sdesc *out)
{
    if (!in) {
        unsigned c = deeper(depth) ? rndn(10) : 0;
        node *x;
        sdesc xs;
        if (c < 6) {
            x = gen_source(&xs);
        } else if (c < 8) {
            /* Zip of independent subtrees: each has its own sources, so any
             * rates are fine. Zipping a tainted stream with another would pair
             * records nondeterministically: all inputs untainted unless k = 1. */
            int k = 1 + (int)rndn(4);
            node *br[MAXCH];
            bool bvar[MAXCH];
            bool taint = false;
            for (int i = 0; i < k; i++) {
                sdesc bs;
                br[i] = gen_s(depth + 1, NULL, k > 1 || need_untainted, false, &bs);
                bvar[i] = bs.var;
                taint |= bs.tainted;
            }
            x = zip_of(br, bvar, k, &xs.var);
            xs.tainted = taint;
        } else {
            /* Merge of independent subtrees, each input tagged. */
            int k = need_untainted ? 1 : 1 + (int)rndn(4);
            node *m = leaf(N_MERGE);
            node *p = new_node(N_PAR);
            if (!m || !p)
                return NULL;
            m->finish = maybe_finish();
            m->var = rndn(3) == 0; /* all inputs of one kind */
            bool taint = k > 1;
            for (int i = 0; i < k; i++) {
                sdesc bs;
                node *b = gen_s(depth + 1, NULL, need_untainted, false, &bs);
                taint |= bs.tainted;
                add(p, seq2(as_kind(b, bs.var, m->var), tag(m->uid * 8 + i, m->var)));
            }
            x = seq2(p, m);
            xs.tainted = taint;
            xs.var = m->var;
        }
        if (x && deeper(depth) && rndn(2) == 0) {
            node *y = gen_s(depth + 1, &xs, need_untainted, false, out);
            return seq2(x, y);
        }
        *out = xs;
        return x;
    }

    unsigned c = deeper(depth) ? rndn(12) : 0;
    if (c < 5)
        return gen_unary(in, rate1, out);
    if (c < 7) {
        /* A chain: seq(x, y). */
        sdesc xs;
        node *x = gen_s(depth + 1, in, need_untainted, rate1, &xs);
        node *y = gen_s(depth + 1, &xs, need_untainted, rate1, out);
        return seq2(x, y);
    }
    if (c < 9) {
        /* Side branches: par(main, terminals...) broadcasts the input; only
         * main has an output. Terminals consume freely, so rates do not
         * matter for them. */
        int k = 1 + (int)rndn(4);
        int at = (int)rndn((unsigned)k + 1);
        node *p = new_node(N_PAR);
        if (!p)
            return NULL;
        for (int i = 0; i <= k; i++) {
            if (i == at)
                add(p, gen_s(depth + 1, in, need_untainted, rate1, out));
            else
                add(p, gen_t(depth + 1, *in));
        }
        return p;
    }
    if (c < 11 && !rate1 && !need_untainted) {
        /* Broadcast to 1..6 branches, tag each, merge. */
        int k = 1 + (int)rndn(6);
        node *m = leaf(N_MERGE);
        node *p = new_node(N_PAR);
        if (!m || !p)
            return NULL;
        m->finish = maybe_finish();
        m->var = rndn(2) ? in->var : rndn(2) == 0;
        bool taint = k > 1 || in->tainted;
        for (int i = 0; i < k; i++) {
            sdesc bs;
            node *b = gen_s(depth + 1, in, false, false, &bs);
            taint |= bs.tainted;
            add(p, seq2(as_kind(b, bs.var, m->var), tag(m->uid * 8 + i, m->var)));
        }
        out->tainted = taint;
        out->var = m->var;
        return seq2(p, m);
    }
    /* Broadcast to 1..6 rate-1 branches and zip them back in lock step. On a
     * tainted input the branches are stateless, so each zipped tuple is a
     * function of one input record. */
    int k = 1 + (int)rndn(6);
    node *br[MAXCH];
    bool bvar[MAXCH];
    for (int i = 0; i < k; i++) {
        sdesc bs;
        br[i] = gen_s(depth + 1, in, need_untainted, true, &bs);
        bvar[i] = bs.var;
    }
    out->tainted = in->tainted;
    return zip_of(br, bvar, k, &out->var);
}

static node *gen_t(int depth, sdesc in)
{
    unsigned c = deeper(depth) ? rndn(20) : rndn(12);
    if (c < 10) {
        node *s = leaf(N_SINK);
        if (!s)
            return NULL;
        s->sub = (int)rndn(3); /* sink, batch sink, collect */
        s->finish = s->sub != 2 && rndn(3) == 0;
        s->var = in.var;
        if (G->nsinks >= MAXSINKS) {
            G->overflow = true;
            return NULL;
        }
        s->sink = G->nsinks;
        G->sinks[G->nsinks++] = s;
        return s;
    }
    if (c < 12)
        return leaf(N_STOP);
    if (c < 16) {
        sdesc xs;
        node *x = gen_s(depth + 1, &in, false, false, &xs);
        return seq2(x, gen_t(depth + 1, xs));
    }
    int k = 1 + (int)rndn(6);
    node *p = new_node(N_PAR);
    for (int i = 0; i < k && p; i++)
        add(p, gen_t(depth + 1, in));
    return p;
}

static node *gen_graph(void)
{
    max_depth = 2 + (int)rndn(4);
    budget = 6 + (int)rndn(40);
    int comps = 1 + (int)rndn(3);
    node *top = comps > 1 ? new_node(N_PAR) : NULL;
    node *one = NULL;
    for (int i = 0; i < comps; i++) {
        sdesc s;
        node *x = gen_s(0, NULL, false, false, &s);
        /* Rarely leave a top-level output unread: its records are dropped. */
        node *c = rndn(20) == 0 ? x : seq2(x, gen_t(1, s));
        if (top)
            add(top, c);
        else
            one = c;
    }
    return top ? top : one;
}

static void print_tree(FILE *f, const node *n, int indent)
{
    if (!n)
        return;
    fprintf(f, "%*s%s t%d", indent * 2, "", kind_names[n->k], n->uid);
    if (n->k == N_SRC)
        fprintf(f, " (%s, %" PRId64 " records)",
                n->sub == 0   ? "pull"
                : n->sub == 1 ? "array"
                              : "blocking",
                n->n);
    if (n->k == N_SINK)
        fprintf(f, " (%s, sink %d)",
                n->sub == 0   ? "sink"
                : n->sub == 1 ? "batch"
                              : "collect",
                n->sink);
    if (n->k == N_ZIP)
        fprintf(f, " (%s, %d inputs)", n->sub == 0 ? "callback" : "concat+fold", (int)n->b);
    if (n->k == N_FILTER)
        fprintf(f, " (keeps %d/8)", (int)(n->b % 9));
    if (n->finish)
        fprintf(f, " +finish");
    if (n->var)
        fprintf(f, " [var]");
    if (n->inmask)
        fprintf(f, " [var inputs 0x%x]", n->inmask);
    fprintf(f, "\n");
    for (int i = 0; i < n->nch; i++)
        print_tree(f, n->ch[i], indent + 1);
}

/* ------------------------------------------------- the term functions
 * Pure functions of (parameters, input), shared by the weir callbacks and
 * the reference. What is tested is composition, not arithmetic. */

static rec src_rec(const node *n, int64_t i)
{
    rec r;
    r.id = i;
    r.value = u2i(mix(n->a, (uint64_t)i));
    r.origin = mix(0x5EED, (uint64_t)n->uid);
    return r;
}

static rec map_rec(const node *n, const rec *in)
{
    rec r = *in;
    r.value = u2i(i2u(in->value) * (n->a | 1) + n->b);
    return r;
}

static bool filter_keep(const node *n, const rec *in)
{
    uint64_t h = (i2u(in->value) ^ n->a) * 0x9E3779B97F4A7C15ull;
    return (h >> 61) < n->b % 9; /* keeps 0/8 .. 8/8 */
}

static unsigned flat_count(const node *n, const rec *in)
{
    return (unsigned)(mix(i2u(in->value), n->a) % 4);
}

static rec flat_rec(const node *n, const rec *in, unsigned j)
{
    rec r = *in;
    r.id = u2i(i2u(in->id) * 4 + j);
    r.value = u2i(i2u(in->value) + j * n->b);
    return r;
}

static rec tag_rec(const node *n, const rec *in)
{
    rec r = *in;
    r.origin = mix(in->origin, n->a);
    return r;
}

static rec index_rec(const rec *in, uint64_t index)
{
    rec r = *in;
    r.value = u2i(i2u(in->value) + index * 1000003u);
    return r;
}

static rec zip_rec(const node *n, const rec *const *in, size_t k)
{
    rec r;
    uint64_t v = n->a, o = 0x21B;
    for (size_t i = 0; i < k; i++) {
        v += (i + 1) * i2u(in[i]->value);
        o = mix(o, in[i]->origin);
    }
    r.id = in[0]->id;
    r.value = u2i(v);
    r.origin = o;
    return r;
}

/* What a finish callback emits: the number of records the term saw. */
static rec finish_rec(const node *n, uint64_t count)
{
    rec r;
    r.id = -1 - n->uid;
    r.value = u2i(count);
    r.origin = mix(0xF1, (uint64_t)n->uid);
    return r;
}

/* Merge has no state pointer: its finish record is a constant. */
static const rec merge_finish = {-7, 7, 0x3E56E};

/* ------------------------------------------------- variable-size records
 * A variable-size record: the rec's 24 bytes, then a tail of vtail_len(rec)
 * bytes (0 .. vt) that are a function of the rec and the graph's salt. The
 * largest record, 24 + vt, is at most the graph's byte capacity (equal in
 * half of the graphs). vdec() checks the length and every tail byte. */
static uint64_t vbcap = 1u << 20; /* the graph's byte capacity */
static size_t vt;                 /* the largest tail */
static uint64_t vsalt;
static _Atomic uint64_t vbad, vchecked;

enum { VMAXREC = 8192 }; /* largest byte capacity generated */

static size_t vtail_len(const rec *r)
{
    uint64_t h = mix(mix(i2u(r->id) ^ vsalt, i2u(r->value)), r->origin);
    switch (h % 8) {
    case 0:
        return 0;
    case 1:
        return vt;
    case 2:
        return vt - (size_t)((h >> 8) % (vt < 8 ? vt + 1 : 8));
    default:
        return (size_t)((h >> 8) % (vt + 1));
    }
}

static uint64_t vtail_word(const rec *r, size_t j)
{
    return mix(mix(r->origin ^ vsalt, i2u(r->value) + i2u(r->id)), j);
}

static size_t venc(const rec *r, unsigned char *out)
{
    memcpy(out, r, RS);
    size_t t = vtail_len(r);
    for (size_t j = 0; j < t; j += 8) {
        uint64_t w = vtail_word(r, j);
        memcpy(out + RS + j, &w, t - j < 8 ? t - j : 8);
    }
    return RS + t;
}

static size_t vlen(const rec *r)
{
    return RS + vtail_len(r);
}

/* The rec of a variable-size record; a record with a wrong length or tail
 * byte is counted in vbad and comes out as a poisoned rec (a mismatch). */
static rec vdec(const void *in)
{
    const weir_bytes *b = in;
    rec r;
    if (b->len < RS)
        goto bad;
    memcpy(&r, b->data, RS);
    size_t t = vtail_len(&r);
    if (b->len != RS + t)
        goto bad;
    const unsigned char *tail = (const unsigned char *)b->data + RS;
    for (size_t j = 0; j < t; j += 8) {
        uint64_t w = vtail_word(&r, j);
        if (memcmp(tail + j, &w, t - j < 8 ? t - j : 8) != 0)
            goto bad;
    }
    atomic_fetch_add_explicit(&vchecked, 1, memory_order_relaxed);
    return r;
bad:
    atomic_fetch_add_explicit(&vbad, 1, memory_order_relaxed);
    r.id = -424242;
    r.value = 0;
    r.origin = 0xBAD;
    return r;
}

/* Per thread and term: where a variable-size map writes its output (valid
 * until its next call on that thread: replicas of one map run on several
 * threads at once) and a function stages records (3 at most at a time).
 * Freed when the thread exits. */
static pthread_key_t vkey;
static pthread_once_t vonce = PTHREAD_ONCE_INIT;

typedef struct vtls {
    unsigned char *b[MAXNODES];
} vtls;

static void vtls_free(void *p)
{
    vtls *v = p;
    for (int i = 0; i < MAXNODES; i++)
        free(v->b[i]);
    free(v);
}

static void vkey_init(void)
{
    if (pthread_key_create(&vkey, vtls_free) != 0)
        exit(2);
}

static unsigned char *vbuf(int uid)
{
    pthread_once(&vonce, vkey_init);
    vtls *v = pthread_getspecific(vkey);
    if (!v) {
        v = calloc(1, sizeof *v);
        if (!v || pthread_setspecific(vkey, v) != 0)
            exit(2);
    }
    if (!v->b[uid] && !(v->b[uid] = malloc(3 * VMAXREC)))
        exit(2);
    return v->b[uid];
}

/* Emit rec y as a variable-size record, in one of three ways: copied from
 * `buf` (weir_emit_bytes), written in place (weir_emit_reserve/commit), or
 * as a weir_bytes (weir_emit_record). */
static int vemit(weir_emit *e, const rec *y, unsigned how, unsigned char *buf)
{
    if (how % 3 == 1 || !buf) {
        void *p = NULL;
        size_t len = vlen(y);
        /* sometimes reserve more than needed (never above the capacity) */
        size_t max = len + (how % 2 ? 0 : (size_t)(i2u(y->value) % 16));
        if (max > vbcap)
            max = len;
        int r = weir_emit_reserve(e, max, &p);
        if (r)
            return r;
        return weir_emit_commit(e, venc(y, p));
    }
    size_t len = venc(y, buf);
    if (how % 3 == 0)
        return weir_emit_bytes(e, buf, len);
    weir_bytes b = {buf, len};
    return weir_emit_record(e, &b);
}

/* ------------------------------------------------------- weir callbacks */

static int pull_fn(void *state, void *out, size_t max, bool *end)
{
    tstate *s = state;
    int64_t left = s->nd->n - s->pos;
    s->r = mix(s->r, 1);
    /* Sometimes return 0 records without the end (a yield), sometimes
     * announce the end one call late with 0 records. */
    if (max == 0 || (left > 0 && s->r % 16 == 0))
        return 0;
    size_t k = (size_t)(1 + s->r % max);
    if ((int64_t)k > left)
        k = (size_t)left;
    for (size_t i = 0; i < k; i++) {
        rec r = src_rec(s->nd, s->pos + (int64_t)i);
        memcpy((char *)out + i * RS, &r, RS);
    }
    s->pos += (int64_t)k;
    *end = s->pos == s->nd->n && (k == 0 || s->r % 4 != 0);
    return (int)k;
}

static int blocking_fn(void *state, weir_emit *e)
{
    tstate *s = state;
    rec buf[64];
    while (s->pos < s->nd->n) {
        s->r = mix(s->r, 2);
        int r;
        if (s->r % 2) {
            rec x = src_rec(s->nd, s->pos);
            r = weir_emit_record(e, &x);
            s->pos++;
        } else {
            int64_t k = 1 + (int64_t)(s->r % 64);
            if (k > s->nd->n - s->pos)
                k = s->nd->n - s->pos;
            for (int64_t i = 0; i < k; i++)
                buf[i] = src_rec(s->nd, s->pos + i);
            r = weir_emit_records(e, buf, (size_t)k);
            s->pos += k;
        }
        if (r != 0) {
            s->emit_error = true; /* nothing stops or fails these pipelines */
            return r;
        }
    }
    return 0;
}

/* The record a map, tag or running sum makes of x. */
static rec map_core(tstate *s, const rec *x)
{
    rec y;
    /* atomic: replicas of a weir_parallel term run this concurrently */
    __atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
    switch (s->nd->k) {
    case N_MAP:
        y = map_rec(s->nd, x);
        break;
    case N_TAG:
        y = tag_rec(s->nd, x);
        break;
    default: /* N_RSUM */
        s->sum += i2u(x->value);
        y = *x;
        y.value = u2i(s->sum);
        break;
    }
    return y;
}

static void map_fn(void *state, const void *in, void *out)
{
    rec x;
    memcpy(&x, in, RS);
    rec y = map_core(state, &x);
    memcpy(out, &y, RS);
}

/* keyed: the key of a record, and a shard's per-key running count */
static unsigned rec_key(const rec *r)
{
    return (unsigned)(mix(i2u(r->value), 3) % 8);
}

static rec keyed_rec(const rec *in, uint64_t count)
{
    rec r = *in;
    r.value = u2i(i2u(in->value) + count * 7919u);
    return r;
}

static uint64_t keyed_key(void *arg, const void *in)
{
    (void)arg;
    rec x;
    memcpy(&x, in, RS);
    return rec_key(&x);
}

static int keyed_fn(void *state, const void *in, weir_emit *e)
{
    uint64_t *cnt = state;
    rec x;
    memcpy(&x, in, RS);
    rec y = keyed_rec(&x, ++cnt[rec_key(&x)]);
    return weir_emit_record(e, &y);
}

static weir_term *keyed_make(void *arg, unsigned i)
{
    tstate *s = arg;
    char name[40];
    snprintf(name, sizeof name, "t%ds%u", s->nd->uid, i);
    memset(s->kcnt[i], 0, sizeof s->kcnt[i]);
    return weir_function(name, RS, RS, keyed_fn, s->kcnt[i]);
}

static int map_as_function(void *state, const void *in, weir_emit *e)
{
    rec y;
    map_fn(state, in, &y);
    return weir_emit_record(e, &y);
}

static bool pred_fn(void *state, const void *in)
{
    tstate *s = state;
    rec x;
    memcpy(&x, in, RS);
    /* atomic: replicas of a weir_parallel term run this concurrently */
    __atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
    return filter_keep(s->nd, &x);
}

static int flat_fn(void *state, const void *in, weir_emit *e)
{
    tstate *s = state;
    rec x;
    memcpy(&x, in, RS);
    /* atomic: replicas of a weir_parallel term run this concurrently */
    __atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
    unsigned c = flat_count(s->nd, &x);
    for (unsigned j = 0; j < c; j++) {
        rec y = flat_rec(s->nd, &x, j);
        int r = weir_emit_record(e, &y);
        if (r < 0)
            return r;
    }
    return 0;
}

/* add-index output {uint64 index; rec} -> rec */
static void fold_index_fn(void *state, const void *in, void *out)
{
    (void)state;
    uint64_t idx;
    rec x;
    memcpy(&idx, in, 8);
    memcpy(&x, (const char *)in + 8, RS);
    rec y = index_rec(&x, idx);
    memcpy(out, &y, RS);
}

static int zip_fn(void *state, const void *const *in, size_t n, weir_emit *e)
{
    tstate *s = state;
    rec xs[MAXCH];
    const rec *ps[MAXCH];
    for (size_t i = 0; i < n; i++) {
        memcpy(&xs[i], in[i], RS);
        ps[i] = &xs[i];
    }
    s->count++;
    rec y = zip_rec(s->nd, ps, n);
    return weir_emit_record(e, &y);
}

/* The concatenation of k records -> rec */
static void fold_zip_fn(void *state, const void *in, void *out)
{
    tstate *s = state;
    size_t k = (size_t)s->nd->b;
    rec xs[MAXCH];
    const rec *ps[MAXCH];
    for (size_t i = 0; i < k; i++) {
        memcpy(&xs[i], (const char *)in + i * RS, RS);
        ps[i] = &xs[i];
    }
    rec y = zip_rec(s->nd, ps, k);
    memcpy(out, &y, RS);
}

static int finish_fn(void *state, weir_emit *e)
{
    tstate *s = state;
    s->finish_calls++;
    rec y = finish_rec(s->nd, s->count);
    return weir_emit_record(e, &y);
}

static int merge_finish_fn(void *state, weir_emit *e)
{
    (void)state;
    return weir_emit_record(e, &merge_finish);
}

static int got_push(tstate *s, const void *recs, size_t n)
{
    if (s->ngot + n > s->capgot) {
        size_t cap = s->capgot ? s->capgot : 64;
        while (cap < s->ngot + n)
            cap *= 2;
        rec *g = realloc(s->got, cap * RS);
        if (!g)
            return -ENOMEM;
        s->got = g;
        s->capgot = cap;
    }
    memcpy(s->got + s->ngot, recs, n * RS);
    s->ngot += n;
    return 0;
}

static int sink_fn(void *state, const void *in)
{
    return got_push(state, in, 1);
}

static int batch_sink_fn(void *state, const void *recs, size_t n)
{
    return got_push(state, recs, n);
}

static int sink_finish_fn(void *state, weir_emit *e)
{
    tstate *s = state;
    s->finish_calls++;
    return e == NULL ? 0 : -EINVAL; /* sinks get no emit */
}

/* ------------------------------------------- variable-size callbacks */

/* A pull source of variable-size records: the bytes of one call live in
 * the source's arena, poisoned at the next call (they need only last until
 * then). */
static int vpull_fn(void *state, void *out, size_t max, bool *end)
{
    tstate *s = state;
    memset(s->varena, 0xA5, s->vused);
    s->vused = 0;
    int64_t left = s->nd->n - s->pos;
    s->r = mix(s->r, 1);
    if (max == 0 || (left > 0 && s->r % 16 == 0))
        return 0;
    size_t k = (size_t)(1 + s->r % (max < 16 ? max : 16));
    if ((int64_t)k > left)
        k = (size_t)left;
    weir_bytes *o = out;
    for (size_t i = 0; i < k; i++) {
        rec r = src_rec(s->nd, s->pos + (int64_t)i);
        o[i].data = s->varena + s->vused;
        o[i].len = venc(&r, s->varena + s->vused);
        s->vused += o[i].len;
    }
    s->pos += (int64_t)k;
    *end = s->pos == s->nd->n && (k == 0 || s->r % 4 != 0);
    return (int)k;
}

/* A blocking source of variable-size records: one record at a time (bytes,
 * reserve/commit, a weir_bytes) or up to 16 with weir_emit_records(); the
 * bytes it copied from are poisoned after each emit. */
static int vblocking_fn(void *state, weir_emit *e)
{
    tstate *s = state;
    weir_bytes d[16];
    while (s->pos < s->nd->n) {
        s->r = mix(s->r, 2);
        int r;
        if (s->r % 2) {
            rec x = src_rec(s->nd, s->pos);
            r = vemit(e, &x, (unsigned)(s->r >> 8), s->varena);
            memset(s->varena, 0x5A, RS + vt);
            s->pos++;
        } else {
            int64_t k = 1 + (int64_t)(s->r % 16);
            if (k > s->nd->n - s->pos)
                k = s->nd->n - s->pos;
            size_t used = 0;
            for (int64_t i = 0; i < k; i++) {
                rec x = src_rec(s->nd, s->pos + i);
                d[i].data = s->varena + used;
                d[i].len = venc(&x, s->varena + used);
                used += d[i].len;
            }
            r = weir_emit_records(e, d, (size_t)k);
            memset(s->varena, 0x5A, used);
            s->pos += k;
        }
        if (r != 0) {
            s->emit_error = true;
            return r;
        }
    }
    return 0;
}

/* Maps: var -> var (map, tag, running sum), rec -> var, var -> rec. A map's
 * variable-size output is written to the calling thread's buffer of the
 * term: valid until the term's next call on that thread. */
static void vmap_fn(void *state, const void *in, void *out)
{
    tstate *s = state;
    rec x = vdec(in);
    rec y = map_core(s, &x);
    unsigned char *b = vbuf(s->nd->uid);
    weir_bytes *o = out;
    o->len = venc(&y, b);
    o->data = b;
}

static int vmap_as_function(void *state, const void *in, weir_emit *e)
{
    tstate *s = state;
    rec x = vdec(in);
    rec y = map_core(s, &x);
    return vemit(e, &y, (unsigned)i2u(y.value), vbuf(s->nd->uid));
}

static void tovar_fn(void *state, const void *in, void *out)
{
    tstate *s = state;
    rec x;
    memcpy(&x, in, RS);
    unsigned char *b = vbuf(s->nd->uid);
    weir_bytes *o = out;
    o->len = venc(&x, b);
    o->data = b;
}

static int tovar_as_function(void *state, const void *in, weir_emit *e)
{
    tstate *s = state;
    rec x;
    memcpy(&x, in, RS);
    return vemit(e, &x, (unsigned)i2u(x.id), vbuf(s->nd->uid));
}

static void fromvar_fn(void *state, const void *in, void *out)
{
    (void)state;
    rec x = vdec(in);
    memcpy(out, &x, RS);
}

static int fromvar_as_function(void *state, const void *in, weir_emit *e)
{
    (void)state;
    rec x = vdec(in);
    return weir_emit_record(e, &x);
}

static bool vpred_fn(void *state, const void *in)
{
    tstate *s = state;
    rec x = vdec(in);
    __atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
    return filter_keep(s->nd, &x);
}

/* Flat-map on variable-size records: each output by one of the three ways
 * of vemit(), or all of a record's outputs at once (weir_emit_records). */
static int vflat_fn(void *state, const void *in, weir_emit *e)
{
    tstate *s = state;
    rec x = vdec(in);
    __atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
    unsigned c = flat_count(s->nd, &x);
    unsigned char *b = vbuf(s->nd->uid);
    if (c >= 2 && i2u(x.value) % 3 == 0) {
        weir_bytes d[3];
        for (unsigned j = 0; j < c; j++) {
            rec y = flat_rec(s->nd, &x, j);
            d[j].data = b + j * VMAXREC;
            d[j].len = venc(&y, b + j * VMAXREC);
        }
        return weir_emit_records(e, d, c);
    }
    for (unsigned j = 0; j < c; j++) {
        rec y = flat_rec(s->nd, &x, j);
        int r = vemit(e, &y, j + (unsigned)i2u(x.id), b);
        if (r < 0)
            return r;
    }
    return 0;
}

static uint64_t vkeyed_key(void *arg, const void *in)
{
    (void)arg;
    const weir_bytes *b = in;
    rec x;
    if (b->len < RS)
        return 0; /* vdec in the shard reports it */
    memcpy(&x, b->data, RS);
    return rec_key(&x);
}

typedef struct vshard {
    uint64_t *cnt;
    int uid;
} vshard;

static int vkeyed_fn(void *state, const void *in, weir_emit *e)
{
    const vshard *sh = state;
    rec x = vdec(in);
    rec y = keyed_rec(&x, ++sh->cnt[rec_key(&x)]);
    return vemit(e, &y, (unsigned)i2u(y.value), vbuf(sh->uid));
}

static vshard vshards[MAXNODES][4];

static weir_term *vkeyed_make(void *arg, unsigned i)
{
    tstate *s = arg;
    char name[40];
    snprintf(name, sizeof name, "t%ds%u", s->nd->uid, i);
    memset(s->kcnt[i], 0, sizeof s->kcnt[i]);
    vshard *sh = &vshards[s->nd->uid][i];
    sh->cnt = s->kcnt[i];
    sh->uid = s->nd->uid;
    return weir_function(name, WEIR_VARSIZE, WEIR_VARSIZE, vkeyed_fn, sh);
}

/* Zip with inputs of both kinds (inmask) and output of either. */
static int vzip_fn(void *state, const void *const *in, size_t n, weir_emit *e)
{
    tstate *s = state;
    rec xs[MAXCH];
    const rec *ps[MAXCH];
    for (size_t i = 0; i < n; i++) {
        if (s->nd->inmask >> i & 1)
            xs[i] = vdec(in[i]);
        else
            memcpy(&xs[i], in[i], RS);
        ps[i] = &xs[i];
    }
    s->count++;
    rec y = zip_rec(s->nd, ps, n);
    if (!s->nd->var)
        return weir_emit_record(e, &y);
    return vemit(e, &y, (unsigned)s->count, vbuf(s->nd->uid));
}

static int vfinish_fn(void *state, weir_emit *e)
{
    tstate *s = state;
    s->finish_calls++;
    rec y = finish_rec(s->nd, s->count);
    return vemit(e, &y, 1, NULL); /* reserve/commit */
}

static int vmerge_finish_fn(void *state, weir_emit *e)
{
    (void)state;
    return vemit(e, &merge_finish, 1, NULL);
}

static int vsink_fn(void *state, const void *in)
{
    rec x = vdec(in);
    return got_push(state, &x, 1);
}

static int vbatch_sink_fn(void *state, const void *recs, size_t n)
{
    const weir_bytes *b = recs;
    for (size_t i = 0; i < n; i++) {
        rec x = vdec(&b[i]);
        int r = got_push(state, &x, 1);
        if (r)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------ build */

/* The variable-size twin of a term (its output, or for a conversion to
 * fixed records its input, is variable-size). */
static weir_term *build_var(const node *n, tstate *s, const char *name)
{
    const size_t V = WEIR_VARSIZE;
    weir_term *t = NULL;
    switch (n->k) {
    case N_SRC:
        /* 16 records at a time, each at most the byte capacity */
        s->varena = malloc(16 * VMAXREC);
        if (!s->varena)
            return NULL;
        t = n->sub == 0 ? weir_source(name, V, vpull_fn, s)
                        : weir_blocking_source(name, V, vblocking_fn, s);
        break;
    case N_MAP:
    case N_TAG:
    case N_RSUM:
        t = n->sub ? weir_function(name, V, V, vmap_as_function, s)
                   : weir_map(name, V, V, vmap_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, vfinish_fn);
        break;
    case N_TOVAR:
        t = n->sub ? weir_function(name, RS, V, tovar_as_function, s)
                   : weir_map(name, RS, V, tovar_fn, s);
        break;
    case N_FROMVAR:
        t = n->sub ? weir_function(name, V, RS, fromvar_as_function, s)
                   : weir_map(name, V, RS, fromvar_fn, s);
        break;
    case N_FILTER:
        t = weir_filter(name, V, vpred_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, vfinish_fn);
        break;
    case N_FLAT:
        t = weir_function(name, V, V, vflat_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, vfinish_fn);
        break;
    case N_ID:
        t = weir_id(name, V);
        break;
    case N_MERGE:
        t = weir_merge(name);
        if (n->finish)
            t = weir_term_on_finish(t, vmerge_finish_fn);
        break;
    case N_ZIP: /* with a callback (the generator makes no other) */
        t = weir_zip(name, n->var ? V : RS, vzip_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, n->var ? vfinish_fn : finish_fn);
        break;
    case N_SINK:
        if (n->sub == 0) {
            t = weir_sink(name, V, vsink_fn, s);
        } else if (n->sub == 1) {
            t = weir_batch_sink(name, V, vbatch_sink_fn, s);
        } else {
            if (weir_collector_init(&s->coll, V) != 0)
                return NULL;
            s->has_coll = true;
            t = weir_collect(name, &s->coll);
        }
        if (n->finish && n->sub != 2)
            t = weir_term_on_finish(t, sink_finish_fn);
        break;
    case N_KEYED:
        t = weir_keyed(name, (unsigned)n->sub, vkeyed_key, NULL, vkeyed_make, s, WEIR_ORDERED);
        break;
    default: /* composites, stop, add-index: never variable-size */
        break;
    }
    return t;
}

static weir_term *build(const node *n)
{
    if (!n)
        return NULL;
    tstate *s = &G->st[n->uid];
    s->nd = n;
    s->r = mix(n->a, 99);
    char name[32], name2[32];
    snprintf(name, sizeof name, "t%d", n->uid);
    weir_term *t = NULL;
    if (n->var || n->k == N_FROMVAR || (n->k == N_ZIP && n->inmask))
        return build_var(n, s, name);
    switch (n->k) {
    case N_SRC:
        if (n->sub == 0) {
            t = weir_source(name, RS, pull_fn, s);
        } else if (n->sub == 1) {
            rec *a = malloc((size_t)(n->n ? n->n : 1) * RS);
            if (!a)
                return NULL;
            for (int64_t i = 0; i < n->n; i++)
                a[i] = src_rec(n, i);
            G->arrays[n->uid] = a;
            t = weir_array_source(name, a, (size_t)n->n, RS);
        } else {
            t = weir_blocking_source(name, RS, blocking_fn, s);
        }
        break;
    case N_MAP:
    case N_TAG:
    case N_RSUM:
        t = n->sub ? weir_function(name, RS, RS, map_as_function, s)
                   : weir_map(name, RS, RS, map_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, finish_fn);
        break;
    case N_FILTER:
        t = weir_filter(name, RS, pred_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, finish_fn);
        break;
    case N_FLAT:
        t = weir_function(name, RS, RS, flat_fn, s);
        if (n->finish)
            t = weir_term_on_finish(t, finish_fn);
        break;
    case N_ID:
        t = weir_id(name, RS);
        break;
    case N_INDEX:
        snprintf(name2, sizeof name2, "t%di", n->uid);
        t = weir_seq2(weir_add_index(name2, RS), weir_map(name, 8 + RS, RS, fold_index_fn, s));
        break;
    case N_MERGE:
        t = weir_merge(name);
        if (n->finish)
            t = weir_term_on_finish(t, merge_finish_fn);
        break;
    case N_ZIP:
        if (n->sub == 0) {
            t = weir_zip(name, RS, zip_fn, s);
            if (n->finish)
                t = weir_term_on_finish(t, finish_fn);
        } else {
            snprintf(name2, sizeof name2, "t%dz", n->uid);
            t = weir_seq2(weir_zip(name2, 0, NULL, NULL),
                          weir_map(name, (size_t)n->b * RS, RS, fold_zip_fn, s));
        }
        break;
    case N_SINK:
        if (n->sub == 0) {
            t = weir_sink(name, RS, sink_fn, s);
        } else if (n->sub == 1) {
            t = weir_batch_sink(name, RS, batch_sink_fn, s);
        } else {
            if (weir_collector_init(&s->coll, RS) != 0)
                return NULL;
            s->has_coll = true;
            t = weir_collect(name, &s->coll);
        }
        if (n->finish && n->sub != 2)
            t = weir_term_on_finish(t, sink_finish_fn);
        break;
    case N_TOVAR:
    case N_FROMVAR: /* build_var() */
        break;
    case N_STOP:
        t = weir_stop();
        break;
    case N_PARALLEL:
        t = weir_parallel(build(n->ch[0]), (unsigned)n->sub);
        break;
    case N_KEYED:
        t = weir_keyed(name, (unsigned)n->sub, keyed_key, NULL, keyed_make, s, WEIR_ORDERED);
        break;
    case N_SEQ:
    case N_PAR: {
        weir_term *c[MAXCH];
        for (int i = 0; i < n->nch; i++)
            c[i] = build(n->ch[i]);
        t = n->k == N_SEQ ? weir_seq((size_t)n->nch, c) : weir_par((size_t)n->nch, c);
        break;
    }
    }
    return t;
}

/* --------------------------------------------------------- reference */

typedef struct vec {
    rec *v;
    size_t n, cap;
    bool tainted;
} vec;

static void vpush(vec *v, const rec *r)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->v = realloc(v->v, v->cap * RS);
        if (!v->v) {
            fprintf(stderr, "stress_reference: out of memory\n");
            exit(2);
        }
    }
    v->v[v->n++] = *r;
}

/* A list of streams (the inputs or outputs of a term). Streams are owned by
 * the graph-wide pool below, not by lists. */
typedef struct slist {
    vec *s[64];
    int n;
} slist;

enum { POOL = 4096 };
static vec *pool[POOL];
static int npool;

static vec *new_stream(void)
{
    if (npool == POOL) {
        G->overflow = true;
        return NULL;
    }
    vec *v = calloc(1, sizeof *v);
    if (!v)
        exit(2);
    pool[npool++] = v;
    return v;
}

static void pool_free(void)
{
    for (int i = 0; i < npool; i++) {
        free(pool[i]->v);
        free(pool[i]);
    }
    npool = 0;
}

static void lpush(slist *l, vec *v)
{
    if (l->n == 64 || !v)
        G->overflow = true;
    else
        l->s[l->n++] = v;
}

/* LogicSponge evaluation: a term receives its input streams and returns its
 * output streams. */
static void eval(const node *n, const slist *ins, slist *outs)
{
    if (G->overflow)
        return;
    if (n->k == N_SEQ) {
        slist cur = *ins, next;
        for (int i = 0; i < n->nch; i++) {
            next.n = 0;
            eval(n->ch[i], &cur, &next);
            cur = next;
        }
        for (int i = 0; i < cur.n; i++)
            lpush(outs, cur.s[i]);
        return;
    }
    if (n->k == N_PAR) {
        for (int i = 0; i < n->nch; i++)
            eval(n->ch[i], ins, outs); /* broadcast; union of the outputs */
        return;
    }
    if (n->k == N_STOP)
        return;
    if (n->k == N_PARALLEL) {
        eval(n->ch[0], ins, outs); /* replicas: exactly the serial output */
        return;
    }
    if (n->k == N_SINK) {
        const vec *in = ins->s[0];
        G->want[n->sink] = in->n ? malloc(in->n * RS) : NULL;
        if (in->n)
            memcpy(G->want[n->sink], in->v, in->n * RS);
        G->nwant[n->sink] = in->n;
        G->tainted[n->sink] = in->tainted;
        return;
    }
    vec *o = new_stream();
    if (!o)
        return;
    const vec *in = ins->n ? ins->s[0] : NULL;
    switch (n->k) {
    case N_SRC:
        for (int64_t i = 0; i < n->n; i++) {
            rec r = src_rec(n, i);
            vpush(o, &r);
        }
        break;
    case N_MAP:
    case N_TAG:
    case N_RSUM: {
        uint64_t sum = 0;
        for (size_t i = 0; i < in->n; i++) {
            rec r;
            if (n->k == N_MAP) {
                r = map_rec(n, &in->v[i]);
            } else if (n->k == N_TAG) {
                r = tag_rec(n, &in->v[i]);
            } else {
                sum += i2u(in->v[i].value);
                r = in->v[i];
                r.value = u2i(sum);
            }
            vpush(o, &r);
        }
        if (n->finish) {
            rec f = finish_rec(n, in->n);
            vpush(o, &f);
        }
        o->tainted = in->tainted;
        break;
    }
    case N_FILTER:
        for (size_t i = 0; i < in->n; i++)
            if (filter_keep(n, &in->v[i]))
                vpush(o, &in->v[i]);
        if (n->finish) {
            rec f = finish_rec(n, in->n);
            vpush(o, &f);
        }
        o->tainted = in->tainted;
        break;
    case N_FLAT:
        for (size_t i = 0; i < in->n; i++) {
            unsigned c = flat_count(n, &in->v[i]);
            for (unsigned j = 0; j < c; j++) {
                rec r = flat_rec(n, &in->v[i], j);
                vpush(o, &r);
            }
        }
        if (n->finish) {
            rec f = finish_rec(n, in->n);
            vpush(o, &f);
        }
        o->tainted = in->tainted;
        break;
    case N_ID:
    case N_TOVAR:
    case N_FROMVAR: /* the bytes carry the rec */
        for (size_t i = 0; i < in->n; i++)
            vpush(o, &in->v[i]);
        o->tainted = in->tainted;
        break;
    case N_KEYED: {
        uint64_t cnt[8] = {0};
        for (size_t i = 0; i < in->n; i++) {
            rec r = keyed_rec(&in->v[i], ++cnt[rec_key(&in->v[i])]);
            vpush(o, &r);
        }
        o->tainted = in->tainted;
        break;
    }
    case N_INDEX:
        for (size_t i = 0; i < in->n; i++) {
            rec r = index_rec(&in->v[i], i);
            vpush(o, &r);
        }
        o->tainted = in->tainted;
        break;
    case N_MERGE:
        /* The union of the inputs; the order between inputs is arrival
         * order in weir, so sinks after a merge of two or more inputs are
         * compared per path (see the header). */
        for (int k = 0; k < ins->n; k++) {
            for (size_t i = 0; i < ins->s[k]->n; i++)
                vpush(o, &ins->s[k]->v[i]);
            o->tainted |= ins->s[k]->tainted;
        }
        o->tainted |= ins->n > 1;
        if (n->finish)
            vpush(o, &merge_finish);
        break;
    case N_ZIP: {
        size_t len = SIZE_MAX;
        for (int k = 0; k < ins->n; k++) {
            if (ins->s[k]->n < len)
                len = ins->s[k]->n;
            o->tainted |= ins->s[k]->tainted;
        }
        for (size_t i = 0; i < len; i++) {
            const rec *ps[MAXCH];
            for (int k = 0; k < ins->n; k++)
                ps[k] = &ins->s[k]->v[i];
            rec r = zip_rec(n, ps, (size_t)ins->n);
            vpush(o, &r);
        }
        if (n->finish) {
            rec f = finish_rec(n, len);
            vpush(o, &f);
        }
        break;
    }
    default:
        break;
    }
    G->total += o->n;
    if (n->var)
        G->vtotal += o->n;
    lpush(outs, o);
}

/* -------------------------------------------------------------- compare */

static const rec *cmp_base;
static int cmp_origin(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    uint64_t ox = cmp_base[x].origin, oy = cmp_base[y].origin;
    if (ox != oy)
        return ox < oy ? -1 : 1;
    return x < y ? -1 : x > y; /* stable: keep the order within a path */
}

/* Stable sort by origin (into a new array). */
static rec *by_origin(const rec *v, size_t n)
{
    size_t *ix = malloc((n ? n : 1) * sizeof *ix);
    rec *out = malloc((n ? n : 1) * RS);
    if (!ix || !out)
        exit(2);
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    cmp_base = v;
    qsort(ix, n, sizeof *ix, cmp_origin);
    for (size_t i = 0; i < n; i++)
        out[i] = v[ix[i]];
    free(ix);
    return out;
}

/* @return the index of the first difference, or SIZE_MAX if equal. */
static size_t compare(const rec *got, size_t ngot, const rec *want, size_t nwant, bool tainted)
{
    const rec *g = got, *w = want;
    rec *gs = NULL, *ws = NULL;
    if (tainted) {
        g = gs = by_origin(got, ngot);
        w = ws = by_origin(want, nwant);
    }
    size_t n = ngot < nwant ? ngot : nwant, diff = SIZE_MAX;
    for (size_t i = 0; i < n && diff == SIZE_MAX; i++)
        if (memcmp(&g[i], &w[i], RS) != 0)
            diff = i;
    if (diff == SIZE_MAX && ngot != nwant)
        diff = n;
    free(gs);
    free(ws);
    return diff;
}

/* ---------------------------------------------------------------- main */

/* The default sweep is 1..4 workers; --workers W takes any count up to
 * stress_common.h's 256 (oversubscription is where races show): one
 * runtime per count in use. */
enum { SWEEPW = 4, MAXW = 256 };
static weir_runtime *rts[MAXW + 1];

static uint64_t graphs, discarded, records, sinks_checked, sinks_per_path, mismatches;
static uint64_t var_graphs, var_sinks;

static void graph_free(void)
{
    for (int i = 0; i < G->nnodes; i++) {
        free(G->st[i].got);
        if (G->st[i].has_coll)
            weir_collector_deinit(&G->st[i].coll);
        free(G->arrays[i]);
        free(G->st[i].varena);
    }
    for (int i = 0; i < G->nsinks; i++)
        free(G->want[i]);
    pool_free();
}

static void report(const char *what, const node *root, const weir_pipeline_config *c,
                   unsigned workers, uint64_t gseed)
{
    fprintf(stderr,
            "stress_reference: %s\n  graph seed %" PRIu64 " (STRESS_REF_GRAPH=%" PRIu64
            " replays it), mode %s, batch %u, capacity %u, %u workers, slice %" PRIu64
            " ns, timing %d, profile %d, byte capacity %" PRIu64 " (records of 24..%zu bytes)\n",
            what, gseed, gseed, weir_exec_mode_name(c->mode), c->batch, c->capacity, workers,
            c->slice_ns, (int)c->timing, (int)c->profile, c->byte_capacity, RS + vt);
    print_tree(stderr, root, 1);
}

/* Generate, evaluate and run one graph. @return false on a hang (the
 * pipeline cannot be destroyed then). */
static bool one_graph(uint64_t gseed, unsigned wmin, unsigned wmax, bool verbose)
{
    memset(G, 0, sizeof *G);
    rng = gseed | 1;
    /* The byte capacity of the variable-size streams (64 .. 8192) and the
     * largest record: exactly the capacity (up to 2 KiB) in half of the
     * graphs, else a shorter bound. */
    vbcap = UINT64_C(64) << rndn(8);
    vt = (size_t)vbcap - RS;
    if (rndn(2) == 0 || vt > 2048)
        vt = 1 + rndn((unsigned)(vt < 512 ? vt : 512));
    vsalt = rnd();
    node *root = gen_graph();
    slist ins = {.n = 0}, outs = {.n = 0};
    if (root && !G->overflow)
        eval(root, &ins, &outs);
    if (!root || G->overflow || G->total > 200000 || G->nsinks == 0 ||
        G->vtotal * (RS + vt / 2) > (64u << 20)) {
        /* Too big for a quick check, or nothing to compare: another one. */
        discarded++;
        graph_free();
        return true;
    }
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.print_stats = false;
    c.mode = (weir_exec_mode)rndn(3);
    c.batch = 1 + rndn(300);
    c.capacity = rndn(2) ? 1 + rndn(16) : 1 + rndn(2048);
    c.slice_ns = rndn(4) == 0 ? 0 : c.slice_ns;
    c.timing = rndn(4) != 0;
    c.profile = rndn(8) == 0; /* per-callback timing: no batched map/filter path */
    c.byte_capacity = vbcap;
    unsigned workers = wmin + rndn(wmax - wmin + 1);
    if (verbose)
        report("replaying", root, &c, workers, gseed);

    weir_term *t = build(root);
    weir_pipeline *p = NULL;
    int r = weir_pipeline_create(rts[workers], t, &c, &p);
    if (r != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "create failed: %d %s", r, weir_terms_last_error());
        report(msg, root, &c, workers, gseed);
        weir_term_destroy(t);
        mismatches++;
        graph_free();
        return true;
    }
    const uint64_t vbad0 = atomic_load(&vbad);
    r = weir_pipeline_start(p);
    if (r == 0)
        r = weir_pipeline_join_for(p, 120ull * 1000 * 1000 * 1000);
    if (r == -ETIMEDOUT) {
        report("join timed out after 120 s (hang)", root, &c, workers, gseed);
        weir_pipeline_print_stats(p, stderr);
        mismatches++;
        return false;
    }
    graphs++;
    bool bad = false;
    if (r != 0) {
        char msg[700];
        snprintf(msg, sizeof msg, "run failed: %d %s", r, weir_pipeline_error(p));
        report(msg, root, &c, workers, gseed);
        bad = true;
    }
    for (int i = 0; i < G->nnodes && !bad; i++) {
        if (G->st[i].emit_error) {
            report("a blocking source's emit failed", root, &c, workers, gseed);
            bad = true;
        }
    }
    bool has_var = false;
    for (int i = 0; i < G->nnodes; i++)
        has_var |= G->nodes[i].var;
    var_graphs += has_var;
    for (int k = 0; k < G->nsinks && !bad; k++) {
        const node *sn = G->sinks[k];
        tstate *s = &G->st[sn->uid];
        if (sn->var && s->has_coll) {
            /* a variable-size collector: its records decoded */
            const weir_bytes *b = s->coll.data;
            for (size_t i = 0; i < s->coll.count; i++) {
                rec x = vdec(&b[i]);
                got_push(s, &x, 1);
            }
        }
        var_sinks += sn->var;
        const bool coll = s->has_coll && !sn->var;
        const rec *got = coll ? s->coll.data : s->got;
        size_t ngot = coll ? s->coll.count : s->ngot;
        size_t d = compare(got, ngot, G->want[k], G->nwant[k], G->tainted[k]);
        sinks_checked++;
        sinks_per_path += G->tainted[k];
        records += ngot;
        if (d != SIZE_MAX) {
            char msg[400];
            snprintf(msg, sizeof msg,
                     "sink t%d (sink %d, %s): got %zu records, want %zu; first difference at "
                     "%zu%s",
                     sn->uid, k, G->tainted[k] ? "after a merge: compared per path" : "exact", ngot,
                     G->nwant[k], d, "");
            report(msg, root, &c, workers, gseed);
            bad = true;
        }
        if (sn->finish && s->finish_calls != 1) {
            char msg[200];
            snprintf(msg, sizeof msg, "sink t%d: finish called %u times", sn->uid, s->finish_calls);
            report(msg, root, &c, workers, gseed);
            bad = true;
        }
    }
    for (int i = 0; i < G->nnodes && !bad; i++) {
        const node *n = &G->nodes[i];
        if (n->finish && n->k != N_MERGE && n->k != N_SINK && G->st[i].finish_calls != 1) {
            char msg[200];
            snprintf(msg, sizeof msg, "term t%d: finish called %u times", n->uid,
                     G->st[i].finish_calls);
            report(msg, root, &c, workers, gseed);
            bad = true;
        }
    }
    if (!bad && atomic_load(&vbad) != vbad0) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "%" PRIu64 " variable-size records had a wrong length or tail byte",
                 atomic_load(&vbad) - vbad0);
        report(msg, root, &c, workers, gseed);
        bad = true;
    }
    if (bad)
        mismatches++;
    weir_pipeline_destroy(p);
    graph_free();
    return true;
}

int main(int argc, char **argv)
{
    stress_opts o;
    int pr = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (pr)
        return pr;
    unsigned wmin = o.workers ? o.workers : 1, wmax = o.workers ? o.workers : SWEEPW;
    G = calloc(1, sizeof *G);
    if (!G)
        return 2;
    for (unsigned w = wmin; w <= wmax; w++) {
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.workers = w;
        cfg.affinity = WEIR_AFFINITY_NONE;
        cfg.print_stats = false;
        if (weir_runtime_create(&cfg, &rts[w]) != 0) {
            fprintf(stderr, "stress_reference: runtime: %s\n", weir_last_error());
            return 2;
        }
    }
    bool ok = true;
    const char *replay = getenv("STRESS_REF_GRAPH");
    if (replay && *replay) {
        ok = one_graph(strtoull(replay, NULL, 10), wmin, wmax, true);
    } else {
        uint64_t master = (uint64_t)o.seed * 0x9E3779B97F4A7C15ull + 1;
        double end = stress_now() + o.seconds;
        while (ok && mismatches == 0 && stress_now() < end) {
            master = mix(master, 0xA5);
            ok = one_graph(master, wmin, wmax, false);
        }
    }
    if (ok) {
        for (unsigned w = wmin; w <= wmax; w++)
            weir_runtime_destroy(rts[w]);
    }
    printf("stress_reference: %" PRIu64 " graphs checked (%" PRIu64 " too big, skipped), %" PRIu64
           " sinks (%" PRIu64 " after a merge, compared per path), %" PRIu64
           " records compared; variable-size: %" PRIu64 " graphs, %" PRIu64 " sinks, %" PRIu64
           " records checked byte by byte, %" PRIu64 " bad; %" PRIu64
           " mismatches (seed %lu, workers %u..%u)\n",
           graphs, discarded, sinks_checked, sinks_per_path, records, var_graphs, var_sinks,
           (uint64_t)atomic_load(&vchecked), (uint64_t)atomic_load(&vbad), mismatches, o.seed, wmin,
           wmax);
    free(G);
    fflush(stdout);
    if (!ok)
        _Exit(1); /* a hung pipeline still runs: do not wait for it */
    return mismatches ? 1 : 0;
}
