/*
 * weir terms — dynamic sub-pipelines per key (weir_spawn: LogicSponge's
 * DynamicSpawnTerm).
 *
 * A spawn term is a keyed term (parallel.c) whose K shards are spawn shards:
 * the dispatcher routes each record to shard mix(key) % K exactly as for
 * weir_keyed, and the shard, instead of one term of its own, keeps a table
 * of sub-pipelines, one per key it has seen. The first record of a key
 * calls the user's factory, which returns a new term tree (a chain of
 * function, map and filter terms, possibly ending in a sink); the tree is
 * checked and compiled on the spot into a small context of its own (a
 * shadow stage: its nodes, with the tree's state, parallel.c's
 * weir__shadow_new) and the record goes through it. Later records of the
 * key go to the same context. Its outputs are collected into the shard's
 * output of the batch and committed by the dispatcher like a keyed shard's
 * (in input order with WEIR_ORDERED: the sub-pipelines' outputs merge into
 * the term's output stream in arrival order).
 *
 * So a sub-pipeline costs no stream, no thread, no job and no compile of a
 * pipeline: a few allocations (its terms, made by the factory, its nodes and
 * its entry here), measured by `weir-bench spawn`. Each shard runs one
 * batch part at a time (the keyed protocol), so a sub-pipeline's callbacks
 * never run concurrently and its state needs no lock, as for any term.
 *
 * A sub-pipeline ends (its finish callbacks run in chain order, their
 * outputs go downstream, then it is freed) when the input ends; when it was
 * idle for longer than the idle timeout (seen when its shard next runs, or
 * at the end of the input: a record of the key then creates a new one); or,
 * with WEIR_SPAWN_EVICT, when its shard holds its share of the live bound
 * and a new key arrives (the least recently used goes). With WEIR_SPAWN_FAIL
 * a new key beyond the bound fails the pipeline with -ENOSPC.
 *
 * Monitoring. A listing (weir_pipeline_spawn_list, any thread, a
 * sub-pipeline's callback included) walks each shard's table under the
 * shard's mutex, which the shard takes only to add or remove an entry (never
 * around a user callback or the factory, so a listing cannot deadlock with
 * a shard, nor two listing shards with each other). A sub-pipeline's record
 * count and last time are relaxed atomics with the shard as their only
 * writer; the recency list is shard-private.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Shared by the K shard terms of one spawn term. */
typedef struct weir__spawn {
    weir_spawn_fn make;
    void *make_arg;
    size_t max_live;  /* per shard; 0 = no bound */
    bool evict;       /* WEIR_SPAWN_EVICT */
    uint64_t idle_ns; /* 0 = none */
    unsigned refs;    /* shard terms that point here (freed by the last) */
    char *name;       /* the spawn term's, for messages */
} weir__spawn;

typedef struct weir__sub weir__sub;
struct weir__sub {
    uint64_t key;
    weir__sub *hnext;       /* hash chain */
    weir__sub *prev, *next; /* recency: head = most recent */
    /* written by the shard, read by a listing: relaxed atomics */
    _Atomic uint64_t last_ns;
    _Atomic uint64_t records;
    weir_term *root;  /* the factory's tree */
    weir__stage *ctx; /* its nodes */
};

typedef struct weir__spawn_shard {
    weir__spawn *sp;
    unsigned idx;
    pthread_mutex_t mu; /* see the top: held by the shard while it runs */
    weir__sub **table;  /* [tcap], chained */
    size_t tcap, live;
    weir__sub *head, *tail;
    uint64_t created, ended_idle, ended_evicted, max_live;
    _Atomic uint64_t st_live, st_created, st_ended;
} weir__spawn_shard;

static inline uint64_t weir__spawn_hash(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static weir__sub **weir__spawn_slot(weir__spawn_shard *sh, uint64_t key)
{
    weir__sub **at = &sh->table[weir__spawn_hash(key) & (sh->tcap - 1)];
    while (*at && (*at)->key != key)
        at = &(*at)->hnext;
    return at;
}

static int weir__spawn_grow(weir__spawn_shard *sh)
{
    size_t cap = sh->tcap ? sh->tcap * 2 : 64;
    weir__sub **t = weir_calloc(cap, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < sh->tcap; i++) {
        weir__sub *u = sh->table[i];
        while (u) {
            weir__sub *nx = u->hnext;
            size_t h = weir__spawn_hash(u->key) & (cap - 1);
            u->hnext = t[h];
            t[h] = u;
            u = nx;
        }
    }
    weir_free(sh->table);
    sh->table = t;
    sh->tcap = cap;
    return 0;
}

static void weir__lru_unlink(weir__spawn_shard *sh, weir__sub *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        sh->head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        sh->tail = u->prev;
    u->prev = u->next = NULL;
}

static void weir__lru_front(weir__spawn_shard *sh, weir__sub *u)
{
    u->prev = NULL;
    u->next = sh->head;
    if (sh->head)
        sh->head->prev = u;
    sh->head = u;
    if (!sh->tail)
        sh->tail = u;
}

static void weir__spawn_publish(weir__spawn_shard *sh)
{
    /* relaxed: monitoring counters, single writer (the shard) */
    atomic_store_explicit(&sh->st_live, sh->live, memory_order_relaxed);
    atomic_store_explicit(&sh->st_created, sh->created, memory_order_relaxed);
    atomic_store_explicit(&sh->st_ended, sh->created - sh->live, memory_order_relaxed);
}

/* The sub-pipeline's context writes its outputs into the shard's current
 * output buffer: lend it the buffer around each call, take it back after. */
static void weir__lend(weir__stage *cx, weir__stage *c)
{
    c->coll = cx->coll;
    c->coll_n = cx->coll_n;
    c->coll_cap = cx->coll_cap;
    c->collb = cx->collb;
    c->collb_n = cx->collb_n;
    c->collb_cap = cx->collb_cap;
}

static void weir__take_back(weir__stage *cx, weir__stage *c)
{
    cx->coll = c->coll;
    cx->coll_n = c->coll_n;
    cx->coll_cap = c->coll_cap;
    cx->collb = c->collb;
    cx->collb_n = c->collb_n;
    cx->collb_cap = c->collb_cap;
    c->coll = c->collb = NULL;
    c->coll_n = c->coll_cap = c->collb_n = c->collb_cap = 0;
}

/* A failure inside a sub-pipeline becomes the shard's, naming the key and
 * the term. */
static int weir__spawn_fail(weir__stage *cx, weir__sub *u, int err, const char *what)
{
    if (cx->err)
        return cx->err;
    char msg[512], eb[128];
    weir__stage *c = u ? u->ctx : NULL;
    if (c && c->err) {
        const weir_term *t = c->nodes[c->err_node < c->nnodes ? c->err_node : 0].term;
        if (c->err_msg)
            snprintf(msg, sizeof msg, "sub-pipeline of key %llu: term '%s': %s",
                     (unsigned long long)u->key, t->name, c->err_msg);
        else
            snprintf(
                msg, sizeof msg, "sub-pipeline of key %llu: term '%s': callback returned %d (%s)",
                (unsigned long long)u->key, t->name, c->err, weir__errtext(c->err, eb, sizeof eb));
        err = c->err;
    } else {
        snprintf(msg, sizeof msg, "%s", what);
    }
    weir_free(cx->err_msg);
    cx->err_msg = weir_strdup(msg);
    cx->err = err;
    cx->err_node = 0;
    return err;
}

static void weir__sub_free(weir__sub *u)
{
    if (!u)
        return;
    weir__shadow_free(u->ctx);
    if (u->root) {
        u->root->owner = WEIR__FREE;
        weir_term_destroy(u->root);
    }
    weir_free(u);
}

/* End sub-pipeline u: finish callbacks (outputs into the shard's buffer),
 * then free it. */
static int weir__sub_end(weir__stage *cx, weir__spawn_shard *sh, weir__sub *u, bool finish)
{
    int r = 0;
    /* out of the table under the mutex (a listing walks it); the finish
     * callbacks run outside it */
    pthread_mutex_lock(&sh->mu);
    weir__sub **at = weir__spawn_slot(sh, u->key);
    *at = u->hnext;
    pthread_mutex_unlock(&sh->mu);
    weir__lru_unlink(sh, u);
    sh->live--;
    if (finish && !cx->err) {
        size_t before = cx->coll_n;
        weir__lend(cx, u->ctx);
        weir__stage_finish_chain(u->ctx);
        weir__take_back(cx, u->ctx);
        cx->nodes[0].out += cx->coll_n - before;
        if (u->ctx->err)
            r = weir__spawn_fail(cx, u, u->ctx->err, NULL);
    }
    weir__sub_free(u);
    return r;
}

/* Flatten the factory's tree into a chain and check it. */
static int weir__spawn_chain(weir__stage *cx, const weir_term *shard_t, weir_term *t,
                             weir__node *nodes, unsigned *n, uint64_t key)
{
    char msg[400];
    if (t->kind == WEIR__K_SEQ) {
        for (size_t i = 0; i < t->nchildren; i++) {
            if (!t->children[i]) {
                snprintf(msg, sizeof msg,
                         "sub-pipeline of key %llu: term #%zu of its seq is NULL (a constructor "
                         "failed?)",
                         (unsigned long long)key, i + 1);
                return weir__spawn_fail(cx, NULL, -EINVAL, msg);
            }
            int r = weir__spawn_chain(cx, shard_t, t->children[i], nodes, n, key);
            if (r < 0)
                return r;
        }
        return 0;
    }
    if (*n == WEIR_SPAWN_MAX_CHAIN) {
        snprintf(msg, sizeof msg, "sub-pipeline of key %llu: more than %u terms",
                 (unsigned long long)key, (unsigned)WEIR_SPAWN_MAX_CHAIN);
        return weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    const bool last_ok_sink = shard_t->out_size == 0;
    if (t->tick) {
        snprintf(msg, sizeof msg,
                 "sub-pipeline of key %llu: %s '%s' waits for time (a tick); a sub-pipeline "
                 "cannot (put it after the spawn term)",
                 (unsigned long long)key, t->kind_name, t->name);
        return weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    if (t->kind != WEIR__K_FUNCTION && t->kind != WEIR__K_MAP && t->kind != WEIR__K_FILTER &&
        !(t->kind == WEIR__K_SINK && last_ok_sink)) {
        snprintf(msg, sizeof msg,
                 "sub-pipeline of key %llu: %s '%s' cannot be part of a sub-pipeline (a seq of "
                 "function, map and filter terms%s)",
                 (unsigned long long)key, t->kind_name, t->name,
                 last_ok_sink ? ", ending in a sink" : "");
        return weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    /* sizes: the previous term's output, or the spawn term's input */
    size_t want = *n ? nodes[*n - 1].term->out_size : shard_t->in_size;
    bool want_var = *n ? nodes[*n - 1].term->out_var : shard_t->in_var;
    if (*n && nodes[*n - 1].kind == WEIR__K_SINK) {
        snprintf(msg, sizeof msg, "sub-pipeline of key %llu: a term follows sink '%s'",
                 (unsigned long long)key, nodes[*n - 1].term->name);
        return weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    if (t->in_size != want || t->in_var != want_var) {
        snprintf(msg, sizeof msg,
                 "sub-pipeline of key %llu: %s '%s' expects %s%zu-byte records but gets %s%zu",
                 (unsigned long long)key, t->kind_name, t->name, t->in_var ? "variable-size, " : "",
                 t->in_size, want_var ? "variable-size, " : "", want);
        return weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    weir__node *nd = &nodes[(*n)++];
    memset((void *)nd, 0, sizeof *nd);
    nd->term = t;
    nd->kind = t->kind;
    nd->state = t->state;
    nd->fn = t->fn;
    return 0;
}

/* A new sub-pipeline for `key`, made by the factory and compiled here. */
static weir__sub *weir__sub_new(weir__stage *cx, weir__spawn_shard *sh, uint64_t key)
{
    weir__spawn *sp = sh->sp;
    const weir_term *shard_t = cx->nodes[0].term;
    char msg[400];
    weir_term *root = sp->make(sp->make_arg, key);
    if (!root) {
        snprintf(msg, sizeof msg, "sub-pipeline of key %llu: the factory returned NULL (%s)",
                 (unsigned long long)key, weir_terms_last_error());
        weir__spawn_fail(cx, NULL, -EINVAL, msg);
        return NULL;
    }
    if (root->owner != WEIR__FREE) {
        snprintf(msg, sizeof msg,
                 "sub-pipeline of key %llu: the factory returned term '%s', which belongs to "
                 "another tree (make a new tree for every key)",
                 (unsigned long long)key, root->name);
        weir__spawn_fail(cx, NULL, -EBUSY, msg);
        return NULL;
    }
    weir__node nodes[WEIR_SPAWN_MAX_CHAIN];
    unsigned n = 0;
    int r = weir__spawn_chain(cx, shard_t, root, nodes, &n, key);
    if (r == 0 && n == 0)
        r = weir__spawn_fail(cx, NULL, -EINVAL, "sub-pipeline: an empty seq");
    if (r == 0 && shard_t->out_size &&
        (nodes[n - 1].term->out_size != shard_t->out_size ||
         nodes[n - 1].term->out_var != shard_t->out_var)) {
        snprintf(msg, sizeof msg,
                 "sub-pipeline of key %llu: its last term '%s' produces %s%zu-byte records, not "
                 "the %s%zu of spawn '%s'",
                 (unsigned long long)key, nodes[n - 1].term->name,
                 nodes[n - 1].term->out_var ? "variable-size, " : "", nodes[n - 1].term->out_size,
                 shard_t->out_var ? "variable-size, " : "", shard_t->out_size, sp->name);
        r = weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    if (r == 0 && !shard_t->out_size && nodes[n - 1].kind != WEIR__K_SINK) {
        snprintf(msg, sizeof msg,
                 "sub-pipeline of key %llu: spawn '%s' has no output, so its sub-pipelines must "
                 "end in a sink (its last term is %s '%s')",
                 (unsigned long long)key, sp->name, nodes[n - 1].kind == WEIR__K_MAP ? "map" : "a",
                 nodes[n - 1].term->name);
        r = weir__spawn_fail(cx, NULL, -EINVAL, msg);
    }
    weir__sub *u = r == 0 ? weir_calloc(1, sizeof *u) : NULL;
    if (u)
        u->ctx = weir__shadow_new(cx, nodes, n);
    if (r == 0 && (!u || !u->ctx || u->ctx->err)) {
        if (u)
            weir__shadow_free(u->ctx);
        weir_free(u);
        u = NULL;
        weir__spawn_fail(cx, NULL, -ENOMEM, "out of memory for a sub-pipeline");
    }
    if (!u) {
        weir_term_destroy(root);
        return NULL;
    }
    u->ctx->vec = false; /* record by record: outputs are counted per record */
    u->ctx->check_cancel = false;
    u->root = root;
    root->owner = WEIR__IN_PIPELINE; /* the user must not destroy it now */
    u->key = key;
    return u;
}

int weir__spawn_push(weir__stage *cx, uint64_t key, const void *rec, uint64_t now)
{
    weir__spawn_shard *sh = cx->nodes[0].term->state;
    weir__spawn *sp = sh->sp;
    /* the idle ones, oldest first: their final outputs count as this
     * record's (ordered commit) */
    while (sp->idle_ns && sh->tail && now - sh->tail->last_ns > sp->idle_ns &&
           sh->tail->key != key) {
        sh->ended_idle++;
        int r = weir__sub_end(cx, sh, sh->tail, true);
        if (r < 0)
            return r;
    }
    weir__sub **at = sh->tcap ? weir__spawn_slot(sh, key) : NULL;
    weir__sub *u = at ? *at : NULL;
    if (u && sp->idle_ns && now - u->last_ns > sp->idle_ns) {
        /* idle for too long: this record starts a new one */
        sh->ended_idle++;
        int r = weir__sub_end(cx, sh, u, true);
        if (r < 0)
            return r;
        u = NULL;
    }
    if (!u) {
        if (sp->max_live && sh->live >= sp->max_live) {
            if (!sp->evict) {
                char msg[300];
                snprintf(msg, sizeof msg,
                         "key %llu would be sub-pipeline %zu of shard %u, above its bound of %zu "
                         "live ones (weir_spawn_config.max_live, policy WEIR_SPAWN_FAIL)",
                         (unsigned long long)key, sh->live + 1, sh->idx, sp->max_live);
                return weir__spawn_fail(cx, NULL, -ENOSPC, msg);
            }
            sh->ended_evicted++;
            int r = weir__sub_end(cx, sh, sh->tail, true);
            if (r < 0)
                return r;
        }
        u = weir__sub_new(cx, sh, key); /* the factory: outside the mutex */
        if (!u)
            return cx->err;
        /* before a listing can see it (relaxed: the mutex publishes it) */
        atomic_store_explicit(&u->last_ns, now, memory_order_relaxed);
        atomic_store_explicit(&u->records, 1, memory_order_relaxed);
        /* into the table under the mutex (a listing walks it) */
        pthread_mutex_lock(&sh->mu);
        int g = (sh->live + 1) * 2 > sh->tcap ? weir__spawn_grow(sh) : 0;
        if (g == 0) {
            at = weir__spawn_slot(sh, key);
            *at = u;
        }
        pthread_mutex_unlock(&sh->mu);
        if (g < 0) {
            weir__sub_free(u);
            return weir__spawn_fail(cx, NULL, -ENOMEM, "out of memory for the sub-pipeline table");
        }
        weir__lru_front(sh, u);
        sh->live++;
        sh->created++;
        if (sh->live > sh->max_live)
            sh->max_live = sh->live;
    } else {
        if (sh->head != u) {
            weir__lru_unlink(sh, u);
            weir__lru_front(sh, u);
        }
        /* relaxed: single writer (the shard), read by a listing */
        atomic_store_explicit(&u->last_ns, now, memory_order_relaxed);
        atomic_store_explicit(&u->records,
                              atomic_load_explicit(&u->records, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    size_t before = cx->coll_n;
    weir__lend(cx, u->ctx);
    u->ctx->nodes[0].in++;
    weir__push(u->ctx, 0, rec);
    weir__take_back(cx, u->ctx);
    cx->nodes[0].out += cx->coll_n - before;
    if (WEIR_UNLIKELY(u->ctx->err))
        return weir__spawn_fail(cx, u, u->ctx->err, NULL);
    return 0;
}

void weir__spawn_sweep(weir__stage *cx, uint64_t now)
{
    weir__spawn_shard *sh = cx->nodes[0].term->state;
    const uint64_t idle = sh->sp->idle_ns;
    while (!cx->err && idle && sh->tail && now - sh->tail->last_ns > idle) {
        sh->ended_idle++;
        weir__sub_end(cx, sh, sh->tail, true);
    }
}

uint64_t weir__spawn_idle_ns(const weir_term *t)
{
    return t->kind == WEIR__K_SPAWN ? ((const weir__spawn_shard *)t->state)->sp->idle_ns : 0;
}

void weir__spawn_done(weir__stage *cx)
{
    weir__spawn_shard *sh = cx->nodes[0].term->state;
    weir__spawn_publish(sh);
}

int weir__spawn_end_all(weir__stage *cx)
{
    weir__spawn_shard *sh = cx->nodes[0].term->state;
    int r = 0;
    /* least recently used first */
    while (sh->tail && r == 0)
        r = weir__sub_end(cx, sh, sh->tail, true);
    weir__spawn_publish(sh);
    return r;
}

bool weir__spawn_shard_stats(const weir_term *t, uint64_t *live, uint64_t *created, uint64_t *ended)
{
    if (t->kind != WEIR__K_SPAWN)
        return false;
    weir__spawn_shard *sh = t->state;
    *live = atomic_load_explicit(&sh->st_live, memory_order_relaxed);
    *created = atomic_load_explicit(&sh->st_created, memory_order_relaxed);
    *ended = atomic_load_explicit(&sh->st_ended, memory_order_relaxed);
    return true;
}

static void weir__spawn_shard_free(void *state)
{
    weir__spawn_shard *sh = state;
    /* a pipeline destroyed before its input ended: no finish */
    while (sh->head) {
        weir__sub *u = sh->head;
        weir__lru_unlink(sh, u);
        weir__sub_free(u);
    }
    weir_free(sh->table);
    pthread_mutex_destroy(&sh->mu);
    weir__spawn *sp = sh->sp;
    if (--sp->refs == 0) {
        weir_free(sp->name);
        weir_free(sp);
    }
    weir_free(sh);
}

/* ------------------------------------------------------------------ API */

WEIR_API void weir_spawn_config_init(weir_spawn_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->shards = 16;
    cfg->policy = WEIR_SPAWN_FAIL;
    cfg->order = WEIR_ORDERED;
}

typedef struct weir__prebuilt {
    weir_term **kids;
} weir__prebuilt;

static weir_term *weir__prebuilt_shard(void *arg, unsigned i)
{
    weir__prebuilt *pb = arg;
    weir_term *t = pb->kids[i];
    pb->kids[i] = NULL;
    return t;
}

WEIR_API weir_term *weir_spawn(const char *name, size_t in_size, size_t out_size, weir_key_fn key,
                               void *key_arg, weir_spawn_fn make, void *make_arg,
                               const weir_spawn_config *cfg)
{
    const char *nm = name ? name : "(unnamed)";
    weir_spawn_config dflt;
    if (!cfg) {
        weir_spawn_config_init(&dflt);
        cfg = &dflt;
    }
    if (!key || !make) {
        weir__terms_error(-EINVAL,
                          "weir_spawn '%s': the key function and the factory must not "
                          "be NULL",
                          nm);
        return NULL;
    }
    if (in_size == 0) {
        weir__terms_error(-EINVAL, "weir_spawn '%s': input record size 0", nm);
        return NULL;
    }
    if (cfg->shards == 0 || cfg->shards > WEIR_KEYED_MAX_SHARDS) {
        weir__terms_error(-EINVAL, "weir_spawn '%s': %u shards; give 1..%u", nm, cfg->shards,
                          (unsigned)WEIR_KEYED_MAX_SHARDS);
        return NULL;
    }
    if (cfg->policy != WEIR_SPAWN_FAIL && cfg->policy != WEIR_SPAWN_EVICT) {
        weir__terms_error(-EINVAL,
                          "weir_spawn '%s': policy must be WEIR_SPAWN_FAIL or "
                          "WEIR_SPAWN_EVICT (got %d)",
                          nm, (int)cfg->policy);
        return NULL;
    }
    const unsigned K = cfg->shards;
    weir__spawn *sp = weir_calloc(1, sizeof *sp);
    weir_term **kids = weir_calloc(K, sizeof *kids);
    char *spname = weir_strdup(nm);
    if (!sp || !kids || !spname) {
        weir_free(sp);
        weir_free(kids);
        weir_free(spname);
        weir__terms_error(-ENOMEM, "weir_spawn '%s': out of memory", nm);
        return NULL;
    }
    sp->make = make;
    sp->make_arg = make_arg;
    sp->max_live = cfg->max_live ? (cfg->max_live + K - 1) / K : 0;
    sp->evict = cfg->policy == WEIR_SPAWN_EVICT;
    sp->idle_ns = cfg->idle_ns;
    sp->name = spname;
    bool oom = false;
    for (unsigned i = 0; i < K && !oom; i++) {
        char sname[64];
        snprintf(sname, sizeof sname, "%.40s[%u]", nm, i);
        weir__spawn_shard *sh = weir_calloc(1, sizeof *sh);
        weir_term *t = sh ? weir__term_new(WEIR__K_SPAWN, "spawn shard", sname) : NULL;
        if (!t) {
            weir_free(sh);
            oom = true;
            break;
        }
        weir__term_set_sizes(t, in_size, out_size);
        if (out_size == 0)
            t->out_size = 0, t->out_var = false;
        /* recursive: a sub-pipeline's callback may list the live ones
         * (weir_pipeline_spawn_list) while its shard holds the mutex */
        pthread_mutexattr_t ma;
        pthread_mutexattr_init(&ma);
        pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&sh->mu, &ma);
        pthread_mutexattr_destroy(&ma);
        sh->sp = sp;
        sh->idx = i;
        atomic_init(&sh->st_live, 0);
        atomic_init(&sh->st_created, 0);
        atomic_init(&sh->st_ended, 0);
        sp->refs++;
        t->state = sh;
        t->free_state = weir__spawn_shard_free;
        kids[i] = t;
    }
    if (oom) {
        for (unsigned i = 0; i < K; i++)
            weir_term_destroy(kids[i]);
        if (sp->refs == 0) {
            weir_free(sp->name);
            weir_free(sp);
        }
        weir_free(kids);
        weir__terms_error(-ENOMEM, "weir_spawn '%s': out of memory", nm);
        return NULL;
    }
    weir__prebuilt pb = {kids};
    weir_term *g = weir_keyed(name, K, key, key_arg, weir__prebuilt_shard, &pb, cfg->order);
    if (!g) {
        for (unsigned i = 0; i < K; i++)
            weir_term_destroy(kids[i]);
    } else {
        g->kind_name = "spawn";
    }
    weir_free(kids);
    return g;
}

WEIR_API int weir_pipeline_spawn_list(const weir_pipeline *p, const char *name,
                                      weir_spawn_info *out, size_t max, size_t *count)
{
    if (!p || !name || (max && !out))
        return weir__terms_error(-EINVAL, "weir_pipeline_spawn_list: NULL argument");
    size_t n = 0;
    bool found = false;
    uint64_t now = weir__terms_now_ns();
    for (unsigned k = 0; k < p->nterms; k++) {
        const weir_term *t = p->terms[k];
        if (t->kind != WEIR__K_SPAWN || !t->group || strcmp(t->group->name, name) != 0)
            continue;
        found = true;
        weir__spawn_shard *sh = t->state;
        /* the table, not the recency list (shard-private): the mutex is held
         * by the shard only while it adds or removes an entry */
        pthread_mutex_lock(&sh->mu);
        for (size_t b = 0; b < sh->tcap; b++)
            for (weir__sub *u = sh->table[b]; u; u = u->hnext, n++) {
                if (n < max) {
                    uint64_t last = atomic_load_explicit(&u->last_ns, memory_order_relaxed);
                    out[n].key = u->key;
                    out[n].records = atomic_load_explicit(&u->records, memory_order_relaxed);
                    out[n].idle_ns = now > last ? now - last : 0;
                    out[n].shard = sh->idx;
                }
            }
        pthread_mutex_unlock(&sh->mu);
    }
    if (!found)
        return weir__terms_error(-ENOENT, "weir_pipeline_spawn_list: no spawn term '%s'", name);
    if (count)
        *count = n;
    return 0;
}
