/*
 * Stop, cancel and errors at random moments (issue 4). Plain main(),
 * runnable under TSan; run it under ASan to check that nothing leaks.
 *
 * Every trial builds a random pipeline — 1..3 sources (pull or blocking),
 * each broadcast to 1..6 branches of 0..3 terms (map, function map,
 * function filter, filter, flat-map, id, some with finish callbacks) ending
 * in a sink or a batch sink, plus sometimes two more sources merged into one
 * sink and zipped into another — with a random batch size, capacity,
 * runtime (1..4 workers, or --workers W up to 256) and execution mode, and
 * then one of:
 *
 *   stop    weir_pipeline_stop() after a random delay, or from a source or a
 *           sink callback after a random number of records. join must return
 *           0, and every sink must hold exactly what its terms make of the
 *           records its source produced (each source counts what it handed
 *           over), in order, finish records included: a stop drains.
 *   cancel  weir_pipeline_cancel() at such a moment (or weir_pipeline_destroy()
 *           on the running pipeline). join must return -ECANCELED within 5 s.
 *   error   one callback — a source, a function term, a sink, a batch sink,
 *           a zip, a finish callback — returns -EIO (sometimes through
 *           weir_emit_fail()) at a random record; sometimes a cancel races it.
 *           join must return that error (or -ECANCELED if the cancel won) and
 *           weir_pipeline_error() must name the failing term.
 *
 * Two more kinds of trial, with shapes of their own:
 *
 *   deadlock   src(n) * (filter even | id) * zip * sink, with a random
 *              source kind (pull or blocking), mode, batch and capacity: a
 *              bounded-stream deadlock once n is large against the capacity.
 *              join must return 0 with the exact zip sum when everything fits
 *              (n <= capacity), -EDEADLK when n is far beyond it (more than
 *              8 x capacity + 8 x batch + 64), and one of the two in between;
 *              never hang.
 *   interrupt  a blocking source emits n records, then blocks in read() on a
 *              pipe nobody writes; its interrupt function closes the write
 *              end. stop (join 0, the sink got all n), cancel (-ECANCELED) or
 *              destroy after a random delay; the interrupt runs exactly once.
 *
 * A watchdog ends the program (exit 1) when a trial hangs (60 s). Prints one
 * summary line; exits 1 on a broken invariant.
 *
 *   stress_stop_cancel [--seconds S] [--workers W] [--seed N]
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
#include <unistd.h>

#include "../stress_common.h"
#include "weir.h"

typedef struct item {
    int64_t id;
    int64_t value;
} item;

#define IS sizeof(item)

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static uint64_t hash(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* ------------------------------------------------------------ a trial */

enum { T_STOP, T_CANCEL, T_ERROR };
enum { MAXSRC = 5, MAXBR = 6, MAXOPS = 3 };

typedef struct vec {
    item *v;
    size_t n, cap;
} vec;

static void vpush(vec *v, item x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->v = realloc(v->v, v->cap * IS);
        if (!v->v) {
            fprintf(stderr, "stress_stop_cancel: out of memory\n");
            exit(2);
        }
    }
    v->v[v->n++] = x;
}

/* Where a callback fails (error trials) or triggers (stop / cancel). */
typedef struct hook {
    bool fail;      /* return -EIO at call `at` */
    bool emit_fail; /* ... through weir_emit_fail() */
    bool trigger;   /* call stop / cancel at call `at` */
    uint64_t at;
    /* atomic: the replicas of a weir_parallel run call it concurrently
     * (relaxed: a count; which call is the at-th does not matter) */
    _Atomic uint64_t calls;
} hook;

typedef struct op {
    char kind; /* m map, M function map, f function filter, x filter, F flat-map, i id */
    bool finish;
    hook h;
    hook hfin; /* the finish callback fails */
    char name[40];
} op;

typedef struct branch {
    int src;
    int nops;
    op ops[MAXOPS];
    bool batch; /* batch sink */
    /* ops [par_from, par_from + par_n) run as one weir_parallel (par_n 0:
     * none), width par_width (0: every worker) */
    int par_from, par_n;
    unsigned par_width;
    hook h;
    char name[40];
    vec got;
    uint64_t count;
} branch;

typedef struct source {
    bool blocking;
    int64_t cap; /* records before it ends by itself (INT64_MAX: endless) */
    hook h;
    _Atomic uint64_t produced; /* records handed over (read after join) */
    bool emit_error;           /* a blocking emit returned something unexpected */
    int emit_ret;
    uint64_t r;
    char name[16];
} source;

typedef struct trial {
    int type;
    int nsrc; /* sources 0..nsrc-1 have branches; with mz, sources nsrc, nsrc+1 */
    source src[MAXSRC];
    int nbr[MAXSRC];
    branch br[MAXSRC][MAXBR];
    bool mz; /* merge + zip of two extra sources */
    branch merge_sink, zip_sink;
    bool merge_finish;
    hook merge_hfin;
    hook zip_h;
    bool storing; /* sinks keep their records (stop trials) */
    weir_pipeline *p;
    const char *fail_name; /* the term an error trial makes fail */
    bool race_cancel;
    weir_pipeline_config cfg;
    unsigned workers;
    int how; /* stop/cancel: 0 delay, 1 from a source, 2 from a sink, 3 destroy (cancel) */
    unsigned delay_us;
    /* A callback called stop / cancel. seq_cst (the default) here and in
     * the watchdog: test bookkeeping between two threads, off the hot path. */
    _Atomic bool fired;
    /* Calls of the triggering callback so far (relaxed: a progress gauge the
     * main thread reads while waiting, see wait_for_trigger()). */
    _Atomic uint64_t trigger_calls;
} trial;

static trial *T;

static void trigger(void)
{
    atomic_store(&T->fired, true);
    if (T->type == T_STOP)
        weir_pipeline_stop(T->p);
    else
        weir_pipeline_cancel(T->p);
}

/* One call of a hooked callback: @return -EIO when it must fail now. */
static int hook_call(hook *h, weir_emit *e, const char *name)
{
    uint64_t c = atomic_fetch_add_explicit(&h->calls, 1, memory_order_relaxed);
    if (h->trigger) {
        atomic_store_explicit(&T->trigger_calls, c + 1, memory_order_relaxed);
        if (c == h->at)
            trigger();
    }
    if (h->fail && c == h->at) {
        if (h->emit_fail && e)
            return weir_emit_fail(e, -EIO, "injected failure in '%s' at call %" PRIu64, name, c);
        return -EIO;
    }
    return 0;
}

/* ---------------------------------------------------------- callbacks */

static item src_item(int s, uint64_t k)
{
    item x = {(int64_t)k, s};
    return x;
}

static int pull_fn(void *state, void *out, size_t max, bool *end)
{
    source *s = state;
    int idx = (int)(s - T->src);
    uint64_t done = atomic_load_explicit(&s->produced, memory_order_relaxed);
    int r = hook_call(&s->h, NULL, s->name);
    if (r < 0)
        return r;
    s->r = hash(s->r + 1);
    size_t k = max ? 1 + (size_t)(s->r % max) : 0;
    if ((int64_t)k > s->cap - (int64_t)done)
        k = (size_t)(s->cap - (int64_t)done);
    for (size_t i = 0; i < k; i++) {
        item x = src_item(idx, done + i);
        memcpy((char *)out + i * IS, &x, IS);
    }
    /* relaxed: read by the main thread after join (which synchronises). */
    atomic_store_explicit(&s->produced, done + k, memory_order_relaxed);
    *end = (int64_t)(done + k) == s->cap;
    return (int)k;
}

static int blocking_fn(void *state, weir_emit *e)
{
    source *s = state;
    int idx = (int)(s - T->src);
    item buf[300];
    for (;;) {
        uint64_t done = atomic_load_explicit(&s->produced, memory_order_relaxed);
        if ((int64_t)done >= s->cap)
            return 0;
        int r = hook_call(&s->h, e, s->name);
        if (r < 0)
            return r;
        s->r = hash(s->r + 2);
        size_t k = 1;
        if (s->r % 2)
            k = 1 + (size_t)((s->r >> 8) % 300);
        if ((int64_t)k > s->cap - (int64_t)done)
            k = (size_t)(s->cap - (int64_t)done);
        for (size_t i = 0; i < k; i++)
            buf[i] = src_item(idx, done + i);
        r = k == 1 ? weir_emit_record(e, &buf[0]) : weir_emit_records(e, buf, k);
        if (r == -ECANCELED) {
            /* Stopped or cancelled: the record(s) were not emitted. */
            if (!weir_emit_stopping(e)) {
                s->emit_error = true;
                s->emit_ret = r;
            }
            return r;
        }
        if (r != 0) {
            /* A downstream error is returned by an emit only inside a stage;
             * a blocking source has no fused terms. */
            s->emit_error = true;
            s->emit_ret = r;
            return r;
        }
        atomic_store_explicit(&s->produced, done + k, memory_order_relaxed);
    }
}

static item op_apply_map(item x)
{
    x.value = x.value * 7 + x.id;
    return x;
}

static bool op_keep_f(item x)
{
    return x.id % 3 != 1;
}

static bool op_keep_x(item x)
{
    return (x.id & 1) == 0;
}

static int op_copies(item x)
{
    return (int)(((x.id % 3) + 3) % 3);
}

static void map_fn(void *state, const void *in, void *out)
{
    op *o = state;
    atomic_fetch_add_explicit(&o->h.calls, 1, memory_order_relaxed);
    item x;
    memcpy(&x, in, IS);
    x = op_apply_map(x);
    memcpy(out, &x, IS);
}

static bool pred_fn(void *state, const void *in)
{
    op *o = state;
    atomic_fetch_add_explicit(&o->h.calls, 1, memory_order_relaxed);
    item x;
    memcpy(&x, in, IS);
    return op_keep_x(x);
}

static int function_fn(void *state, const void *in, weir_emit *e)
{
    op *o = state;
    int r = hook_call(&o->h, e, o->name);
    if (r < 0)
        return r;
    item x;
    memcpy(&x, in, IS);
    switch (o->kind) {
    case 'M':
        x = op_apply_map(x);
        return weir_emit_record(e, &x);
    case 'f':
        return op_keep_f(x) ? weir_emit_record(e, &x) : 0;
    default: { /* F */
        int c = op_copies(x);
        for (int j = 0; j < c; j++) {
            item y = x;
            y.value += j * 1000;
            r = weir_emit_record(e, &y);
            if (r < 0)
                return r;
        }
        return 0;
    }
    }
}

static int op_finish(void *state, weir_emit *e)
{
    op *o = state;
    int r = hook_call(&o->hfin, e, o->name);
    if (r < 0)
        return r;
    item f = {-1000, (int64_t)atomic_load_explicit(&o->h.calls, memory_order_relaxed)};
    return weir_emit_record(e, &f);
}

static int sink_fn(void *state, const void *in)
{
    branch *b = state;
    int r = hook_call(&b->h, NULL, b->name);
    if (r < 0)
        return r;
    b->count++;
    if (T->storing) {
        item x;
        memcpy(&x, in, IS);
        vpush(&b->got, x);
    }
    return 0;
}

static int batch_fn(void *state, const void *recs, size_t n)
{
    branch *b = state;
    for (size_t i = 0; i < n; i++) {
        /* One hook call per record, so `at` counts records here too. */
        int r = hook_call(&b->h, NULL, b->name);
        if (r < 0)
            return r;
        b->count++;
        if (T->storing) {
            item x;
            memcpy(&x, (const char *)recs + i * IS, IS);
            vpush(&b->got, x);
        }
    }
    return 0;
}

static int merge_finish_fn(void *state, weir_emit *e)
{
    (void)state;
    int r = hook_call(&T->merge_hfin, e, "m");
    if (r < 0)
        return r;
    item f = {-2000, 0};
    return weir_emit_record(e, &f);
}

static int zip_fn(void *state, const void *const *in, size_t n, weir_emit *e)
{
    (void)state;
    int r = hook_call(&T->zip_h, e, "z");
    if (r < 0)
        return r;
    item a, b;
    memcpy(&a, in[0], IS);
    memcpy(&b, in[n - 1], IS);
    item y = {a.id, a.id * 1000003 + b.id};
    return weir_emit_record(e, &y);
}

/* ------------------------------------------------------------- build */

static weir_term *build_op(op *o)
{
    weir_term *t = NULL;
    switch (o->kind) {
    case 'm':
        t = weir_map(o->name, IS, IS, map_fn, o);
        break;
    case 'x':
        t = weir_filter(o->name, IS, pred_fn, o);
        break;
    case 'i':
        return weir_id(o->name, IS);
    default:
        t = weir_function(o->name, IS, IS, function_fn, o);
        break;
    }
    return o->finish ? weir_term_on_finish(t, op_finish) : t;
}

static weir_term *build_sink(branch *b)
{
    return b->batch ? weir_batch_sink(b->name, IS, batch_fn, b)
                    : weir_sink(b->name, IS, sink_fn, b);
}

static weir_term *build_source(source *s)
{
    return s->blocking ? weir_blocking_source(s->name, IS, blocking_fn, s)
                       : weir_source(s->name, IS, pull_fn, s);
}

static weir_term *build(void)
{
    weir_term *comps[MAXSRC];
    int nc = 0;
    for (int i = 0; i < T->nsrc; i++) {
        weir_term *brs[MAXBR];
        for (int j = 0; j < T->nbr[i]; j++) {
            branch *b = &T->br[i][j];
            weir_term *chain[MAXOPS + 1];
            int n = 0;
            for (int k = 0; k < b->nops; k++) {
                if (b->par_n && k == b->par_from) {
                    /* a run of ops as replicas: the same records, in order */
                    weir_term *run[MAXOPS];
                    for (int q = 0; q < b->par_n; q++)
                        run[q] = build_op(&b->ops[k + q]);
                    chain[n++] = weir_parallel(weir_seq((size_t)b->par_n, run), b->par_width);
                    k += b->par_n - 1;
                    continue;
                }
                chain[n++] = build_op(&b->ops[k]);
            }
            chain[n++] = build_sink(b);
            brs[j] = weir_seq((size_t)n, chain);
        }
        comps[nc++] = weir_seq2(build_source(&T->src[i]), weir_par((size_t)T->nbr[i], brs));
    }
    if (T->mz) {
        weir_term *m = weir_merge("m");
        if (T->merge_finish)
            m = weir_term_on_finish(m, merge_finish_fn);
        comps[nc++] = WEIR_SEQ(
            weir_par2(build_source(&T->src[T->nsrc]), build_source(&T->src[T->nsrc + 1])),
            weir_par2(weir_seq2(m, build_sink(&T->merge_sink)),
                      weir_seq2(weir_zip("z", IS, zip_fn, NULL), build_sink(&T->zip_sink))));
    }
    return nc == 1 ? comps[0] : weir_par((size_t)nc, comps);
}

/* ----------------------------------------------------------- generate */

static void gen_trial(int type)
{
    memset(T, 0, sizeof *T);
    atomic_init(&T->fired, false);
    T->type = type;
    T->storing = type == T_STOP;
    T->nsrc = 1 + (int)rndn(3);
    T->mz = rndn(3) == 0;
    int total_src = T->nsrc + (T->mz ? 2 : 0);
    for (int i = 0; i < total_src; i++) {
        source *s = &T->src[i];
        s->blocking = rndn(3) == 0;
        /* Stop trials: sources end by themselves after 100k records if the
         * stop comes late, which keeps the sinks' memory bounded. Cancel
         * trials: endless. Error trials: long enough to reach the failure. */
        s->cap = type == T_CANCEL ? INT64_MAX : 100000;
        s->r = rnd();
        snprintf(s->name, sizeof s->name, "s%d", i);
        atomic_init(&s->produced, 0);
    }
    static const char kinds[] = "mMfxFi";
    for (int i = 0; i < T->nsrc; i++) {
        T->nbr[i] = 1 + (int)rndn(MAXBR);
        for (int j = 0; j < T->nbr[i]; j++) {
            branch *b = &T->br[i][j];
            b->src = i;
            b->nops = (int)rndn(MAXOPS + 1);
            b->batch = rndn(2);
            snprintf(b->name, sizeof b->name, "k%d_%d", i, j);
            for (int k = 0; k < b->nops; k++) {
                op *o = &b->ops[k];
                o->kind = kinds[rndn(6)];
                o->finish = o->kind != 'i' && rndn(4) == 0;
                snprintf(o->name, sizeof o->name, "b%d_%d_%d", i, j, k);
            }
            b->par_n = 0;
            if (b->nops > 0 && rndn(3) == 0) {
                b->par_from = (int)rndn((unsigned)b->nops);
                b->par_n = 1 + (int)rndn((unsigned)(b->nops - b->par_from));
                b->par_width = rndn(4);
            }
        }
    }
    snprintf(T->merge_sink.name, sizeof T->merge_sink.name, "km");
    snprintf(T->zip_sink.name, sizeof T->zip_sink.name, "kz");
    T->merge_sink.batch = rndn(2);
    T->zip_sink.batch = rndn(2);
    T->merge_finish = rndn(3) == 0;

    weir_pipeline_config_init(&T->cfg);
    T->cfg.print_stats = false;
    T->cfg.mode = (weir_exec_mode)rndn(3);
    T->cfg.batch = 1 + rndn(300);
    T->cfg.capacity = rndn(2) ? 1 + rndn(16) : 1 + rndn(2048);

    if (type != T_ERROR) {
        /* 0: after a delay (from this thread); 1: from a source callback;
         * 2: from a sink callback; 3 (cancel only): destroy while running. */
        T->how = (int)rndn(type == T_CANCEL ? 4 : 3);
        T->delay_us = rndn(3000);
        uint64_t at = rndn(5000);
        if (T->how == 1) {
            source *s = &T->src[rndn((unsigned)total_src)];
            s->h.trigger = true;
            s->h.at = at / 64; /* pull / emit calls, each up to max records */
        } else if (T->how == 2) {
            branch *b = &T->br[0][rndn((unsigned)T->nbr[0])];
            b->h.trigger = true;
            b->h.at = at;
        }
        return;
    }

    /* Error trials: pick the failing callback. */
    uint64_t at = rndn(3000);
    bool ef = rndn(2);
    T->race_cancel = rndn(4) == 0;
    T->delay_us = rndn(2000);
    for (;;) {
        switch (rndn(7)) {
        case 0: { /* a source */
            source *s = &T->src[rndn((unsigned)total_src)];
            s->h.fail = true;
            s->h.emit_fail = ef;
            s->h.at = at / 32;
            T->fail_name = s->name;
            return;
        }
        case 1:
        case 2: { /* a function term (map, filter or flat-map) or its finish */
            int i = (int)rndn((unsigned)T->nsrc);
            branch *b = &T->br[i][rndn((unsigned)T->nbr[i])];
            if (b->nops == 0)
                continue;
            op *o = &b->ops[rndn((unsigned)b->nops)];
            if (rndn(3) == 0 && o->kind != 'i') {
                /* Its finish callback: the sources must end. */
                o->finish = true;
                o->hfin.fail = true;
                o->hfin.emit_fail = ef;
                for (int k = 0; k < total_src; k++)
                    T->src[k].cap = (int64_t)rndn(2000);
                T->fail_name = o->name;
                return;
            }
            if (o->kind != 'M' && o->kind != 'f' && o->kind != 'F')
                o->kind = "MfF"[rndn(3)]; /* maps and filters cannot fail */
            o->h.fail = true;
            o->h.emit_fail = ef;
            o->h.at = at;
            T->fail_name = o->name;
            return;
        }
        case 3:
        case 4: { /* a sink or batch sink */
            int i = (int)rndn((unsigned)T->nsrc);
            branch *b = &T->br[i][rndn((unsigned)T->nbr[i])];
            b->h.fail = true;
            b->h.at = at;
            T->fail_name = b->name;
            return;
        }
        case 5: /* the zip */
            if (!T->mz)
                continue;
            T->zip_h.fail = true;
            T->zip_h.emit_fail = ef;
            T->zip_h.at = at;
            T->fail_name = "z";
            return;
        default: /* the merge's finish callback */
            if (!T->mz)
                continue;
            T->merge_finish = true;
            T->merge_hfin.fail = true;
            T->merge_hfin.emit_fail = ef;
            for (int k = 0; k < total_src; k++)
                T->src[k].cap = (int64_t)rndn(2000);
            T->fail_name = "m";
            return;
        }
    }
}

static void free_trial(void)
{
    for (int i = 0; i < T->nsrc; i++)
        for (int j = 0; j < T->nbr[i]; j++)
            free(T->br[i][j].got.v);
    free(T->merge_sink.got.v);
    free(T->zip_sink.got.v);
}

/* ------------------------------------------------------------- checks */

static uint64_t failures;
static char desc[256];

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "stress_stop_cancel: %s: ", desc);                                         \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        failures++;                                                                                \
    } while (0)

/* What branch b's terms make of its source's first n records. */
static void expected(const branch *b, uint64_t n, vec *out)
{
    vec cur = {0};
    for (uint64_t k = 0; k < n; k++)
        vpush(&cur, src_item(b->src, k));
    for (int i = 0; i < b->nops; i++) {
        const op *o = &b->ops[i];
        vec next = {0};
        for (size_t k = 0; k < cur.n; k++) {
            item x = cur.v[k];
            switch (o->kind) {
            case 'm':
            case 'M':
                vpush(&next, op_apply_map(x));
                break;
            case 'f':
                if (op_keep_f(x))
                    vpush(&next, x);
                break;
            case 'x':
                if (op_keep_x(x))
                    vpush(&next, x);
                break;
            case 'F':
                for (int j = 0; j < op_copies(x); j++) {
                    item y = x;
                    y.value += j * 1000;
                    vpush(&next, y);
                }
                break;
            default:
                vpush(&next, x);
                break;
            }
        }
        if (o->finish) {
            /* A stop drains: finish callbacks run, after the last record. */
            item f = {-1000, (int64_t)cur.n};
            vpush(&next, f);
        }
        free(cur.v);
        cur = next;
    }
    *out = cur;
}

static uint64_t records_checked;

static void check_stop(void)
{
    for (int i = 0; i < T->nsrc + (T->mz ? 2 : 0); i++)
        if (T->src[i].emit_error)
            FAIL("source %s: emit returned %d before any stop", T->src[i].name, T->src[i].emit_ret);
    for (int i = 0; i < T->nsrc; i++) {
        uint64_t n = atomic_load_explicit(&T->src[i].produced, memory_order_relaxed);
        for (int j = 0; j < T->nbr[i]; j++) {
            branch *b = &T->br[i][j];
            vec want;
            expected(b, n, &want);
            size_t d = SIZE_MAX, m = want.n < b->got.n ? want.n : b->got.n;
            for (size_t k = 0; k < m && d == SIZE_MAX; k++)
                if (memcmp(&want.v[k], &b->got.v[k], IS) != 0)
                    d = k;
            if (d == SIZE_MAX && want.n != b->got.n)
                d = m;
            if (d != SIZE_MAX)
                FAIL("sink %s (%d terms): got %zu records, want %zu from %" PRIu64
                     " produced by %s; first difference at %zu",
                     b->name, b->nops, b->got.n, want.n, n, T->src[i].name, d);
            records_checked += b->got.n;
            free(want.v);
        }
    }
    if (!T->mz)
        return;
    uint64_t na = atomic_load_explicit(&T->src[T->nsrc].produced, memory_order_relaxed);
    uint64_t nb = atomic_load_explicit(&T->src[T->nsrc + 1].produced, memory_order_relaxed);
    /* Merge: all of both sources, each in order (the interleaving is free),
     * then the finish record. */
    const vec *g = &T->merge_sink.got;
    uint64_t next[2] = {0, 0}, bad = 0, fin = 0;
    for (size_t k = 0; k < g->n; k++) {
        item x = g->v[k];
        if (x.id == -2000) {
            fin++;
            bad += k + 1 != g->n;
            continue;
        }
        int s = (int)x.value - T->nsrc;
        if (s < 0 || s > 1 || x.id != (int64_t)next[s])
            bad++;
        else
            next[s]++;
    }
    if (bad || next[0] != na || next[1] != nb || fin != (T->merge_finish ? 1u : 0u))
        FAIL("merge sink: %zu records, want %" PRIu64 " + %" PRIu64 " (+%d finish); %" PRIu64
             " out of place",
             g->n, na, nb, (int)T->merge_finish, bad);
    /* Zip: the first min(na, nb) pairs. */
    g = &T->zip_sink.got;
    uint64_t want = na < nb ? na : nb;
    bad = 0;
    for (size_t k = 0; k < g->n; k++)
        bad += g->v[k].id != (int64_t)k || g->v[k].value != (int64_t)k * 1000003 + (int64_t)k;
    if (bad || g->n != want)
        FAIL("zip sink: %zu pairs, want %" PRIu64 " (%" PRIu64 " and %" PRIu64
             " produced); %" PRIu64 " wrong",
             g->n, want, na, nb, bad);
    records_checked += T->merge_sink.got.n + T->zip_sink.got.n;
}

/* ----------------------------------------------------------- watchdog */

static _Atomic double deadline; /* 0: disarmed; seq_cst (default), see `fired` */
static _Atomic bool watchdog_quit;

static void *watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watchdog_quit)) {
        double d = atomic_load(&deadline);
        if (d > 0 && stress_now() > d) {
            fprintf(stderr, "stress_stop_cancel: %s: HANG (no progress for 60 s)\n", desc);
            /* Statistics may be read while the pipeline runs. */
            if (T->p)
                weir_pipeline_print_stats(T->p, stderr);
            for (int i = 0; i < MAXSRC; i++)
                fprintf(stderr, "  source s%d: %s, %" PRIu64 " records, %" PRIu64 " calls%s\n", i,
                        T->src[i].blocking ? "blocking" : "pull",
                        atomic_load_explicit(&T->src[i].produced, memory_order_relaxed),
                        atomic_load_explicit(&T->src[i].h.calls, memory_order_relaxed),
                        T->src[i].h.trigger ? " (triggers)" : "");
            fflush(stderr);
            _Exit(1);
        }
        usleep(100 * 1000);
    }
    return NULL;
}

/* ---------------------------------------------------------------- main */

/* The default sweep is 1..4 workers; --workers W takes any count up to
 * stress_common.h's 256 (oversubscription is where races show): one
 * runtime per count in use. */
enum { SWEEPW = 4, MAXW = 256 };
static weir_runtime *rts[MAXW + 1];
static uint64_t trials[3], cancel_max_ms;
static uint64_t overloaded_waits, slow_triggers;

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t records_produced(void)
{
    uint64_t n = 0;
    for (int i = 0; i < MAXSRC; i++)
        n += atomic_load_explicit(&T->src[i].produced, memory_order_relaxed);
    return n;
}

/* A cancel trial whose cancel comes from a callback (a source's or a sink's
 * call `at`) that has not come within 5 s. Wait 20 s more and tell a starved
 * stage from a starved process: the process's CPU time over the wait says
 * whether the workers (and stage threads) ran at all. Returns join's result,
 * -ETIMEDOUT if the callback never came (the caller then cancels).
 *
 *   the callback ran, but has not reached `at` yet   slow (TSan, a loaded
 *                                                    machine): noted, no failure
 *   it did not run, and the process got >= 2 s of    starved: a stage runnable
 *   CPU (10 % of a core; thousands of activations    (or one waiting on a lost
 *   even under TSan)                                 wake-up) was not run while
 *                                                    the others were: failure
 *   it did not run, and the process got < 2 s        the machine is overloaded
 *                                                    (the threads were not
 *                                                    scheduled): noted, no failure
 *
 * The runtime bounds how long a queued stage waits while workers run (every
 * 32nd pass takes the injection queue, every 16th after it the oldest job of
 * the worker's own deque: runtime/worker.c, find_work), and a threads-mode
 * stage is an OS thread, so only the second case would be a bug. */
static int wait_for_trigger(void)
{
    double cpu0 = cpu_seconds(), t0 = stress_now();
    uint64_t calls0 = atomic_load_explicit(&T->trigger_calls, memory_order_relaxed);
    uint64_t recs0 = records_produced();
    int r = weir_pipeline_join_for(T->p, 20ull * 1000 * 1000 * 1000);
    if (r != -ETIMEDOUT || atomic_load(&T->fired))
        return r;
    double cpu = cpu_seconds() - cpu0, wall = stress_now() - t0;
    uint64_t calls = atomic_load_explicit(&T->trigger_calls, memory_order_relaxed) - calls0;
    uint64_t recs = records_produced() - recs0;
    if (calls > 0) {
        slow_triggers++;
        fprintf(stderr,
                "stress_stop_cancel: note: %s: the cancelling callback ran %" PRIu64
                " times in the last %.0f s (the process got %.1f s of CPU) and has not reached "
                "its call yet: slow, not starved; cancelling from here\n",
                desc, calls, wall, cpu);
    } else if (cpu >= 2.0) {
        FAIL("the cancelling callback did not run for 25 s although the process got %.1f s of "
             "CPU in the last %.0f s (sources produced %" PRIu64
             " records meanwhile): a stage starved:",
             cpu, wall, recs);
        weir_pipeline_print_stats(T->p, stderr);
    } else {
        overloaded_waits++;
        fprintf(stderr,
                "stress_stop_cancel: note: %s: the cancelling callback did not run for 25 s, "
                "but the process got only %.2f s of CPU in the last %.0f s (sources produced "
                "%" PRIu64 " records): the machine is overloaded, not a starved stage; "
                "cancelling from here\n",
                desc, cpu, wall, recs);
    }
    return -ETIMEDOUT;
}
static uint64_t dl_trials, dl_detected, int_trials;

/* ------------------------------------------------- deadlock trials */

typedef struct dl_src {
    int64_t n, next;
} dl_src;

static int dl_pull(void *state, void *out, size_t max, bool *end)
{
    dl_src *d = state;
    int64_t *o = out;
    size_t k = 0;
    while (k < max && d->next < d->n)
        o[k++] = d->next++;
    *end = d->next == d->n;
    return (int)k;
}

static int dl_blocking(void *state, weir_emit *e)
{
    dl_src *d = state;
    for (; d->next < d->n; d->next++) {
        int r = weir_emit_record(e, &d->next);
        if (r < 0)
            return r;
    }
    return 0;
}

static bool dl_even(void *st, const void *in)
{
    (void)st;
    int64_t x;
    memcpy(&x, in, sizeof x);
    return x % 2 == 0;
}

static int dl_zip(void *st, const void *const *in, size_t n, weir_emit *e)
{
    (void)st;
    (void)n;
    int64_t a, b;
    memcpy(&a, in[0], sizeof a);
    memcpy(&b, in[1], sizeof b);
    int64_t c = a + b;
    return weir_emit_record(e, &c);
}

typedef struct dl_sum {
    int64_t count, sum;
} dl_sum;

static int dl_sink(void *st, const void *in)
{
    dl_sum *s = st;
    int64_t x;
    memcpy(&x, in, sizeof x);
    s->count++;
    s->sum += x;
    return 0;
}

static void deadlock_trial(unsigned wmin, unsigned wmax)
{
    dl_src src = {.n = 1 + (int64_t)rndn(rndn(2) ? 200 : 20000), .next = 0};
    dl_sum got = {0, 0};
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = (weir_exec_mode)rndn(3);
    c.batch = 1 + rndn(300);
    c.capacity = 1u << rndn(11);
    c.print_stats = false;
    unsigned workers = wmin + rndn(wmax - wmin + 1);
    bool blocking = rndn(2);
    snprintf(desc, sizeof desc,
             "deadlock trial %" PRIu64 " (n %" PRId64 ", %s source, mode %s, batch %u, "
             "capacity %u, %u workers)",
             dl_trials, src.n, blocking ? "blocking" : "pull", weir_exec_mode_name(c.mode), c.batch,
             c.capacity, workers);
    atomic_store(&deadline, stress_now() + 60);
    weir_term *s = blocking ? weir_blocking_source("src", 8, dl_blocking, &src)
                            : weir_source("src", 8, dl_pull, &src);
    weir_term *t = WEIR_SEQ(s, WEIR_PAR(weir_filter("even", 8, dl_even, NULL), weir_id("all", 8)),
                            weir_zip("pairs", 8, dl_zip, NULL), weir_sink("sum", 8, dl_sink, &got));
    weir_pipeline *p;
    int r = weir_pipeline_create(rts[workers], t, &c, &p);
    if (r != 0) {
        FAIL("create: %d %s", r, weir_last_error());
        weir_term_destroy(t);
        return;
    }
    dl_trials++;
    r = weir_pipeline_start(p);
    if (r == 0)
        r = weir_pipeline_join_for(p, 30ull * 1000 * 1000 * 1000);
    /* The zip pairs the j-th even number 2j with the j-th record j. */
    int64_t pairs = (src.n + 1) / 2, want = 3 * (pairs * (pairs - 1) / 2);
    bool fits = src.n <= (int64_t)c.capacity;
    bool far = src.n > 8 * (int64_t)c.capacity + 8 * (int64_t)c.batch + 64;
    if (r == -ETIMEDOUT) {
        FAIL("join hung for 30 s (%s)", weir_pipeline_error(p));
        weir_pipeline_cancel(p);
        weir_pipeline_join(p);
    } else if (r == 0) {
        if (far)
            FAIL("completed although n is far beyond the capacity (%" PRId64 " pairs)", got.count);
        else if (got.count != pairs || got.sum != want)
            FAIL("completed with %" PRId64 " pairs summing to %" PRId64 ", want %" PRId64
                 " and %" PRId64,
                 got.count, got.sum, pairs, want);
    } else if (r == -EDEADLK) {
        dl_detected++;
        if (fits)
            FAIL("-EDEADLK although every record fits: %s", weir_pipeline_error(p));
        else if (strstr(weir_pipeline_error(p), "deadlocked") == NULL)
            FAIL("-EDEADLK with the message \"%s\"", weir_pipeline_error(p));
    } else {
        FAIL("join returned %d (%s)", r, weir_pipeline_error(p));
    }
    weir_pipeline_destroy(p);
    atomic_store(&deadline, 0.0);
}

/* ------------------------------------------------ interrupt trials */

typedef struct int_src {
    int fds[2];
    int64_t n;
    _Atomic int interrupts; /* seq_cst (default): test bookkeeping */
    _Atomic bool blocked;
} int_src;

static int int_blocking(void *state, weir_emit *e)
{
    int_src *s = state;
    for (int64_t i = 0; i < s->n; i++) {
        int r = weir_emit_record(e, &i);
        if (r < 0)
            return r;
    }
    atomic_store(&s->blocked, true);
    char ch;
    ssize_t k;
    do
        k = read(s->fds[0], &ch, 1); /* nobody writes: only the interrupt ends it */
    while (k < 0 && errno == EINTR);
    return weir_emit_stopping(e) ? -ECANCELED : -EIO;
}

static void int_wake(void *state)
{
    int_src *s = state;
    atomic_fetch_add(&s->interrupts, 1);
    close(s->fds[1]);
}

static void interrupt_trial(unsigned wmin, unsigned wmax)
{
    int_src src = {.n = (int64_t)rndn(3000)};
    if (pipe(src.fds) != 0) {
        FAIL("pipe failed");
        return;
    }
    atomic_init(&src.interrupts, 0);
    atomic_init(&src.blocked, false);
    dl_sum got = {0, 0};
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = (weir_exec_mode)rndn(3);
    c.batch = 1 + rndn(300);
    c.capacity = 1u << rndn(13);
    c.print_stats = false;
    unsigned workers = wmin + rndn(wmax - wmin + 1);
    int how = (int)rndn(3); /* stop, cancel, destroy */
    unsigned delay_us = rndn(2) ? 0 : rndn(2000);
    static const char *const hn[] = {"stop", "cancel", "destroy"};
    snprintf(desc, sizeof desc,
             "interrupt trial %" PRIu64 " (%s after %u us, n %" PRId64 ", mode %s, batch %u, "
             "capacity %u, %u workers)",
             int_trials, hn[how], delay_us, src.n, weir_exec_mode_name(c.mode), c.batch, c.capacity,
             workers);
    atomic_store(&deadline, stress_now() + 60);
    weir_term *s =
        weir_term_on_interrupt(weir_blocking_source("src", 8, int_blocking, &src), int_wake);
    weir_term *t = weir_seq2(s, weir_sink("sum", 8, dl_sink, &got));
    weir_pipeline *p;
    int r = weir_pipeline_create(rts[workers], t, &c, &p);
    if (r != 0) {
        FAIL("create: %d %s", r, weir_last_error());
        weir_term_destroy(t);
        close(src.fds[0]);
        close(src.fds[1]);
        return;
    }
    int_trials++;
    if (weir_pipeline_start(p) != 0)
        FAIL("start: %s", weir_last_error());
    if (delay_us)
        usleep(delay_us);
    if (how == 2) {
        weir_pipeline_destroy(p); /* cancels, interrupts, joins */
        p = NULL;
    } else {
        if (how == 0)
            weir_pipeline_stop(p);
        else
            weir_pipeline_cancel(p);
        r = weir_pipeline_join_for(p, 10ull * 1000 * 1000 * 1000);
        if (r == -ETIMEDOUT)
            FAIL("join hung for 10 s after the %s", hn[how]);
        else if (how == 0 && r != 0)
            FAIL("join after stop returned %d (%s)", r, weir_pipeline_error(p));
        else if (how == 0 && got.count > src.n)
            FAIL("the sink got %" PRId64 " of %" PRId64 " records", got.count, src.n);
        else if (how == 0 && atomic_load(&src.blocked) && got.count != src.n)
            FAIL("after the stop the sink got %" PRId64 " of the %" PRId64 " records emitted",
                 got.count, src.n);
        else if (how == 1 && r != -ECANCELED)
            FAIL("join after cancel returned %d (%s)", r, weir_pipeline_error(p));
    }
    if (atomic_load(&src.interrupts) != 1)
        FAIL("the interrupt function ran %d times", atomic_load(&src.interrupts));
    if (p)
        weir_pipeline_destroy(p);
    if (atomic_load(&src.interrupts) == 0)
        close(src.fds[1]);
    close(src.fds[0]);
    atomic_store(&deadline, 0.0);
}

static void one_trial(unsigned wmin, unsigned wmax)
{
    int type = (int)rndn(3);
    gen_trial(type);
    T->workers = wmin + rndn(wmax - wmin + 1);
    static const char *const tn[] = {"stop", "cancel", "error"};
    snprintf(desc, sizeof desc,
             "%s trial %" PRIu64
             " (how %d, fails '%s', mode %s, batch %u, capacity %u, %u workers, "
             "%d sources%s)",
             tn[type], trials[type], T->how, T->fail_name ? T->fail_name : "-",
             weir_exec_mode_name(T->cfg.mode), T->cfg.batch, T->cfg.capacity, T->workers, T->nsrc,
             T->mz ? " + merge/zip" : "");
    atomic_store(&deadline, stress_now() + 60);

    weir_term *t = build();
    int r = weir_pipeline_create(rts[T->workers], t, &T->cfg, &T->p);
    if (r != 0) {
        FAIL("create: %d %s", r, weir_terms_last_error());
        weir_term_destroy(t);
        free_trial();
        return;
    }
    r = weir_pipeline_start(T->p);
    if (r != 0)
        FAIL("start: %d %s", r, weir_terms_last_error());
    trials[type]++;

    if (type == T_STOP) {
        if (T->how == 0) {
            usleep(T->delay_us);
            weir_pipeline_stop(T->p);
        }
        r = weir_pipeline_join(T->p);
        if (r != 0)
            FAIL("join after stop returned %d (%s)", r, weir_pipeline_error(T->p));
        else
            check_stop();
    } else if (type == T_CANCEL) {
        double t0 = 0;
        if (T->how == 0 || T->how == 3) {
            usleep(T->delay_us);
            t0 = stress_now();
            if (T->how == 3) {
                /* destroy on a running pipeline cancels and joins it. */
                weir_pipeline_destroy(T->p);
                T->p = NULL;
            } else {
                weir_pipeline_cancel(T->p);
            }
        }
        if (T->p) {
            if (T->how != 0)
                t0 = stress_now(); /* the callback's cancel comes at some point */
            r = weir_pipeline_join_for(T->p, 5ull * 1000 * 1000 * 1000);
            /* A trigger behind filters needs many source records: under a
             * sanitizer on a loaded machine, give a callback that has not
             * fired yet more time before calling it starved. */
            if (r == -ETIMEDOUT && T->how != 0 && !atomic_load(&T->fired))
                r = wait_for_trigger();
            if (r == -ETIMEDOUT && (T->how == 0 || atomic_load(&T->fired))) {
                FAIL("join did not return within 5 s of the cancel");
            } else if (r == -ETIMEDOUT) {
                /* The callback that is to cancel has not come: reported (or
                 * noted) by wait_for_trigger(); cancel from here. */
                weir_pipeline_cancel(T->p);
                r = weir_pipeline_join(T->p); /* the watchdog bounds it */
            }
            if (r != -ECANCELED && r != -ETIMEDOUT)
                FAIL("join after cancel returned %d (%s)", r, weir_pipeline_error(T->p));
        }
        double ms = (stress_now() - t0) * 1000;
        if (T->how == 0 || T->how == 3) {
            if ((uint64_t)ms > cancel_max_ms)
                cancel_max_ms = (uint64_t)ms;
            if (ms > 5000)
                FAIL("cancel took %.0f ms", ms);
        }
    } else {
        if (T->race_cancel) {
            usleep(T->delay_us);
            weir_pipeline_cancel(T->p);
        }
        r = weir_pipeline_join(T->p);
        const char *msg = weir_pipeline_error(T->p);
        char want[64];
        snprintf(want, sizeof want, "term '%s': ", T->fail_name);
        if (r == -EIO) {
            if (strncmp(msg, want, strlen(want)) != 0)
                FAIL("join returned -EIO but the error reads \"%s\" (want \"%s...\")", msg, want);
        } else if (r == -ECANCELED && T->race_cancel) {
            if (strstr(msg, "cancel") == NULL)
                FAIL("join returned -ECANCELED but the error reads \"%s\"", msg);
        } else {
            FAIL("join returned %d (%s), want -EIO", r, msg);
        }
    }
    weir_pipeline_destroy(T->p);
    T->p = NULL;
    atomic_store(&deadline, 0.0);
    free_trial();
}

int main(int argc, char **argv)
{
    stress_opts o;
    int pr = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (pr)
        return pr;
    unsigned wmin = o.workers ? o.workers : 1, wmax = o.workers ? o.workers : SWEEPW;
    rng = hash((uint64_t)o.seed + 7) | 1;
    T = calloc(1, sizeof *T);
    if (!T)
        return 2;
    for (unsigned w = wmin; w <= wmax; w++) {
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.workers = w;
        cfg.affinity = WEIR_AFFINITY_NONE;
        cfg.print_stats = false;
        if (weir_runtime_create(&cfg, &rts[w]) != 0) {
            fprintf(stderr, "stress_stop_cancel: runtime: %s\n", weir_last_error());
            return 2;
        }
    }
    pthread_t wd;
    atomic_init(&deadline, 0.0);
    atomic_init(&watchdog_quit, false);
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0)
        return 2;
    double end = stress_now() + o.seconds;
    while (failures == 0 && stress_now() < end) {
        unsigned kind = rndn(8);
        if (kind == 0)
            deadlock_trial(wmin, wmax);
        else if (kind == 1)
            interrupt_trial(wmin, wmax);
        else
            one_trial(wmin, wmax);
    }
    atomic_store(&watchdog_quit, true);
    pthread_join(wd, NULL);
    for (unsigned w = wmin; w <= wmax; w++)
        weir_runtime_destroy(rts[w]);
    free(T);
    char extra[160] = "";
    if (overloaded_waits || slow_triggers)
        snprintf(extra, sizeof extra,
                 "; %" PRIu64 " cancelling callbacks late on an overloaded machine, %" PRIu64
                 " slow (noted, not failures)",
                 overloaded_waits, slow_triggers);
    printf("stress_stop_cancel: %" PRIu64 " stop trials (%" PRIu64 " records checked), %" PRIu64
           " cancel trials (slowest cancel-to-join %" PRIu64 " ms), %" PRIu64
           " error trials, %" PRIu64 " deadlock trials (%" PRIu64 " detected), %" PRIu64
           " interrupt trials, %" PRIu64 " failures (seed %lu, workers %u..%u)%s\n",
           trials[T_STOP], records_checked, trials[T_CANCEL], cancel_max_ms, trials[T_ERROR],
           dl_trials, dl_detected, int_trials, failures, o.seed, wmin, wmax, extra);
    return failures ? 1 : 0;
}
