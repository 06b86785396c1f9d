/*
 * Stress of checkpoint barriers (issue 13, terms/barrier.c): random
 * pipelines behind one or two checkpointing blocking sources that inject
 * barriers at random points (single ones, bursts, bursts past the in-flight
 * bound, before the first record, after the last), through random chains
 * (maps, filters, flat-maps, weir_parallel of either order and width 1..4,
 * weir_keyed map shards, weir_spawn), fan-outs, merges of branches, zips of
 * a branch and a filtered branch, ending in sinks, batch sinks (with barrier
 * callbacks), stages whose output nobody reads, keyed sink shards and spawn
 * sinks, some of them slow; random capacity, batch, workers (1..4) and
 * execution mode; each run ends normally, is stopped, cancelled or destroyed
 * at a random moment, or a sink fails.
 *
 * Every record carries its source and index. Each sink (probe) counts, per
 * record, the copies it received; each path from a source to it says which
 * records it keeps (filters) and how many copies (flat-maps). Checks:
 *   - at every call of a checkpoint function, inside it: the ids come
 *     1, 2, 3, ... and every probe holds every record emitted before the
 *     barrier as often as its paths keep it;
 *   - a barrier callback of a sink has run before each checkpoint;
 *   - no call after join (or destroy) returned;
 *   - join 0 without stop: every barrier completed (a zip: every barrier
 *     before the last tuple), every record reached every probe exactly as
 *     often as its paths keep it; after a stop: every barrier injected
 *     completed and every emitted record arrived exactly; after a cancel, a
 *     destroy or a failing sink: no record more often than its paths keep
 *     it.
 * A watchdog aborts with the pipeline's description when an iteration
 * takes longer than 60 s.
 *
 * A source that meets -EBUSY retries until the barrier goes in (every
 * barrier completes without records after it: test_terms_barrier's
 * waiting source), except behind a zip, whose barriers need the records
 * after them (the zip pairs record i with record 2i): there it drops the
 * rest of the burst after ~100 retries and emits on.
 *
 * One summary line; exit 1 on a broken invariant. Run it under
 * ThreadSanitizer.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"

#include "stress_common.h"

#define MAXSRC     2
#define MAXPROBE   24
#define MAXPATH    24
#define MAXDEPTH   3
#define WATCHDOG_S 60
#define SRC_SHIFT  40

/* ---------------------------------------------------------------- random */

static uint64_t rng;
static unsigned long seed;
static uint64_t iteration;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static bool chance(unsigned pct)
{
    return below(100) < pct;
}

/* --------------------------------------------------------------- records */

typedef struct rec {
    int64_t seq; /* source << SRC_SHIFT | index */
    int64_t val;
} rec;

static inline unsigned src_of(int64_t seq)
{
    return (unsigned)((uint64_t)seq >> SRC_SHIFT);
}
static inline uint64_t idx_of(int64_t seq)
{
    return (uint64_t)seq & ((UINT64_C(1) << SRC_SHIFT) - 1);
}

/* Filter kinds, as bits: a path keeps a record when every filter on it
 * does. */
enum { K_NOT3 = 1, K_EVEN = 2, K_NOT5 = 4, K_KINDS = 3 };

static bool keeps(unsigned kinds, uint64_t i)
{
    if ((kinds & K_NOT3) && i % 3 == 0)
        return false;
    if ((kinds & K_EVEN) && i % 2 != 0)
        return false;
    if ((kinds & K_NOT5) && i % 5 == 0)
        return false;
    return true;
}

/* A path from a source: its filters and its copy factor (flat-maps). */
typedef struct path {
    unsigned src, kinds, factor;
} path;

typedef struct pset {
    path p[MAXPATH];
    unsigned n;
    bool ordered; /* per source, indices never decrease */
} pset;

/* ---------------------------------------------------------------- world */

typedef struct source {
    unsigned idx;
    char name[16];
    uint64_t n;
    unsigned pct; /* chance of a barrier point after a record, in 1/1000 */
    bool first, last;
    bool skip_busy;     /* on -EBUSY drop the rest of the burst */
    uint64_t bar_limit; /* no barrier at or after this many records (zip) */
    unsigned pace_us;
    uint64_t maxbar;
    uint64_t *E;
    uint64_t emitted, injected, busy;
    int result;
    _Atomic uint64_t completed;
    _Atomic bool joined;
    _Atomic uint64_t late;
    unsigned probes[MAXPROBE];
    unsigned nprobes;
    uint64_t rng; /* its own generator: it runs on its own thread */
} source;

typedef struct probe {
    char name[16];
    bool zip, ordered, has_bar;
    unsigned delay_us;
    uint64_t fail_at;
    path paths[MAXPATH];
    unsigned npaths;
    uint64_t cap[MAXSRC];
    uint8_t *seen[MAXSRC];
    _Atomic uint64_t count[MAXSRC];
    _Atomic uint64_t total;
    _Atomic uint64_t bcalls;
    int64_t last[MAXSRC];
    uint64_t checked[MAXSRC], sum[MAXSRC];
} probe;

static struct world {
    source src[MAXSRC];
    unsigned nsrc;
    probe probe[MAXPROBE];
    unsigned nprobe;
    bool zip;
    bool two_merged;
    unsigned nterms;
} W;

static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t fails;
static char desc[4096];
static size_t desc_n;
static pthread_mutex_t desc_mu = PTHREAD_MUTEX_INITIALIZER;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    pthread_mutex_lock(&fail_mu);
    if (fails++ < 5) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "stress_barrier: FAIL (seed %lu iteration %" PRIu64 "): ", seed, iteration);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&desc_mu);
        fprintf(stderr, "\n  pipeline: %s\n", desc);
        pthread_mutex_unlock(&desc_mu);
    }
    pthread_mutex_unlock(&fail_mu);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    pthread_mutex_lock(&desc_mu);
    if (desc_n < sizeof desc - 1) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(desc + desc_n, sizeof desc - desc_n, fmt, ap);
        va_end(ap);
        if (k > 0)
            desc_n += (size_t)k;
        if (desc_n > sizeof desc - 1)
            desc_n = sizeof desc - 1;
    }
    pthread_mutex_unlock(&desc_mu);
}

static void world_free(void)
{
    for (unsigned k = 0; k < MAXSRC; k++)
        free(W.src[k].E);
    for (unsigned q = 0; q < MAXPROBE; q++)
        for (unsigned k = 0; k < MAXSRC; k++)
            free(W.probe[q].seen[k]);
    memset(&W, 0, sizeof W);
}

static unsigned mult(const probe *p, unsigned src, uint64_t i)
{
    unsigned m = 0;
    for (unsigned j = 0; j < p->npaths; j++)
        if (p->paths[j].src == src && keeps(p->paths[j].kinds, i))
            m += p->paths[j].factor;
    return m;
}

/* ------------------------------------------------------------ checkpoint */

/* Set just before a stop (1), a cancel or destroy (2), and by a sink that
 * fails (2). */
static _Atomic int acting;

static void ckpt_fn(void *state, uint64_t id)
{
    source *s = state;
    if (atomic_load_explicit(&s->joined, memory_order_relaxed))
        atomic_fetch_add_explicit(&s->late, 1, memory_order_relaxed);
    uint64_t prev = atomic_load_explicit(&s->completed, memory_order_relaxed);
    if (id != prev + 1)
        note("%s: checkpoint %" PRIu64 " after %" PRIu64, s->name, id, prev);
    if (id == 0 || id > s->maxbar) {
        note("%s: checkpoint id %" PRIu64 " out of range", s->name, id);
        return;
    }
    const uint64_t e = s->E[id];
    for (unsigned k = 0; k < s->nprobes; k++) {
        probe *p = &W.probe[s->probes[k]];
        uint64_t i = p->checked[s->idx], sum = p->sum[s->idx];
        for (; i < e; i++) {
            if (i >= p->cap[s->idx]) {
                note("checkpoint %" PRIu64 " of %s: E = %" PRIu64 " beyond the records", id,
                     s->name, e);
                break;
            }
            unsigned m = mult(p, s->idx, i);
            if (p->seen[s->idx][i] < m) {
                note("checkpoint %" PRIu64 " of %s: probe '%s' lacks record %" PRIu64
                     " (E = %" PRIu64 "): %u of %u copies (%s; it holds %" PRIu64 ")",
                     id, s->name, p->name, i, e, p->seen[s->idx][i], m,
                     atomic_load(&acting) ? "after the stop/cancel/failure began"
                                          : "no stop/cancel/failure yet",
                     atomic_load_explicit(&p->count[s->idx], memory_order_relaxed));
                break;
            }
            sum += m;
        }
        p->checked[s->idx] = i;
        p->sum[s->idx] = sum;
        uint64_t c = atomic_load_explicit(&p->count[s->idx], memory_order_relaxed);
        if (c < sum)
            note("checkpoint %" PRIu64 " of %s: probe '%s' counts %" PRIu64 " < %" PRIu64, id,
                 s->name, p->name, c, sum);
        if (p->has_bar && W.nsrc == 1 &&
            atomic_load_explicit(&p->bcalls, memory_order_relaxed) < id)
            note("checkpoint %" PRIu64 " of %s: probe '%s' barrier callback ran %" PRIu64 " times",
                 id, s->name, p->name, atomic_load_explicit(&p->bcalls, memory_order_relaxed));
    }
    atomic_store_explicit(&s->completed, id, memory_order_release);
}

/* ---------------------------------------------------------------- source */

static uint64_t src_rnd(source *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static int inject(source *s, weir_emit *e, unsigned k)
{
    unsigned tries = 0;
    for (unsigned j = 0; j < k; j++) {
        for (;;) {
            if (s->injected + 1 >= s->maxbar || s->emitted >= s->bar_limit)
                return 0;
            uint64_t next = s->injected + 1;
            s->E[next] = s->emitted;
            uint64_t id = 0;
            int r = weir_emit_barrier(e, &id);
            if (r == 0) {
                if (id != next)
                    note("%s: barrier id %" PRIu64 ", %" PRIu64 " expected", s->name, id, next);
                s->injected = next;
                break;
            }
            if (r != -EBUSY)
                return r;
            s->busy++;
            if (s->skip_busy)
                return 0;
            if (weir_emit_stopping(e))
                return -ECANCELED;
            /* behind a zip the barriers in flight need more records */
            if (++tries > 100 && W.zip)
                return 0;
            usleep(20);
        }
    }
    return 0;
}

static unsigned burst_of(source *s)
{
    uint64_t x = src_rnd(s) % 100;
    return x < 70 ? 1 : x < 95 ? 2 + (unsigned)(x % 3) : 70; /* past the in-flight bound */
}

static int src_run(void *state, weir_emit *e)
{
    source *s = state;
    int r = 0;
    if (s->first)
        r = inject(s, e, burst_of(s));
    for (uint64_t i = 0; i < s->n && r == 0; i++) {
        rec x = {(int64_t)(((uint64_t)s->idx << SRC_SHIFT) | i), (int64_t)i};
        r = weir_emit_record(e, &x);
        if (r)
            break;
        s->emitted = i + 1;
        if (i + 1 < s->n && src_rnd(s) % 1000 < s->pct)
            r = inject(s, e, burst_of(s));
        if (s->pace_us && src_rnd(s) % 64 == 0)
            usleep(s->pace_us);
    }
    if (r == 0 && s->last)
        r = inject(s, e, burst_of(s));
    s->result = r;
    return r;
}

/* ----------------------------------------------------------------- probes */

static int probe_take(probe *p, const void *in)
{
    if (p->delay_us)
        usleep(p->delay_us);
    rec r;
    memcpy(&r, in, sizeof r);
    unsigned src = src_of(r.seq);
    uint64_t i = idx_of(r.seq);
    if (p->zip) {
        rec b;
        memcpy(&b, (const char *)in + sizeof r, sizeof b);
        if (src_of(b.seq) != src || idx_of(b.seq) != 2 * i)
            note("zip probe '%s': (%" PRIu64 ", %" PRIu64 ")", p->name, i, idx_of(b.seq));
    }
    if (src >= MAXSRC || !p->seen[src] || i >= p->cap[src]) {
        note("probe '%s': unexpected record %" PRIx64, p->name, (uint64_t)r.seq);
        return 0;
    }
    if (p->seen[src][i] < 255)
        p->seen[src][i]++;
    if (p->ordered) {
        if ((int64_t)i < p->last[src])
            note("probe '%s': record %" PRIu64 " of src%u after %" PRId64, p->name, i, src,
                 p->last[src]);
        p->last[src] = (int64_t)i;
    }
    atomic_fetch_add_explicit(&p->count[src], 1, memory_order_relaxed);
    uint64_t t = atomic_fetch_add_explicit(&p->total, 1, memory_order_relaxed) + 1;
    if (p->fail_at && t == p->fail_at) {
        atomic_store(&acting, 2);
        return -EIO;
    }
    return 0;
}

static int sink_fn(void *state, const void *in)
{
    return probe_take(state, in);
}

static int batch_fn(void *state, const void *recs, size_t n)
{
    probe *p = state;
    size_t sz = p->zip ? 2 * sizeof(rec) : sizeof(rec);
    for (size_t k = 0; k < n; k++) {
        int r = probe_take(p, (const char *)recs + k * sz);
        if (r < 0)
            return r;
    }
    return 0;
}

static int tap_fn(void *state, const void *in, weir_emit *e)
{
    int r = probe_take(state, in);
    return r < 0 ? r : weir_emit_record(e, in);
}

static int bar_fn(void *state, weir_emit *e)
{
    (void)e;
    probe *p = state;
    atomic_fetch_add_explicit(&p->bcalls, 1, memory_order_relaxed);
    return 0;
}

/* A probe fed by the paths of `P`. */
static probe *probe_new(const pset *P, const char *kind)
{
    if (W.nprobe == MAXPROBE)
        return NULL;
    unsigned q = W.nprobe++;
    probe *p = &W.probe[q];
    snprintf(p->name, sizeof p->name, "%s%u", kind, q);
    p->ordered = P->ordered;
    for (unsigned k = 0; k < MAXSRC; k++) {
        atomic_init(&p->count[k], 0);
        p->last[k] = -1;
    }
    atomic_init(&p->total, 0);
    atomic_init(&p->bcalls, 0);
    for (unsigned j = 0; j < P->n; j++) {
        const path *x = &P->p[j];
        if (p->npaths < MAXPATH)
            p->paths[p->npaths++] = *x;
        source *s = &W.src[x->src];
        if (!p->seen[x->src]) {
            p->cap[x->src] = s->n;
            p->seen[x->src] = calloc(s->n + 1, 1);
            s->probes[s->nprobes++] = q;
        }
    }
    if (chance(15) && !W.zip)
        p->delay_us = 1 + (unsigned)below(30);
    return p;
}

/* -------------------------------------------------------------- the terms */

static void map_fn(void *state, const void *in, void *out)
{
    (void)state;
    rec r;
    memcpy(&r, in, sizeof r);
    r.val = r.val * 7 + 3;
    memcpy(out, &r, sizeof r);
}

static bool filter_fn(void *state, const void *in)
{
    rec r;
    memcpy(&r, in, sizeof r);
    return keeps((unsigned)(uintptr_t)state, idx_of(r.seq));
}

static int dup_fn(void *state, const void *in, weir_emit *e)
{
    (void)state;
    int r = weir_emit_record(e, in);
    return r < 0 ? r : weir_emit_record(e, in);
}

static int zip_fn(void *state, const void *const *in, size_t n, weir_emit *e)
{
    (void)state;
    rec o[2];
    memcpy(&o[0], in[0], sizeof o[0]);
    memcpy(&o[1], in[n - 1], sizeof o[1]);
    return weir_emit_record(e, o);
}

static uint64_t key_fn(void *arg, const void *in)
{
    (void)arg;
    rec r;
    memcpy(&r, in, sizeof r);
    return idx_of(r.seq) % 11;
}

static weir_term *shard_map(void *arg, unsigned shard)
{
    (void)arg;
    (void)shard;
    return weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL);
}

static weir_term *shard_sink(void *arg, unsigned shard)
{
    (void)shard;
    return weir_sink(NULL, sizeof(rec), sink_fn, arg);
}

static weir_term *spawn_filter(void *arg, uint64_t key)
{
    (void)key;
    return weir_seq2(weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL),
                     weir_filter(NULL, sizeof(rec), filter_fn, arg));
}

static weir_term *spawn_sink(void *arg, uint64_t key)
{
    (void)key;
    return weir_seq2(weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL),
                     weir_sink(NULL, sizeof(rec), sink_fn, arg));
}

/* A name of its own: keyed and spawn shards are named after their term,
 * and two parallel branches must not output the same name. */
static const char *uname(const char *kind)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "%s%u", kind, W.nterms);
    return buf;
}

static weir_order rnd_order(void)
{
    return chance(50) ? WEIR_ORDERED : WEIR_UNORDERED;
}

static void add_kind(pset *P, unsigned kind)
{
    for (unsigned j = 0; j < P->n; j++)
        P->p[j].kinds |= kind;
}

static unsigned max_factor(const pset *P)
{
    unsigned f = 0;
    for (unsigned j = 0; j < P->n; j++)
        if (P->p[j].factor > f)
            f = P->p[j].factor;
    return f;
}

/* One 1-in/1-out operation on the stream of P. */
static weir_term *gen_op(pset *P)
{
    W.nterms++;
    switch (below(9)) {
    case 0:
    case 1:
        say("map ");
        return weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL);
    case 2: {
        unsigned k = 1u << below(K_KINDS);
        say("filter(%u) ", k);
        add_kind(P, k);
        return weir_filter(NULL, sizeof(rec), filter_fn, (void *)(uintptr_t)k);
    }
    case 3:
        if (max_factor(P) * P->n >= 8) {
            say("map ");
            return weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL);
        }
        say("dup ");
        for (unsigned j = 0; j < P->n; j++)
            P->p[j].factor *= 2;
        return weir_function(NULL, sizeof(rec), sizeof(rec), dup_fn, NULL);
    case 4:
    case 5: {
        unsigned width = 1 + (unsigned)below(4);
        weir_order o = rnd_order();
        weir_term *t = weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL);
        unsigned k = 0;
        if (chance(50)) {
            k = 1u << below(K_KINDS);
            add_kind(P, k);
            t = weir_seq2(t, weir_filter(NULL, sizeof(rec), filter_fn, (void *)(uintptr_t)k));
        }
        say("parallel(w%u %s f%u) ", width, o == WEIR_ORDERED ? "ord" : "unord", k);
        if (o != WEIR_ORDERED)
            P->ordered = false;
        return weir_parallel_order(t, width, o);
    }
    case 6:
    case 7: {
        unsigned shards = 1 + (unsigned)below(5);
        weir_order o = rnd_order();
        say("keyed(%u %s) ", shards, o == WEIR_ORDERED ? "ord" : "unord");
        if (o != WEIR_ORDERED)
            P->ordered = false;
        return weir_keyed(uname("k"), shards, key_fn, NULL, shard_map, NULL, o);
    }
    default: {
        weir_spawn_config sc;
        weir_spawn_config_init(&sc);
        sc.shards = 1 + (unsigned)below(4);
        sc.order = rnd_order();
        unsigned k = 1u << below(K_KINDS);
        add_kind(P, k);
        say("spawn(%u %s f%u) ", sc.shards, sc.order == WEIR_ORDERED ? "ord" : "unord", k);
        if (sc.order != WEIR_ORDERED)
            P->ordered = false;
        return weir_spawn(uname("sp"), sizeof(rec), sizeof(rec), key_fn, NULL, spawn_filter,
                          (void *)(uintptr_t)k, &sc);
    }
    }
}

/* 1..max operations. */
static weir_term *gen_chain(pset *P, unsigned max)
{
    unsigned n = 1 + (unsigned)below(max);
    weir_term *t[4];
    for (unsigned k = 0; k < n; k++)
        t[k] = gen_op(P);
    return n == 1 ? t[0] : weir_seq(n, t);
}

static weir_term *gen_body(pset *P, unsigned depth);

/* A sink-like end on the stream of P. */
static weir_term *gen_end(pset *P, unsigned depth)
{
    W.nterms++;
    unsigned pick = (unsigned)below(10);
    if (W.nprobe + 6 >= MAXPROBE || W.nterms > 40 || depth >= MAXDEPTH)
        pick = 0;
    switch (pick) {
    case 0:
    case 1: {
        probe *p = probe_new(P, "sink");
        bool b = chance(40);
        say("sink%s(%s) ", b ? "+bar" : "", p->name);
        weir_term *t = weir_sink(p->name, sizeof(rec), sink_fn, p);
        if (b) {
            p->has_bar = true;
            t = weir_term_on_barrier(t, bar_fn);
        }
        return t;
    }
    case 2: {
        probe *p = probe_new(P, "bsink");
        bool b = chance(50);
        say("batch_sink%s(%s) ", b ? "+bar" : "", p->name);
        weir_term *t = weir_batch_sink(p->name, sizeof(rec), batch_fn, p);
        if (b) {
            p->has_bar = true;
            t = weir_term_on_barrier(t, bar_fn);
        }
        return t;
    }
    case 3: {
        probe *p = probe_new(P, "tap");
        say("unread_tap(%s) ", p->name);
        return weir_function(p->name, sizeof(rec), sizeof(rec), tap_fn, p);
    }
    case 4: {
        pset Q = *P;
        Q.ordered = false; /* shards share the probe */
        probe *p = probe_new(&Q, "ksink");
        unsigned shards = 1 + (unsigned)below(4);
        say("keyed_sinks(%u %s) ", shards, p->name);
        return weir_keyed(uname("ks"), shards, key_fn, NULL, shard_sink, p, rnd_order());
    }
    case 5: {
        pset Q = *P;
        Q.ordered = false;
        probe *p = probe_new(&Q, "ssink");
        weir_spawn_config sc;
        weir_spawn_config_init(&sc);
        sc.shards = 1 + (unsigned)below(3);
        sc.order = rnd_order();
        say("spawn_sinks(%u %s) ", sc.shards, p->name);
        return weir_spawn(uname("ss"), sizeof(rec), 0, key_fn, NULL, spawn_sink, p, &sc);
    }
    case 6:
    case 7: {
        unsigned nb = 2 + (unsigned)below(3);
        weir_term *br[4];
        say("fanout%u[ ", nb);
        for (unsigned k = 0; k < nb; k++) {
            pset Q = *P;
            br[k] = gen_body(&Q, depth + 1);
            say("| ");
        }
        say("] ");
        return weir_par(nb, br);
    }
    default: {
        /* a merge of two branches, then a body on the union */
        pset A = *P, B = *P;
        say("merge[ ");
        weir_term *a = gen_chain(&A, 2);
        say("| ");
        weir_term *b = gen_chain(&B, 2);
        say("] ");
        pset U = A;
        for (unsigned j = 0; j < B.n && U.n < MAXPATH; j++)
            U.p[U.n++] = B.p[j];
        U.ordered = false;
        weir_term *rest = gen_body(&U, depth + 1);
        return WEIR_SEQ(weir_par2(a, b), weir_merge(NULL), rest);
    }
    }
}

static weir_term *gen_body(pset *P, unsigned depth)
{
    if (chance(40))
        return gen_end(P, depth);
    weir_term *c = gen_chain(P, 3);
    return weir_seq2(c, gen_end(P, depth));
}

/* --------------------------------------------------------------- sources */

static source *src_init(unsigned idx, uint64_t n)
{
    source *s = &W.src[idx];
    s->idx = idx;
    snprintf(s->name, sizeof s->name, "src%u", idx);
    s->n = n;
    s->pct = chance(20) ? 300 : chance(50) ? 30 : 3;
    s->first = chance(30);
    s->last = chance(50);
    s->skip_busy = chance(20);
    s->bar_limit = UINT64_MAX;
    s->pace_us = chance(20) ? 50 + (unsigned)below(200) : 0;
    s->maxbar = n * s->pct / 1000 * 3 + n / 10 + 300;
    if (s->maxbar > 40000)
        s->maxbar = 40000;
    s->E = calloc(s->maxbar + 1, sizeof *s->E);
    s->rng = rnd() | 1;
    atomic_init(&s->completed, 0);
    atomic_init(&s->joined, false);
    atomic_init(&s->late, 0);
    return s;
}

static weir_term *t_src(source *s)
{
    return weir_term_on_checkpoint(weir_blocking_source(s->name, sizeof(rec), src_run, s), ckpt_fn);
}

static pset pset_of(unsigned src)
{
    pset P;
    memset(&P, 0, sizeof P);
    P.n = 1;
    P.p[0] = (path){src, 0, 1};
    P.ordered = true;
    return P;
}

/* The whole tree. */
static weir_term *gen_tree(uint64_t n)
{
    unsigned shape = (unsigned)below(10);
    if (shape == 0) {
        /* a zip of a branch and its even records: the zip ends with the
         * short input, so barriers only in the first 40 % */
        W.zip = true;
        W.nsrc = 1;
        source *s = src_init(0, n);
        s->bar_limit = n * 2 / 5;
        s->last = false;
        pset P = pset_of(0);
        probe *p = probe_new(&P, "zsink");
        p->zip = true;
        say("src0 -> [map | filter(even)] -> zip -> sink(%s)", p->name);
        return WEIR_SEQ(
            t_src(s),
            weir_par2(weir_map(NULL, sizeof(rec), sizeof(rec), map_fn, NULL),
                      weir_filter(NULL, sizeof(rec), filter_fn, (void *)(uintptr_t)K_EVEN)),
            weir_zip(NULL, 2 * sizeof(rec), zip_fn, NULL),
            weir_sink(p->name, 2 * sizeof(rec), sink_fn, p));
    }
    if (shape == 1) {
        /* two sources, each with a body of its own */
        W.nsrc = 2;
        source *a = src_init(0, n), *b = src_init(1, n / 2 + 1);
        pset P = pset_of(0), Q = pset_of(1);
        say("src0 -> ");
        weir_term *x = weir_seq2(t_src(a), gen_body(&P, 1));
        say(" || src1 -> ");
        weir_term *y = weir_seq2(t_src(b), gen_body(&Q, 1));
        return weir_par2(x, y);
    }
    if (shape == 2) {
        /* two sources merged */
        W.nsrc = 2;
        W.two_merged = true;
        source *a = src_init(0, n), *b = src_init(1, n / 2 + 1);
        pset P = pset_of(0), Q = pset_of(1);
        say("merge[ src0 -> ");
        weir_term *x = weir_seq2(t_src(a), gen_chain(&P, 2));
        say("| src1 -> ");
        weir_term *y = weir_seq2(t_src(b), gen_chain(&Q, 2));
        say("] -> ");
        pset U = P;
        for (unsigned j = 0; j < Q.n && U.n < MAXPATH; j++)
            U.p[U.n++] = Q.p[j];
        U.ordered = P.ordered && Q.ordered; /* per source: one path each */
        if (P.n > 1 || Q.n > 1)
            U.ordered = false;
        return WEIR_SEQ(weir_par2(x, y), weir_merge(NULL), gen_body(&U, 1));
    }
    W.nsrc = 1;
    source *s = src_init(0, n);
    pset P = pset_of(0);
    say("src0 -> ");
    if (shape == 3 && chance(30)) {
        say("(nobody reads)");
        return t_src(s);
    }
    return weir_seq2(t_src(s), gen_body(&P, 0));
}

/* -------------------------------------------------------------- watchdog */

static _Atomic double deadline;
static _Atomic bool watchdog_quit;

static void *watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watchdog_quit)) {
        double d = atomic_load(&deadline);
        if (d > 0 && stress_now() > d) {
            pthread_mutex_lock(&desc_mu);
            fprintf(stderr,
                    "stress_barrier: HANG: seed %lu iteration %" PRIu64
                    " took longer than %d s:\n  %s\n",
                    seed, iteration, WATCHDOG_S, desc);
            pthread_mutex_unlock(&desc_mu);
            fflush(stderr);
            abort();
        }
        usleep(100 * 1000);
    }
    return NULL;
}

/* ------------------------------------------------------------------ main */

enum { ACT_END, ACT_STOP, ACT_CANCEL, ACT_DESTROY, ACT_FAIL, NACT };
static const char *act_names[NACT] = {"end", "stop", "cancel", "destroy", "fail"};
static uint64_t n_acts[NACT], n_barriers, n_busy, n_records, n_probes;

static void mark_joined(void)
{
    for (unsigned k = 0; k < W.nsrc; k++)
        atomic_store(&W.src[k].joined, true);
}

static int one_iteration(unsigned workers)
{
    world_free();
    pthread_mutex_lock(&desc_mu);
    desc_n = 0;
    desc[0] = 0;
    pthread_mutex_unlock(&desc_mu);

    atomic_store(&acting, 0);
    const weir_exec_mode mode = (weir_exec_mode)below(3);
    int act = ACT_END;
    unsigned r = (unsigned)below(100);
    if (r < 15)
        act = ACT_STOP;
    else if (r < 27)
        act = ACT_CANCEL;
    else if (r < 33)
        act = ACT_DESTROY;
    else if (r < 38)
        act = ACT_FAIL;
    uint64_t n = chance(30) ? 1 + below(300) : 300 + below(5000);
    if (act != ACT_END && act != ACT_FAIL)
        n *= 4;
    weir_term *t = gen_tree(n);
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = mode;
    c.print_stats = false;
    c.batch = chance(30) ? 1 + (unsigned)below(4) : 1 + (unsigned)below(256);
    c.capacity = 4u << below(9);
    if (W.zip && c.capacity < 2 * n + 2 * c.batch + 64) {
        /* the zip waits on its short input while the long one holds n / 2 */
        unsigned cap = 4;
        while (cap < 2 * n + 2 * c.batch + 64)
            cap *= 2;
        c.capacity = cap;
    }
    if (act == ACT_FAIL && W.nprobe) {
        probe *p = &W.probe[below(W.nprobe)];
        p->fail_at = 1 + below(n);
    }
    say("\n  %s, %u workers, batch %u, capacity %u, %" PRIu64 " records, %s",
        weir_exec_mode_name(mode), workers, c.batch, c.capacity, n, act_names[act]);
    weir_config rc;
    weir_config_init(&rc);
    rc.workers = workers;
    rc.affinity = WEIR_AFFINITY_NONE;
    rc.print_stats = false;
    weir_runtime *rt;
    if (weir_runtime_create(&rc, &rt) != 0) {
        fprintf(stderr, "stress_barrier: runtime: %s\n", weir_last_error());
        return -1;
    }
    weir_pipeline *p;
    int e = weir_pipeline_create(rt, t, &c, &p);
    if (e != 0) {
        fprintf(stderr, "stress_barrier: create %d: %s\n  %s\n", e, weir_last_error(), desc);
        weir_term_destroy(t);
        weir_runtime_destroy(rt);
        return -1;
    }
    atomic_store(&deadline, stress_now() + WATCHDOG_S);
    if (weir_pipeline_start(p) != 0) {
        note("start refused: %s", weir_last_error());
        weir_pipeline_destroy(p);
        weir_runtime_destroy(rt);
        return -1;
    }
    if (act == ACT_STOP || act == ACT_CANCEL || act == ACT_DESTROY) {
        usleep((useconds_t)below(chance(50) ? 2000 : 30000));
        atomic_store(&acting, act == ACT_STOP ? 1 : 2);
        if (act == ACT_STOP && weir_pipeline_stop(p) != 0)
            note("stop refused");
        if (act == ACT_CANCEL && weir_pipeline_cancel(p) != 0)
            note("cancel refused");
    }
    int j = 0;
    if (act == ACT_DESTROY) {
        weir_pipeline_destroy(p);
        p = NULL;
        mark_joined();
    } else {
        j = weir_pipeline_join(p);
        mark_joined();
    }
    uint64_t done[MAXSRC];
    for (unsigned k = 0; k < W.nsrc; k++)
        done[k] = atomic_load(&W.src[k].completed);
    n_acts[act]++;

    bool ok_join =
        j == 0 || (act == ACT_CANCEL && j == -ECANCELED) || (act == ACT_FAIL && j == -EIO);
    if (!ok_join)
        note("join %d (%s), action %s", j, p ? weir_pipeline_error(p) : "", act_names[act]);
    const bool normal = act == ACT_END || (act == ACT_FAIL && j == 0);
    for (unsigned k = 0; k < W.nsrc; k++) {
        source *s = &W.src[k];
        n_barriers += done[k];
        n_busy += s->busy;
        n_records += s->emitted;
        if (atomic_load(&s->late))
            note("%s: %" PRIu64 " checkpoints after join", s->name, atomic_load(&s->late));
        if (done[k] > s->injected)
            note("%s: %" PRIu64 " completed of %" PRIu64 " injected", s->name, done[k],
                 s->injected);
        if (normal && s->emitted != s->n)
            note("%s: emitted %" PRIu64 " of %" PRIu64 " (returned %d)", s->name, s->emitted, s->n,
                 s->result);
        if ((normal || act == ACT_STOP) && !W.zip && done[k] != s->injected)
            note("%s: %" PRIu64 " of %" PRIu64 " barriers completed after %s", s->name, done[k],
                 s->injected, act_names[act]);
        if (normal && W.zip) {
            /* every barrier before the last tuple */
            uint64_t T = (s->n + 1) / 2, want = 0;
            for (uint64_t id = 1; id <= s->injected; id++)
                if (s->E[id] < T)
                    want = id;
            if (done[k] < want)
                note("zip: %" PRIu64 " barriers completed, %" PRIu64 " expected", done[k], want);
        }
    }
    /* records: exactly after a normal end or a stop, never too many */
    for (unsigned q = 0; q < W.nprobe; q++) {
        probe *pr = &W.probe[q];
        n_probes++;
        for (unsigned k = 0; k < W.nsrc; k++) {
            if (!pr->seen[k])
                continue;
            source *s = &W.src[k];
            /* a zip: the tuples of the first ceil(emitted / 2) records */
            const uint64_t lim = pr->zip ? (s->emitted + 1) / 2 : s->emitted;
            const bool exact = normal || act == ACT_STOP;
            for (uint64_t i = 0; i < pr->cap[k]; i++) {
                unsigned m = i < lim ? mult(pr, k, i) : 0;
                if (exact ? pr->seen[k][i] != m : pr->seen[k][i] > m) {
                    note("probe '%s' got record %" PRIu64 " of %s %u times, %s%u after %s",
                         pr->name, i, s->name, pr->seen[k][i], exact ? "" : "<= ", m,
                         act_names[act]);
                    break;
                }
            }
        }
        if (normal && pr->has_bar && W.nsrc == 1 && atomic_load(&pr->bcalls) != W.src[0].injected &&
            !W.zip)
            note("probe '%s' barrier callback ran %" PRIu64 " times for %" PRIu64, pr->name,
                 atomic_load(&pr->bcalls), W.src[0].injected);
    }
    if (p)
        weir_pipeline_destroy(p);
    for (unsigned k = 0; k < W.nsrc; k++)
        if (atomic_load(&W.src[k].completed) != done[k])
            note("%s: a checkpoint after join or destroy", W.src[k].name);
    weir_runtime_destroy(rt);
    atomic_store(&deadline, 0);
    return 0;
}

int main(int argc, char **argv)
{
    stress_opts o;
    int r = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (r)
        return r;
    seed = o.seed;
    rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    if (!rng)
        rng = 1;
    atomic_init(&deadline, 0);
    atomic_init(&watchdog_quit, false);
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0) {
        fprintf(stderr, "stress_barrier: cannot start the watchdog\n");
        return 1;
    }
    const double t0 = stress_now();
    while (stress_now() - t0 < o.seconds) {
        iteration++;
        unsigned workers = o.workers ? o.workers : 1 + (unsigned)below(4);
        if (one_iteration(workers) != 0) {
            fails++;
            break;
        }
    }
    atomic_store(&watchdog_quit, true);
    pthread_join(wd, NULL);
    world_free();
    printf("stress_barrier: seed %lu, %" PRIu64 " runs (end %" PRIu64 ", stop %" PRIu64
           ", cancel %" PRIu64 ", destroy %" PRIu64 ", fail %" PRIu64 "), %" PRIu64
           " checkpoints checked, %" PRIu64 " -EBUSY, %" PRIu64 " records, %" PRIu64
           " probes, %" PRIu64 " failures\n",
           seed, iteration, n_acts[ACT_END], n_acts[ACT_STOP], n_acts[ACT_CANCEL],
           n_acts[ACT_DESTROY], n_acts[ACT_FAIL], n_barriers, n_busy, n_records, n_probes, fails);
    return fails ? 1 : 0;
}
