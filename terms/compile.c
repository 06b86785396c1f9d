/*
 * weir terms — compile: term tree -> stage graph.
 *
 * 1. Walk the tree: refuse NULL children, empty composites and terms used
 *    twice; list the primitives in tree order.
 * 2. Evaluate it the way LogicSponge composes: a term receives a list of
 *    input streams (producer terms) and returns its output streams.
 *    seq feeds each child the previous child's outputs; par feeds every
 *    branch the same inputs (a broadcast: one more cursor per branch) and
 *    returns the union of their outputs, refusing two with one name. Each
 *    primitive checks its input count and record sizes here, so every error
 *    names the terms involved.
 * 3. Fuse: a consumer C joins its producer P's stage when C has one input,
 *    P has exactly one consumer, C is a 1-in/1-out term or a sink, and the
 *    mode allows it (pool: after pull sources, functions, merge, zip;
 *    hybrid: the same but not after sources, which run on threads; threads:
 *    never). Maximal runs become one stage.
 * 4. Give every stage whose last term has consumers one output stream with
 *    one cursor per consumer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stream_place.h"

/* A growable list of terms. Zero-initialised it starts on the heap;
 * weir__tvec_local() starts it in `small`, so that the short lists a seq
 * passes between its children cost no allocation (such a vector must not
 * be copied by value). */
typedef struct weir__tvec {
    weir_term **v;
    size_t n, cap;
    weir_term *small[4];
} weir__tvec;

static void weir__tvec_local(weir__tvec *v)
{
    v->v = v->small;
    v->n = 0;
    v->cap = sizeof v->small / sizeof v->small[0];
}

static int weir__tvec_push(weir__tvec *v, weir_term *t)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        weir_term **n;
        if (v->v == v->small) {
            n = weir_malloc(cap * sizeof *n);
            if (n)
                memcpy(n, v->small, v->n * sizeof *n);
        } else {
            n = weir_realloc(v->v, cap * sizeof *n);
        }
        if (!n)
            return -ENOMEM;
        v->v = n;
        v->cap = cap;
    }
    v->v[v->n++] = t;
    return 0;
}

static void weir__tvec_free(weir__tvec *v)
{
    if (v->v != v->small)
        weir_free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

/* A connection made by the evaluation: input `slot` of consumer `c` is the
 * output of `pr`. The edges are collected in one vector and turned into the
 * terms' inputs / consumers arrays in one block afterwards (weir__link). */
typedef struct weir__edge {
    weir_term *pr, *c;
    unsigned slot;
} weir__edge;

typedef struct weir__cc {
    weir__edge *e;
    size_t n, cap;
    /* the pull sources' batch buffers and the maps' output records, with
     * room to align each (the stage block, see "Memory"); too_big: over
     * SIZE_MAX, reported as out of memory once the evaluation succeeded */
    unsigned batch;
    size_t bufs;
    bool too_big;
} weir__cc;

/*
 * Memory. A pipeline's stages live in one block and its streams in another,
 * carved in order, so that compile and destroy cost a handful of
 * allocations whatever the number of branches:
 *   stage block (owned by p->stages, which is its first part): the stage
 *     pointers, one stage per term at most, the nodes, the merge/zip/input
 *     slots (one per edge at most), each merge's ready set (two bits per
 *     input and a little more, stage.c), then, after all of those, the pull
 *     sources' batch buffers and the maps' output records (their pages are
 *     touched only when records reach them); sized from the terms and edges
 *     (and the buffers' sizes summed by the evaluation) before the
 *     stages are known, so the stage slots of fused terms stay unused (and
 *     untouched: a large block is mapped lazily).
 *   stream block (owned by p->streams): the stream pointers, the streams,
 *     their cursors, consumer lists and input indices (a cursor's bit in
 *     its merge's ready set), then the rings; sized exactly once the
 *     stages are built. Rings are not zeroed, so a ring's pages are only
 *     touched when records are written to them.
 */
typedef struct weir__mem {
    char *at;   /* next free byte */
    char *bufs; /* the stage block: next free byte of the buffers at its end */
} weir__mem;

#define WEIR__LINE(x) (((x) + WEIR_CACHELINE - 1) / WEIR_CACHELINE * WEIR_CACHELINE)

/* `bytes` at the next multiple of `align` (a power of two) */
static void *weir__take(weir__mem *m, size_t align, size_t bytes)
{
    char *r = (char *)(((uintptr_t)m->at + align - 1) & ~(uintptr_t)(align - 1));
    m->at = r + bytes;
    return r;
}

/* A record buffer (pull batch, map output) from the part of the stage block
 * after the stages, so that the stages stay dense and a buffer's pages are
 * only touched when records are written there. */
static void *weir__take_buf(weir__mem *m, size_t bytes)
{
    weir__mem b = {m->bufs, NULL};
    void *r = weir__take(&b, alignof(max_align_t), bytes);
    m->bufs = b.at;
    return r;
}

/* *acc += a * b, false on overflow */
static bool weir__add(size_t *acc, size_t a, size_t b)
{
    size_t x;
    return !__builtin_mul_overflow(a, b, &x) && !__builtin_add_overflow(*acc, x, acc);
}

static int weir__oom(void)
{
    return weir__terms_error(-ENOMEM, "weir_pipeline_create: out of memory");
}

/* ------------------------------------------------------------- 1. walk */

static int weir__walk(weir_pipeline *p, weir__tvec *prims, weir_term *t, weir_term *group)
{
    if (t->kind == WEIR__K_KEYED && group)
        return weir__terms_error(-EINVAL,
                                 "keyed '%s' is inside %s '%s': a keyed term cannot be replicated "
                                 "(its shards already run in parallel)",
                                 t->name, group->kind_name, group->name);
    if (t->kind == WEIR__K_PARALLEL && group && group->kind == WEIR__K_KEYED)
        return weir__terms_error(-EINVAL, "keyed '%s': a shard cannot be a parallel term",
                                 group->name);
    if ((t->kind == WEIR__K_PARALLEL || t->kind == WEIR__K_KEYED) && !group)
        group = t; /* a weir_parallel inside another joins the outer one */
    if (t->kind == WEIR__K_KEYED) {
        /* each shard is one primitive term of the kinds a replica can run */
        for (size_t i = 0; i < t->nchildren; i++) {
            weir_term *c = t->children[i];
            if (!c)
                return weir__terms_error(-EINVAL,
                                         "keyed '%s': the factory returned NULL for shard %zu "
                                         "(%s)",
                                         t->name, i, weir_terms_last_error());
            if (!t->child_owned[i])
                return weir__terms_error(-EINVAL,
                                         "keyed '%s': shard %zu ('%s') is used twice: the factory "
                                         "must make a new term for every shard",
                                         t->name, i, c->name);
            if (c->kind != WEIR__K_FUNCTION && c->kind != WEIR__K_MAP &&
                c->kind != WEIR__K_FILTER && c->kind != WEIR__K_SINK && c->kind != WEIR__K_SPAWN)
                return weir__terms_error(-EINVAL,
                                         "keyed '%s': shard %zu is %s '%s'; each shard must be "
                                         "one function, map, filter or sink term",
                                         t->name, i, c->kind_name, c->name);
            if (c->tick)
                return weir__terms_error(-EINVAL,
                                         "keyed '%s': shard %zu ('%s') waits for time (a tick); a "
                                         "shard cannot",
                                         t->name, i, c->name);
            c->shard = (unsigned)i;
        }
    }
    if (t->kind == WEIR__K_SEQ || t->kind == WEIR__K_PAR || t->kind == WEIR__K_PARALLEL ||
        t->kind == WEIR__K_KEYED) {
        if (t->nchildren == 0)
            return weir__terms_error(-EINVAL, "empty %s: a composite needs at least one term",
                                     t->kind_name);
        for (size_t i = 0; i < t->nchildren; i++) {
            weir_term *c = t->children[i];
            if (!c)
                return weir__terms_error(-EINVAL, "%s: term #%zu is NULL (a constructor failed?)",
                                         t->kind_name, i + 1);
            if (!t->child_owned[i])
                return weir__terms_error(-EINVAL,
                                         "%s: term '%s' (#%zu) is used twice: a term can appear "
                                         "in one place of one tree",
                                         t->kind_name, c->name, i + 1);
            int r = weir__walk(p, prims, c, group);
            if (r < 0)
                return r;
        }
        return 0;
    }
    /* a previous failed create may have left compile results behind */
    weir__term_reset_compile(t);
    t->index = (unsigned)prims->n;
    t->group = group;
    return weir__tvec_push(prims, t) < 0 ? weir__oom() : 0;
}

/* ------------------------------------------------------------- 2. eval */

static bool weir__has_output(const weir_term *t)
{
    switch (t->kind) {
    case WEIR__K_SINK:
    case WEIR__K_BATCH_SINK:
    case WEIR__K_STOP:
    case WEIR__K_SEQ:
    case WEIR__K_PAR:
    case WEIR__K_PARALLEL:
    case WEIR__K_KEYED:
        return false;
    case WEIR__K_SPAWN:
        return t->out_size != 0; /* sub-pipelines ending in sinks: none */
    default:
        return true;
    }
}

/* Record c's inputs as edges (counting ninputs and nconsumers only);
 * weir__link() makes the arrays. A consumer's edges are contiguous. */
static int weir__connect(weir__cc *cc, weir_term *c, const weir__tvec *ins)
{
    if (ins->n == 0)
        return 0;
    if (ins->n > UINT32_MAX - 1 || cc->n > SIZE_MAX / 2 / sizeof *cc->e - ins->n)
        return weir__oom();
    if (cc->n + ins->n > cc->cap) {
        size_t cap = cc->cap ? cc->cap * 2 : 64;
        while (cap < cc->n + ins->n)
            cap *= 2;
        weir__edge *e = weir_realloc(cc->e, cap * sizeof *e);
        if (!e)
            return weir__oom();
        cc->e = e;
        cc->cap = cap;
    }
    for (size_t i = 0; i < ins->n; i++) {
        weir_term *pr = ins->v[i];
        if (pr->nconsumers == UINT32_MAX - 1)
            return weir__oom();
        cc->e[cc->n++] = (weir__edge){pr, c, (unsigned)i};
        pr->nconsumers++;
    }
    c->ninputs = (unsigned)ins->n;
    return 0;
}

/* Turn the edges into every term's inputs, consumers and consumer_slot: one
 * block, appended to p->terms (which owns it: weir__compile_free() frees
 * p->terms and only clears the terms' pointers). */
static int weir__link(weir_pipeline *p, const weir__cc *cc)
{
    size_t T = p->nterms, E = cc->n;
    size_t bytes = T * sizeof(weir_term *) + E * (2 * sizeof(weir_term *) + sizeof(unsigned));
    weir_term **nt = weir_realloc(p->terms, bytes ? bytes : 1);
    if (!nt)
        return weir__oom();
    p->terms = nt;
    weir_term **ins = nt + T, **cons = ins + E;
    unsigned *slots = (unsigned *)(void *)(cons + E);
    size_t off = 0;
    for (size_t k = 0; k < T; k++) {
        weir_term *t = nt[k];
        t->consumers = t->nconsumers ? cons + off : NULL;
        t->consumer_slot = t->nconsumers ? slots + off : NULL;
        t->consumers_cap = 0; /* the fill position below */
        off += t->nconsumers;
    }
    for (size_t k = 0; k < E; k++) {
        const weir__edge *e = &cc->e[k];
        ins[k] = e->pr;
        if (e->slot == 0)
            e->c->inputs = &ins[k];
        e->pr->consumers[e->pr->consumers_cap] = e->c;
        e->pr->consumer_slot[e->pr->consumers_cap] = e->slot;
        e->pr->consumers_cap++;
    }
    return 0;
}

static void weir__names(const weir__tvec *ins, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < ins->n && len + 8 < n; i++) {
        int k = snprintf(buf + len, n - len, "%s'%s'", i ? ", " : "", ins->v[i]->name);
        if (k < 0)
            break;
        len += (size_t)k;
        if (i == 5 && ins->n > 7) {
            snprintf(buf + len, n - len, ", ... %zu more", ins->n - 6);
            break;
        }
    }
}

/* "16-byte" or "variable-size" for messages. */
static const char *weir__size_text(size_t size, bool var, char *buf, size_t n)
{
    if (var)
        snprintf(buf, n, "variable-size");
    else
        snprintf(buf, n, "%zu-byte", size);
    return buf;
}

static int weir__eval_primitive(weir__cc *cc, weir_term *t, const weir__tvec *ins, weir__tvec *outs)
{
    char names[256];
    switch (t->kind) {
    case WEIR__K_PULL:
    case WEIR__K_BLOCKING:
        if (ins->n) {
            weir__names(ins, names, sizeof names);
            return weir__terms_error(-EINVAL,
                                     "%s '%s' is fed by %s: a source takes no input (compose "
                                     "sources with weir_par, not after another term)",
                                     t->kind_name, t->name, names);
        }
        break;
    case WEIR__K_FUNCTION:
    case WEIR__K_MAP:
    case WEIR__K_FILTER:
    case WEIR__K_SINK:
    case WEIR__K_BATCH_SINK:
    case WEIR__K_SPAWN:
        if (ins->n == 0)
            return weir__terms_error(-EINVAL,
                                     "%s '%s' has no input: nothing before it produces records",
                                     t->kind_name, t->name);
        if (ins->n > 1) {
            weir__names(ins, names, sizeof names);
            return weir__terms_error(-EINVAL,
                                     "%s '%s' has %zu inputs (%s) but reads one stream: put "
                                     "weir_merge() or weir_zip() before it",
                                     t->kind_name, t->name, ins->n, names);
        }
        if (ins->v[0]->out_size != t->in_size || ins->v[0]->out_var != t->in_var) {
            char want[48], got[48];
            return weir__terms_error(
                -EINVAL,
                "%s '%s' expects %s records but its input %s '%s' "
                "produces %s records",
                t->kind_name, t->name, weir__size_text(t->in_size, t->in_var, want, sizeof want),
                ins->v[0]->kind_name, ins->v[0]->name,
                weir__size_text(ins->v[0]->out_size, ins->v[0]->out_var, got, sizeof got));
        }
        break;
    case WEIR__K_MERGE:
        if (ins->n == 0)
            return weir__terms_error(-EINVAL, "merge '%s' has no input", t->name);
        for (size_t i = 1; i < ins->n; i++)
            if (ins->v[i]->out_size != ins->v[0]->out_size ||
                ins->v[i]->out_var != ins->v[0]->out_var) {
                char a[48], b[48];
                return weir__terms_error(
                    -EINVAL, "merge '%s': input '%s' has %s records but input '%s' has %s records",
                    t->name, ins->v[0]->name,
                    weir__size_text(ins->v[0]->out_size, ins->v[0]->out_var, a, sizeof a),
                    ins->v[i]->name,
                    weir__size_text(ins->v[i]->out_size, ins->v[i]->out_var, b, sizeof b));
            }
        t->in_size = t->out_size = ins->v[0]->out_size;
        t->in_var = t->out_var = ins->v[0]->out_var;
        break;
    case WEIR__K_ZIP:
        if (ins->n == 0)
            return weir__terms_error(-EINVAL, "zip '%s' has no input", t->name);
        if (!t->fn.zip) {
            size_t sum = 0;
            for (size_t i = 0; i < ins->n; i++) {
                if (ins->v[i]->out_var)
                    return weir__terms_error(
                        -EINVAL,
                        "zip '%s' has no function, so it concatenates fixed-size records, but "
                        "its input %s '%s' has variable-size records (give the zip a function)",
                        t->name, ins->v[i]->kind_name, ins->v[i]->name);
                sum += ins->v[i]->out_size;
            }
            t->out_size = sum;
        }
        break;
    case WEIR__K_STOP:
        /* Stop swallows its inputs by not reading them: a stream nobody
         * reads is not even allocated, its producer's records are dropped. */
        return 0;
    default:
        return 0;
    }
    if (t->kind == WEIR__K_MAP || (t->kind == WEIR__K_ZIP && !t->fn.zip) ||
        t->kind == WEIR__K_PULL) {
        size_t k = t->kind == WEIR__K_PULL ? cc->batch : 1;
        if (t->out_size > SIZE_MAX / 2 / k ||
            !weir__add(&cc->bufs, t->out_size * k + alignof(max_align_t), 1))
            cc->too_big = true;
    }
    int r = weir__connect(cc, t, ins);
    if (r < 0)
        return r;
    if (weir__has_output(t) && weir__tvec_push(outs, t) < 0)
        return weir__oom();
    return 0;
}

/* The output names of a par, in a hash table (open addressing): each name's
 * first output and branch, and whether a later branch repeats it. */
typedef struct weir__named {
    weir_term *t; /* NULL: empty slot */
    size_t branch;
    uint64_t hash;
    bool clash;
} weir__named;

static uint64_t weir__hash_name(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Two branches of a par must not output streams of one name. Expected
 * linear in the outputs; reports the same clash as sorting them by (name,
 * branch) would: the smallest clashing name, at its first two branches. A
 * branch never outputs one name twice (its own par checked that). */
static int weir__check_names(const weir__tvec *outs, size_t from, const size_t *branch_end)
{
    size_t n = outs->n - from;
    if (n < 2)
        return 0;
    weir__named local[16];
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    weir__named *tab = cap == 16 ? local : weir_malloc(cap * sizeof *tab);
    if (!tab)
        return weir__oom();
    memset(tab, 0, cap * sizeof *tab);
    const weir__named *best = NULL;
    weir_term *best_second = NULL;
    size_t best_branch = 0, b = 0;
    for (size_t k = from; k < outs->n; k++) {
        while (k >= branch_end[b])
            b++;
        weir_term *t = outs->v[k];
        uint64_t h = weir__hash_name(t->name);
        size_t i = (size_t)h & (cap - 1);
        while (tab[i].t && (tab[i].hash != h || strcmp(tab[i].t->name, t->name) != 0))
            i = (i + 1) & (cap - 1);
        if (!tab[i].t) {
            tab[i] = (weir__named){t, b, h, false};
        } else if (!tab[i].clash) {
            tab[i].clash = true;
            if (!best || strcmp(t->name, best->t->name) < 0) {
                best = &tab[i];
                best_second = t;
                best_branch = b;
            }
        }
    }
    int r = 0;
    if (best)
        r = weir__terms_error(-EINVAL,
                              "parallel composition: two branches output a stream named '%s' "
                              "(%s '%s' in branch %zu and %s '%s' in branch %zu); give parallel "
                              "terms distinct names",
                              best_second->name, best->t->kind_name, best->t->name,
                              best->branch + 1, best_second->kind_name, best_second->name,
                              best_branch + 1);
    if (tab != local)
        weir_free(tab);
    return r;
}

static int weir__eval(weir__cc *cc, weir_term *t, const weir__tvec *ins, weir__tvec *outs)
{
    int r = 0;
    if (t->kind == WEIR__K_PARALLEL)
        return weir__eval(cc, t->children[0], ins, outs); /* a marker: same inputs */
    if (t->kind == WEIR__K_KEYED) {
        /* Shard 0 stands for all of them in the graph: it reads the input
         * and produces the output stream; the others must look the same. */
        weir_term *c0 = t->children[0];
        r = weir__eval(cc, c0, ins, outs);
        for (size_t i = 1; i < t->nchildren && r == 0; i++) {
            weir_term *c = t->children[i];
            if (c->kind != c0->kind || c->in_size != c0->in_size || c->out_size != c0->out_size)
                r = weir__terms_error(-EINVAL,
                                      "keyed '%s': shard %zu is %s '%s' (%zu -> %zu bytes) but "
                                      "shard 0 is %s '%s' (%zu -> %zu bytes); every shard must "
                                      "be the same kind of term with the same record sizes",
                                      t->name, i, c->kind_name, c->name, c->in_size, c->out_size,
                                      c0->kind_name, c0->name, c0->in_size, c0->out_size);
        }
        return r;
    }
    if (t->kind == WEIR__K_SEQ) {
        /* The first child reads `ins` itself; then two local vectors take
         * turns (no allocation while a stage boundary carries <= 4 streams). */
        weir__tvec a, b;
        weir__tvec_local(&a);
        weir__tvec_local(&b);
        const weir__tvec *cur = ins;
        weir__tvec *next = &a;
        for (size_t i = 0; i < t->nchildren && r == 0; i++) {
            next->n = 0;
            r = weir__eval(cc, t->children[i], cur, next);
            cur = next;
            next = next == &a ? &b : &a;
        }
        for (size_t i = 0; i < cur->n && r == 0; i++)
            if (weir__tvec_push(outs, cur->v[i]) < 0)
                r = weir__oom();
        weir__tvec_free(&a);
        weir__tvec_free(&b);
        return r;
    }
    if (t->kind == WEIR__K_PAR) {
        /* branch_end[i]: outs->n after branch i (on the stack for a few) */
        size_t from = outs->n, local_end[8];
        size_t *end = t->nchildren <= 8 ? local_end : weir_malloc(t->nchildren * sizeof *end);
        if (!end)
            return weir__oom();
        for (size_t i = 0; i < t->nchildren && r == 0; i++) {
            r = weir__eval(cc, t->children[i], ins, outs);
            end[i] = outs->n;
        }
        if (r == 0)
            r = weir__check_names(outs, from, end);
        if (end != local_end)
            weir_free(end);
        return r;
    }
    return weir__eval_primitive(cc, t, ins, outs);
}

/* Every weir_parallel must hold function, map and filter terms (a chain, or
 * a par of chains: each branch then is a parallel stage of its own). */
static int weir__check_groups(weir_pipeline *p)
{
    for (unsigned k = 0; k < p->nterms; k++) {
        weir_term *t = p->terms[k];
        weir_term *g = t->group;
        if (!g)
            continue;
        if (g->kind == WEIR__K_KEYED)
            continue; /* checked by the walk */
        if (t->kind != WEIR__K_FUNCTION && t->kind != WEIR__K_MAP && t->kind != WEIR__K_FILTER)
            return weir__terms_error(-EINVAL,
                                     "%s '%s': %s '%s' cannot run as replicas; only function, "
                                     "map and filter terms (or a seq of them) can",
                                     g->kind_name, g->name, t->kind_name, t->name);
        if (t->tick)
            return weir__terms_error(-EINVAL,
                                     "%s '%s': %s '%s' waits for time (a tick) and cannot run as "
                                     "replicas (put it before or after the parallel term)",
                                     g->kind_name, g->name, t->kind_name, t->name);
    }
    return 0;
}

/* ------------------------------------------------------------- 3. fuse */

static bool weir__fusable(const weir_pipeline *p, const weir_term *pr, const weir_term *c)
{
    /* A replicated term starts a stage of its own (its dispatcher reads a
     * stream), and the replicated run stays one stage in every mode:
     * adjacent weir_parallel terms fuse into one parallel stage. */
    if (c->group)
        return c->group->kind == WEIR__K_PARALLEL && pr->group &&
               pr->group->kind == WEIR__K_PARALLEL && pr->nconsumers == 1 && c->ninputs == 1;
    if (p->cfg.mode == WEIR_EXEC_THREADS)
        return false;
    if (pr->nconsumers != 1 || c->ninputs != 1)
        return false;
    switch (c->kind) {
    case WEIR__K_FUNCTION:
    case WEIR__K_MAP:
    case WEIR__K_FILTER:
    case WEIR__K_SINK:
    case WEIR__K_BATCH_SINK:
        break;
    default:
        return false;
    }
    switch (pr->kind) {
    case WEIR__K_PULL:
        return p->cfg.mode == WEIR_EXEC_POOL;
    case WEIR__K_FUNCTION:
    case WEIR__K_MAP:
    case WEIR__K_FILTER:
    case WEIR__K_MERGE:
    case WEIR__K_ZIP:
        return true;
    default:
        return false; /* blocking sources run on their own thread */
    }
}

static bool weir__on_thread(const weir_pipeline *p, weir__head h)
{
    if (h == WEIR__H_BLOCKING || p->cfg.mode == WEIR_EXEC_THREADS)
        return true;
    return p->cfg.mode == WEIR_EXEC_HYBRID && h == WEIR__H_PULL;
}

static weir__head weir__head_of(const weir_term *t)
{
    switch (t->kind) {
    case WEIR__K_PULL:
        return WEIR__H_PULL;
    case WEIR__K_BLOCKING:
        return WEIR__H_BLOCKING;
    case WEIR__K_MERGE:
        return WEIR__H_MERGE;
    case WEIR__K_ZIP:
        return WEIR__H_ZIP;
    default:
        return WEIR__H_INPUT;
    }
}

static int weir__build_stage(weir_pipeline *p, weir_term *head, weir__stage **out, weir__mem *m)
{
    unsigned n = 1;
    for (weir_term *t = head; t->nconsumers == 1 && weir__fusable(p, t, t->consumers[0]);
         t = t->consumers[0])
        n++;
    weir__stage *s = weir__take(m, WEIR_CACHELINE, sizeof *s);
    memset((void *)s, 0, sizeof *s);
    s->check_cancel = true; /* until the records prove cheap (stage.c) */
    *out = s;
    atomic_init(&s->state, WEIR__ST_IDLE);
    atomic_init(&s->queued_at, 0);
    atomic_init(&s->st_activations, 0);
    atomic_init(&s->st_ns, 0);
    atomic_init(&s->st_starvations, 0);
    atomic_init(&s->st_max_wait, 0);
    s->p = p;
    s->id = p->nstages;
    s->head = weir__head_of(head);
    s->nodes = weir__take(m, alignof(max_align_t), n * sizeof *s->nodes);
    memset(s->nodes, 0, n * sizeof *s->nodes);
    s->nnodes = n;
    weir_term *t = head;
    for (unsigned i = 0; i < n; i++, t = i < n ? t->consumers[0] : t) {
        weir__node *nd = &s->nodes[i];
        nd->stage = s;
        nd->idx = i;
        nd->kind = t->kind;
        nd->out_var = t->out_var;
        nd->state = t->state;
        nd->fn = t->fn;
        nd->term = t;
        atomic_init(&nd->st_in, 0);
        atomic_init(&nd->st_out, 0);
        atomic_init(&nd->st_ns, 0);
        t->stage = s;
        t->node = i;
        if (t->kind == WEIR__K_MAP || (t->kind == WEIR__K_ZIP && !t->fn.zip))
            nd->tmp = weir__take_buf(m, t->out_size);
        /* A fused batch sink's buffer is per thread (stage.c), not here. */
    }
    if (s->head == WEIR__H_INPUT || s->head == WEIR__H_MERGE || s->head == WEIR__H_ZIP) {
        s->ninputs = head->ninputs;
        s->inputs = weir__take(m, alignof(max_align_t), s->ninputs * sizeof *s->inputs);
        memset(s->inputs, 0, s->ninputs * sizeof *s->inputs);
        if (s->head == WEIR__H_ZIP) {
            s->zip_in = weir__take(m, alignof(max_align_t), s->ninputs * sizeof *s->zip_in);
            memset((void *)s->zip_in, 0, s->ninputs * sizeof *s->zip_in);
        }
        if (s->head == WEIR__H_MERGE) {
            /* The ready set (internal.h): the producers' words on lines of
             * their own, then the activation's pending set, every input
             * pending at first (the first activation looks at each once). */
            weir__ready *rd = &s->ready;
            rd->w1 = weir__ready_w1(s->ninputs);
            rd->w0 = weir__ready_w0(s->ninputs);
            rd->ready1 = weir__take(m, WEIR_CACHELINE, rd->w1 * sizeof(uint64_t));
            rd->ready0 = weir__take(m, alignof(uint64_t), rd->w0 * sizeof(uint64_t));
            rd->pend1 = weir__take(m, WEIR_CACHELINE, rd->w1 * sizeof(uint64_t));
            rd->pend0 = weir__take(m, alignof(uint64_t), rd->w0 * sizeof(uint64_t));
            for (unsigned j = 0; j < rd->w1; j++) {
                atomic_init(&rd->ready1[j], 0);
                unsigned left = s->ninputs - j * 64;
                rd->pend1[j] = left >= 64 ? UINT64_MAX : (UINT64_C(1) << left) - 1;
            }
            for (unsigned k = 0; k < rd->w0; k++) {
                atomic_init(&rd->ready0[k], 0);
                unsigned left = rd->w1 - k * 64;
                rd->pend0[k] = left >= 64 ? UINT64_MAX : (UINT64_C(1) << left) - 1;
            }
            rd->nended = 0;
        }
    }
    if (s->head == WEIR__H_PULL)
        s->buf = weir__take_buf(m, (size_t)p->cfg.batch * head->out_size);
    /* A parallel stage: its leading replicated nodes, then a serial tail. */
    unsigned npar = 0;
    unsigned width = 0; /* adjacent groups fused: the widest wins */
    bool all = false;   /* a width of 0 (every worker) is the widest */
    bool ordered = false;
    weir_term *keyed = NULL;
    if (s->nodes[0].term->group && s->nodes[0].term->group->kind == WEIR__K_KEYED) {
        keyed = s->nodes[0].term->group;
        npar = 1; /* shard 0; what follows is the serial tail */
        width = keyed->width;
        ordered = !keyed->unordered;
    }
    while (!keyed && npar < n && s->nodes[npar].term->group) {
        const weir_term *g = s->nodes[npar].term->group;
        if (g->width == 0)
            all = true;
        else if (g->width > width)
            width = g->width;
        if (!g->unordered)
            ordered = true; /* one ordered group orders the stage */
        npar++;
    }
    if (all)
        width = 0;
    /* Maps and filters (then at most a sink) after the head can run a batch
     * at a time; the per-callback profile keeps the per-record path. For a
     * parallel stage that is the serial tail, run at commit. */
    s->vec_from = npar ? npar : s->head == WEIR__H_INPUT ? 0 : 1;
    s->vec = !p->cfg.profile && (s->head == WEIR__H_INPUT || s->head == WEIR__H_PULL) &&
             s->vec_from < s->nnodes;
    for (unsigned i = s->vec_from; s->vec && i < s->nnodes; i++) {
        weir__kind k = s->nodes[i].kind;
        bool last = i + 1 == s->nnodes;
        if (k == WEIR__K_MAP && s->nodes[i].term->out_var) {
            /* its output bytes last only until its next call: depth-first */
            s->vec = false;
        } else if (k == WEIR__K_MAP) {
            if (s->nodes[i].term->out_size > s->vec_size)
                s->vec_size = s->nodes[i].term->out_size;
        } else if (k != WEIR__K_FILTER &&
                   !(last && (k == WEIR__K_SINK || k == WEIR__K_BATCH_SINK))) {
            s->vec = false;
        }
    }
    if (s->vec && !npar &&
        (s->nodes[s->vec_from].kind == WEIR__K_SINK ||
         s->nodes[s->vec_from].kind == WEIR__K_BATCH_SINK))
        s->vec = false; /* nothing to batch: the record goes straight to the sink */
    /* (a parallel stage's commit hands its tail whole runs of records: a
     * sink alone there is called in the batch path's tight loop) */
    if (npar) {
        int r = weir__par_build(s, npar, width, ordered, keyed);
        if (r < 0)
            return weir__oom();
    }
    if (weir__on_thread(p, s->head)) {
        s->thread = weir_calloc(1, sizeof *s->thread);
        if (!s->thread)
            return weir__oom();
        pthread_mutex_init(&s->thread->mu, NULL);
        /* CLOCK_MONOTONIC: the timed waits of time.c use its deadlines */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->thread->cv, &ca);
        pthread_condattr_destroy(&ca);
        p->nthreads++;
    } else {
        weir__exec_pool_init(s);
    }
    /* time.c: a pull source or a term with a tick may ask for a wake-up */
    s->has_wake = s->head == WEIR__H_PULL || (s->par && s->par->sweep_ns);
    for (unsigned i = 0; i < n; i++)
        if (s->nodes[i].term->tick)
            s->has_wake = true;
    weir__stage_bind_emits(s);
    return 0;
}

/* ------------------------------------------------------------ 4. streams */

/* A stream's capacity: the configured one, raised for a stream that feeds a
 * parallel or keyed stage to hold every batch it may have in flight
 * (nslots x B, parallel.c); otherwise the dispatcher could claim fewer
 * batches than it has replicas (capacity 1024 = 4 batches of 256 caps a
 * 16-worker farm at 4). Still a bound: 2 x width batches. */
static uint64_t weir__stream_cap(const weir_pipeline *p, const weir_term *last, uint64_t cap)
{
    for (unsigned i = 0; i < last->nconsumers; i++) {
        const weir__stage *cs = last->consumers[i]->stage;
        if (cs && cs->par) {
            uint64_t want = (uint64_t)cs->par->nslots * p->cfg.batch;
            while (cap < want)
                cap <<= 1;
        }
    }
    return cap;
}

/* A variable-size stream's byte ring: the configured size, a power of two. */
static uint64_t weir__byte_cap(weir_pipeline *p)
{
    uint64_t b = 64;
    while (b < p->cfg.byte_capacity)
        b <<= 1;
    p->byte_cap = b;
    return b;
}

/* The stream block (see "Memory"); a variable-size stream's byte ring and
 * positions are allocated on their own (weir__stream_set_var). */
static int weir__build_streams(weir_pipeline *p)
{
    uint64_t cap = 1;
    while (cap < p->cfg.capacity)
        cap <<= 1;
    size_t nst = 0, ncons = 0, rings = 0;
    for (unsigned k = 0; k < p->nstages; k++) {
        weir_term *last = p->stages[k]->nodes[p->stages[k]->nnodes - 1].term;
        if (!weir__has_output(last) || last->nconsumers == 0)
            continue;
        const uint64_t scap = weir__stream_cap(p, last, cap);
        size_t ring = weir__stream_ring_bytes(last->out_size, scap);
        if (!ring || ring > WEIR_MAX_STREAM_BYTES)
            return weir__terms_error(
                -EINVAL,
                "the stream of %s '%s' would take %llu records x %zu bytes, above the maximum of "
                "%llu bytes (WEIR_MAX_STREAM_BYTES): lower weir_pipeline_config.capacity",
                last->kind_name, last->name, (unsigned long long)scap, last->out_size,
                (unsigned long long)WEIR_MAX_STREAM_BYTES);
        if (!weir__add(&rings, ring, 1))
            return weir__oom();
        nst++;
        ncons += last->nconsumers;
    }
    size_t bytes = WEIR__LINE(nst * sizeof(weir__stream *));
    if (!weir__add(&bytes, nst, WEIR__LINE(sizeof(weir__stream))) ||
        !weir__add(&bytes, ncons,
                   sizeof(weir__cursor) + sizeof(weir__stage *) + sizeof(uint32_t)) ||
        !weir__add(&bytes, WEIR_CACHELINE, 1) || !weir__add(&bytes, rings, 1))
        return weir__oom();
    char *block = weir_aligned_alloc(WEIR_CACHELINE, bytes);
    if (!block)
        return weir__oom();
    p->streams = (weir__stream **)(void *)block;
    weir__mem m = {block + WEIR__LINE(nst * sizeof(weir__stream *)), NULL};
    weir__cursor *cursors = (weir__cursor *)(void *)(m.at + nst * WEIR__LINE(sizeof(weir__stream)));
    weir__stage **consumers = (weir__stage **)(void *)(cursors + ncons);
    uint32_t *slots = (uint32_t *)(void *)(consumers + ncons);
    weir__mem rm = {block + WEIR__LINE((size_t)((char *)(slots + ncons) - block)), NULL};
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        weir_term *last = s->nodes[s->nnodes - 1].term;
        if (!weir__has_output(last) || last->nconsumers == 0)
            continue; /* a sink, or nobody reads it: records are dropped */
        weir__stream *st = weir__take(&m, WEIR_CACHELINE, sizeof *st);
        const uint64_t scap = weir__stream_cap(p, last, cap);
        char *ring = weir__take(&rm, WEIR_CACHELINE, weir__stream_ring_bytes(last->out_size, scap));
        weir__stream_place(st, last->name, last->out_size, scap, last->nconsumers, ring, cursors,
                           consumers, slots);
        cursors += last->nconsumers;
        consumers += last->nconsumers;
        slots += last->nconsumers;
        p->streams[p->nstreams++] = st;
        if (last->out_var && weir__stream_set_var(st, weir__byte_cap(p)) < 0)
            return weir__oom();
        st->producer = s;
        s->out = st;
        last->out = st;
        for (unsigned i = 0; i < last->nconsumers; i++) {
            weir_term *c = last->consumers[i];
            weir__stage *cs = c->stage;
            st->consumers[i] = cs;
            weir__input *in = &cs->inputs[last->consumer_slot[i]];
            in->stream = st;
            in->cursor = i;
            if (cs->head == WEIR__H_MERGE)
                st->slots[i] = last->consumer_slot[i]; /* its bit in the merge's ready set */
            in->tail = 0;
            in->ended = false;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

void weir__compile_free(weir_pipeline *p)
{
    weir__barriers_free(p);
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (!s)
            continue;
        /* nodes, inputs, buffers: in the stage block */
        weir_free(s->spill);
        weir_free(s->err_msg);
        weir__wake_free(s);
        for (unsigned i = 0; i < s->nnodes; i++)
            weir_free(s->nodes[i].rbuf);
        weir__exec_thread_free(s);
        weir__par_free(s);
    }
    weir_free(p->stages); /* the stage block (see "Memory") */
    p->stages = NULL;
    p->nstages = 0;
    for (unsigned k = 0; k < p->nstreams; k++)
        weir__stream_free_var(p->streams[k]);
    weir_free(p->streams); /* the stream block: placed streams need no other deinit */
    p->streams = NULL;
    p->nstreams = 0;
    for (unsigned k = 0; k < p->nterms; k++) {
        /* inputs and consumers point into p->terms' block (weir__link) */
        weir_term *t = p->terms[k];
        t->inputs = NULL;
        t->consumers = NULL;
        t->consumer_slot = NULL;
        weir__term_reset_compile(t);
    }
    weir_free(p->terms);
    p->terms = NULL;
    p->nterms = 0;
    p->nthreads = 0;
}

int weir__compile(weir_pipeline *p)
{
    weir__tvec prims = {0}, ins = {0}, outs = {0};
    int r = weir__walk(p, &prims, p->root, NULL);
    p->terms = prims.v;
    p->nterms = (unsigned)prims.n;
    if (r < 0)
        goto fail;
    /* The walk reset each term's compile results and numbered it. */
    weir__cc cc = {0};
    cc.batch = p->cfg.batch;
    r = weir__eval(&cc, p->root, &ins, &outs);
    weir__tvec_free(&outs);
    if (r == 0)
        r = weir__link(p, &cc);
    size_t nedges = cc.n, bufs = cc.bufs;
    if (r == 0 && cc.too_big)
        r = weir__oom();
    weir_free(cc.e);
    if (r < 0)
        goto fail;

    r = weir__check_groups(p);
    if (r < 0)
        goto fail;
    weir__byte_cap(p);

    /* The stage block (see "Memory"): bounds from the terms and edges, with
     * room for aligning each stage's parts. */
    size_t T = p->nterms, bytes = WEIR__LINE(T * sizeof *p->stages);
    bool ok = weir__add(&bytes, T,
                        WEIR__LINE(sizeof(weir__stage)) + sizeof(weir__node) + WEIR_CACHELINE +
                            4 * alignof(max_align_t)) &&
              weir__add(&bytes, nedges, sizeof(weir__input) + sizeof(void *));
    for (unsigned k = 0; ok && k < p->nterms; k++)
        if (p->terms[k]->kind == WEIR__K_MERGE) /* a merge is always a stage head */
            ok = weir__add(&bytes, weir__ready_bytes(p->terms[k]->ninputs), 1);
    size_t meta = bytes; /* the buffers follow, a cache line further */
    ok = ok && weir__add(&bytes, WEIR_CACHELINE + bufs, 1);
    char *block = ok ? weir_aligned_alloc(WEIR_CACHELINE, bytes) : NULL;
    if (!block) {
        r = weir__oom();
        goto fail;
    }
    p->stages = (weir__stage **)(void *)block;
    memset(p->stages, 0, T * sizeof *p->stages);
    weir__mem mem = {block + WEIR__LINE(T * sizeof *p->stages), block + WEIR__LINE(meta)};
    bool any_source = false;
    for (unsigned k = 0; k < p->nterms; k++) {
        weir_term *t = p->terms[k];
        if (t->kind == WEIR__K_STOP)
            continue;
        if (t->group && t->group->kind == WEIR__K_KEYED && t->shard > 0)
            continue; /* shards run inside shard 0's stage */
        if (t->ninputs == 1 && weir__fusable(p, t->inputs[0], t))
            continue; /* part of its producer's stage */
        if (t->kind == WEIR__K_PULL || t->kind == WEIR__K_BLOCKING)
            any_source = true;
        r = weir__build_stage(p, t, &p->stages[p->nstages], &mem);
        p->nstages++;
        if (r < 0)
            goto fail;
    }
    if (!any_source) {
        r = weir__terms_error(-EINVAL, "the pipeline has no source: nothing would ever run");
        goto fail;
    }
    r = weir__build_streams(p);
    if (r == 0)
        r = weir__barriers_build(p);
    if (r == -ENOMEM)
        r = weir__oom();
    if (r < 0)
        goto fail;
    return 0;

fail:
    weir__compile_free(p);
    return r;
}
