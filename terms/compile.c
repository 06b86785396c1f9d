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

typedef struct weir__tvec {
    weir_term **v;
    size_t n, cap;
} weir__tvec;

static int weir__tvec_push(weir__tvec *v, weir_term *t)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        weir_term **n = weir_realloc(v->v, cap * sizeof *n);
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
    weir_free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

static int weir__oom(void)
{
    return weir__terms_error(-ENOMEM, "weir_pipeline_create: out of memory");
}

/* ------------------------------------------------------------- 1. walk */

static int weir__walk(weir_pipeline *p, weir__tvec *prims, weir_term *t, weir_term *group)
{
    if (t->kind == WEIR__K_PARALLEL && !group)
        group = t; /* a weir_parallel inside another joins the outer one */
    if (t->kind == WEIR__K_SEQ || t->kind == WEIR__K_PAR || t->kind == WEIR__K_PARALLEL) {
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
        return false;
    default:
        return true;
    }
}

static int weir__connect(weir_term *c, const weir__tvec *ins)
{
    if (ins->n == 0)
        return 0;
    c->inputs = weir_malloc(ins->n * sizeof *c->inputs);
    if (!c->inputs)
        return weir__oom();
    c->ninputs = (unsigned)ins->n;
    for (size_t i = 0; i < ins->n; i++) {
        weir_term *pr = ins->v[i];
        c->inputs[i] = pr;
        if (pr->nconsumers == pr->consumers_cap) {
            unsigned cap = pr->consumers_cap ? pr->consumers_cap * 2 : 2;
            weir_term **nc = weir_realloc(pr->consumers, cap * sizeof *nc);
            if (!nc)
                return weir__oom();
            pr->consumers = nc;
            unsigned *ns = weir_realloc(pr->consumer_slot, cap * sizeof *ns);
            if (!ns)
                return weir__oom();
            pr->consumer_slot = ns;
            pr->consumers_cap = cap;
        }
        pr->consumers[pr->nconsumers] = c;
        pr->consumer_slot[pr->nconsumers] = (unsigned)i;
        pr->nconsumers++;
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

static int weir__eval_primitive(weir_term *t, const weir__tvec *ins, weir__tvec *outs)
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
        if (ins->v[0]->out_size != t->in_size)
            return weir__terms_error(-EINVAL,
                                     "%s '%s' expects %zu-byte records but its input %s '%s' "
                                     "produces %zu-byte records",
                                     t->kind_name, t->name, t->in_size, ins->v[0]->kind_name,
                                     ins->v[0]->name, ins->v[0]->out_size);
        break;
    case WEIR__K_MERGE:
        if (ins->n == 0)
            return weir__terms_error(-EINVAL, "merge '%s' has no input", t->name);
        for (size_t i = 1; i < ins->n; i++)
            if (ins->v[i]->out_size != ins->v[0]->out_size)
                return weir__terms_error(-EINVAL,
                                         "merge '%s': input '%s' has %zu-byte records but input "
                                         "'%s' has %zu-byte records",
                                         t->name, ins->v[0]->name, ins->v[0]->out_size,
                                         ins->v[i]->name, ins->v[i]->out_size);
        t->in_size = t->out_size = ins->v[0]->out_size;
        break;
    case WEIR__K_ZIP:
        if (ins->n == 0)
            return weir__terms_error(-EINVAL, "zip '%s' has no input", t->name);
        if (!t->fn.zip) {
            size_t sum = 0;
            for (size_t i = 0; i < ins->n; i++)
                sum += ins->v[i]->out_size;
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
    int r = weir__connect(t, ins);
    if (r < 0)
        return r;
    if (weir__has_output(t) && weir__tvec_push(outs, t) < 0)
        return weir__oom();
    return 0;
}

typedef struct weir__named {
    weir_term *t;
    size_t branch;
} weir__named;

static int weir__cmp_named(const void *a, const void *b)
{
    const weir__named *x = a, *y = b;
    int c = strcmp(x->t->name, y->t->name);
    if (c)
        return c;
    return x->branch < y->branch ? -1 : x->branch > y->branch;
}

static int weir__eval(weir_term *t, const weir__tvec *ins, weir__tvec *outs)
{
    int r = 0;
    if (t->kind == WEIR__K_PARALLEL)
        return weir__eval(t->children[0], ins, outs); /* a marker: same inputs */
    if (t->kind == WEIR__K_SEQ) {
        weir__tvec cur = {0}, next = {0};
        for (size_t i = 0; i < ins->n && r == 0; i++)
            if (weir__tvec_push(&cur, ins->v[i]) < 0)
                r = weir__oom();
        for (size_t i = 0; i < t->nchildren && r == 0; i++) {
            next.n = 0;
            r = weir__eval(t->children[i], &cur, &next);
            weir__tvec tmp = cur;
            cur = next;
            next = tmp;
        }
        for (size_t i = 0; i < cur.n && r == 0; i++)
            if (weir__tvec_push(outs, cur.v[i]) < 0)
                r = weir__oom();
        weir__tvec_free(&cur);
        weir__tvec_free(&next);
        return r;
    }
    if (t->kind == WEIR__K_PAR) {
        weir__named *named = NULL;
        size_t nnamed = 0, cap = 0;
        for (size_t i = 0; i < t->nchildren && r == 0; i++) {
            size_t before = outs->n;
            r = weir__eval(t->children[i], ins, outs);
            for (size_t k = before; k < outs->n && r == 0; k++) {
                if (nnamed == cap) {
                    cap = cap ? cap * 2 : 8;
                    weir__named *n = weir_realloc(named, cap * sizeof *n);
                    if (!n) {
                        r = weir__oom();
                        break;
                    }
                    named = n;
                }
                named[nnamed].t = outs->v[k];
                named[nnamed].branch = i;
                nnamed++;
            }
        }
        if (r == 0 && nnamed > 1) {
            /* Sort by name so that a par of 10 000 branches is checked in
             * n log n, then report the first clash in branch order. */
            qsort(named, nnamed, sizeof *named, weir__cmp_named);
            for (size_t k = 1; k < nnamed; k++) {
                if (strcmp(named[k - 1].t->name, named[k].t->name) == 0) {
                    r = weir__terms_error(-EINVAL,
                                          "parallel composition: two branches output a stream "
                                          "named '%s' (%s '%s' in branch %zu and %s '%s' in "
                                          "branch %zu); give parallel terms distinct names",
                                          named[k].t->name, named[k - 1].t->kind_name,
                                          named[k - 1].t->name, named[k - 1].branch + 1,
                                          named[k].t->kind_name, named[k].t->name,
                                          named[k].branch + 1);
                    break;
                }
            }
        }
        weir_free(named);
        return r;
    }
    return weir__eval_primitive(t, ins, outs);
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
        if (t->kind != WEIR__K_FUNCTION && t->kind != WEIR__K_MAP && t->kind != WEIR__K_FILTER)
            return weir__terms_error(-EINVAL,
                                     "%s '%s': %s '%s' cannot run as replicas; only function, "
                                     "map and filter terms (or a seq of them) can",
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
        return pr->group && pr->nconsumers == 1 && c->ninputs == 1;
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

static int weir__build_stage(weir_pipeline *p, weir_term *head, weir__stage **out)
{
    unsigned n = 1;
    for (weir_term *t = head; t->nconsumers == 1 && weir__fusable(p, t, t->consumers[0]);
         t = t->consumers[0])
        n++;
    weir__stage *s = weir_aligned_alloc(WEIR_CACHELINE, (sizeof *s + WEIR_CACHELINE - 1) /
                                                            WEIR_CACHELINE * WEIR_CACHELINE);
    if (!s)
        return weir__oom();
    memset((void *)s, 0, sizeof *s);
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
    s->nodes = weir_calloc(n, sizeof *s->nodes);
    if (!s->nodes)
        return weir__oom();
    s->nnodes = n;
    weir_term *t = head;
    for (unsigned i = 0; i < n; i++, t = i < n ? t->consumers[0] : t) {
        weir__node *nd = &s->nodes[i];
        nd->stage = s;
        nd->idx = i;
        nd->kind = t->kind;
        nd->state = t->state;
        nd->fn = t->fn;
        nd->term = t;
        atomic_init(&nd->st_in, 0);
        atomic_init(&nd->st_out, 0);
        atomic_init(&nd->st_ns, 0);
        t->stage = s;
        t->node = i;
        if (t->kind == WEIR__K_MAP || (t->kind == WEIR__K_ZIP && !t->fn.zip)) {
            nd->tmp = weir_malloc(t->out_size);
            if (!nd->tmp)
                return weir__oom();
        }
        /* A fused batch sink's buffer is per thread (stage.c), not here. */
    }
    if (s->head == WEIR__H_INPUT || s->head == WEIR__H_MERGE || s->head == WEIR__H_ZIP) {
        s->ninputs = head->ninputs;
        s->inputs = weir_calloc(s->ninputs, sizeof *s->inputs);
        if (!s->inputs)
            return weir__oom();
        if (s->head == WEIR__H_ZIP) {
            s->zip_in = weir_calloc(s->ninputs, sizeof *s->zip_in);
            if (!s->zip_in)
                return weir__oom();
        }
    }
    if (s->head == WEIR__H_PULL) {
        s->buf = weir_malloc((size_t)p->cfg.batch * head->out_size);
        if (!s->buf)
            return weir__oom();
    }
    /* A parallel stage: its leading replicated nodes, then a serial tail. */
    unsigned npar = 0;
    unsigned width = 0; /* adjacent groups fused: the widest wins */
    bool all = false;   /* a width of 0 (every worker) is the widest */
    bool ordered = false;
    while (npar < n && s->nodes[npar].term->group) {
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
        if (k == WEIR__K_MAP) {
            if (s->nodes[i].term->out_size > s->vec_size)
                s->vec_size = s->nodes[i].term->out_size;
        } else if (k != WEIR__K_FILTER &&
                   !(last && (k == WEIR__K_SINK || k == WEIR__K_BATCH_SINK))) {
            s->vec = false;
        }
    }
    if (s->vec && (s->nodes[s->vec_from].kind == WEIR__K_SINK ||
                   s->nodes[s->vec_from].kind == WEIR__K_BATCH_SINK))
        s->vec = false; /* nothing to batch: the record goes straight to the sink */
    if (npar) {
        int r = weir__par_build(s, npar, width, ordered);
        if (r < 0)
            return weir__oom();
    }
    if (weir__on_thread(p, s->head)) {
        s->thread = weir_calloc(1, sizeof *s->thread);
        if (!s->thread)
            return weir__oom();
        pthread_mutex_init(&s->thread->mu, NULL);
        pthread_cond_init(&s->thread->cv, NULL);
        p->nthreads++;
    } else {
        weir__exec_pool_init(s);
    }
    weir__stage_bind_emits(s);
    return 0;
}

/* ------------------------------------------------------------ 4. streams */

static int weir__build_streams(weir_pipeline *p)
{
    uint64_t cap = 1;
    while (cap < p->cfg.capacity)
        cap <<= 1;
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        weir_term *last = s->nodes[s->nnodes - 1].term;
        if (!weir__has_output(last) || last->nconsumers == 0)
            continue; /* a sink, or nobody reads it: records are dropped */
        weir__stream *st = weir_aligned_alloc(WEIR_CACHELINE, (sizeof *st + WEIR_CACHELINE - 1) /
                                                                  WEIR_CACHELINE * WEIR_CACHELINE);
        if (!st)
            return weir__oom();
        if (weir__stream_init(st, last->name, last->out_size, cap, last->nconsumers) < 0) {
            weir_free(st);
            return weir__oom();
        }
        p->streams[p->nstreams++] = st;
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
            in->tail = 0;
            in->ended = false;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

void weir__compile_free(weir_pipeline *p)
{
    for (unsigned k = 0; k < p->nstages; k++) {
        weir__stage *s = p->stages[k];
        if (!s)
            continue;
        for (unsigned i = 0; s->nodes && i < s->nnodes; i++)
            if (s->nodes[i].kind != WEIR__K_BATCH_SINK) /* that one points to thread scratch */
                weir_free(s->nodes[i].tmp);
        weir_free(s->nodes);
        weir_free(s->inputs);
        weir_free((void *)s->zip_in);
        weir_free(s->buf);
        weir_free(s->spill);
        weir_free(s->err_msg);
        weir__exec_thread_free(s);
        weir__par_free(s);
        weir_free(s);
    }
    weir_free(p->stages);
    p->stages = NULL;
    p->nstages = 0;
    for (unsigned k = 0; k < p->nstreams; k++) {
        weir__stream_deinit(p->streams[k]);
        weir_free(p->streams[k]);
    }
    weir_free(p->streams);
    p->streams = NULL;
    p->nstreams = 0;
    for (unsigned k = 0; k < p->nterms; k++)
        weir__term_reset_compile(p->terms[k]);
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
    /* A previous failed create may have left compile results behind. */
    for (unsigned k = 0; k < p->nterms; k++)
        weir__term_reset_compile(p->terms[k]);
    for (unsigned k = 0; k < p->nterms; k++)
        p->terms[k]->index = k;

    r = weir__eval(p->root, &ins, &outs);
    weir__tvec_free(&outs);
    if (r < 0)
        goto fail;

    r = weir__check_groups(p);
    if (r < 0)
        goto fail;

    p->stages = weir_calloc(p->nterms ? p->nterms : 1, sizeof *p->stages);
    p->streams = weir_calloc(p->nterms ? p->nterms : 1, sizeof *p->streams);
    if (!p->stages || !p->streams) {
        r = weir__oom();
        goto fail;
    }
    bool any_source = false;
    for (unsigned k = 0; k < p->nterms; k++) {
        weir_term *t = p->terms[k];
        if (t->kind == WEIR__K_STOP)
            continue;
        if (t->ninputs == 1 && weir__fusable(p, t->inputs[0], t))
            continue; /* part of its producer's stage */
        if (t->kind == WEIR__K_PULL || t->kind == WEIR__K_BLOCKING)
            any_source = true;
        r = weir__build_stage(p, t, &p->stages[p->nstages]);
        p->nstages++;
        if (r < 0)
            goto fail;
    }
    if (!any_source) {
        r = weir__terms_error(-EINVAL, "the pipeline has no source: nothing would ever run");
        goto fail;
    }
    r = weir__build_streams(p);
    if (r < 0)
        goto fail;
    return 0;

fail:
    weir__compile_free(p);
    return r;
}
