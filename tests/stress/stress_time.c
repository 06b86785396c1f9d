/*
 * Stress of time in the term layer (issue 12): random pipelines with
 * delays (0..2 ms, fixed-size and WEIR_VARSIZE), windows (count and time,
 * tumbling and sliding), periodic and paced sources (a pull source that
 * waits with weir_source_wake_at()), idle timeouts (end and fail) and a
 * user term that buffers records and flushes them on a tick; one to three
 * of them at once on a runtime of 1..4 workers, each in a random execution
 * mode, each run to its end or stopped, cancelled or destroyed at a random
 * moment, or the runtime destroyed under them.
 *
 * Every pipeline is  source [-> stamp] -> chain -> sink, or ... -> chain ->
 * arrive -> (count sink | window -> windows sink): the stamp map turns
 * periodic records into the others' (a sequence number and the time the
 * source made it), the arrive map restamps them on their way to the window
 * (so a window's records show when they arrived, or just before). Checks:
 *   - always: the sink sees sequence numbers 0, 1, 2, ... (a prefix, in
 *     order, each once: delays and buffers keep the order), no more than
 *     the source made, and the variable-size records keep their bytes;
 *   - when join returned 0 (every record reached its sinks, a stop
 *     included): exactly the records the source made, unless an idle
 *     timeout ended the stream early; with no stop, none released before
 *     the sum of the chain's delays; count windows exactly the reference
 *     computed from the records that reached the window; time windows
 *     aligned to the slide, in increasing order, each record in exactly
 *     length/slide of them; periodic records never before their deadline;
 *   - an idle timeout that fails does so with -ETIMEDOUT naming its term.
 * A watchdog aborts when one iteration takes longer than 60 s.
 *
 * Five bugs it and test_terms_time found were fixed (d51b773 and after): a
 * join that never returned after the runtime's destroy, an idle timeout
 * that failed a normal end, a stop that dropped pending ticks, a buffer's
 * finish flushed into a delay fused after it (lost), a time window passed
 * again for each late record after a stop; all are exercised here.
 *
 * A buffer has a finish callback that flushes, except, at random, in a
 * pipeline that only a stop ends (an endless source): there the stop's
 * tick alone must release what it holds (only a delay's ticks are waited
 * for at a normal end of input, by design).
 *
 * One summary line; exit 1 on a broken invariant. Run it under
 * ThreadSanitizer.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"

#include "stress_common.h"

#define MS         UINT64_C(1000000)
#define US         UINT64_C(1000)
#define MAXP       3            /* pipelines an iteration */
#define MAXCHAIN   4            /* terms between stamp and the end */
#define WATCHDOG_S 60           /* seconds one iteration may take */
#define JOIN_MAX   (30000 * MS) /* a hang, not a slow box */

/* ---------------------------------------------------------------- random */

static uint64_t rng;

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

/* --------------------------------------------------------------- records */

typedef struct stamp {
    int64_t seq;
    uint64_t t; /* weir_now_ns() at the source */
} stamp;

/* A pull source of `n` stamps (0: until a stop), `per` a call, waiting
 * `gap` ns between calls with weir_source_wake_at(). */
typedef struct paced {
    uint64_t n, gap, per;
    uint64_t next, next_dl;
    uint64_t produced;
} paced;

static int paced_pull(void *state, void *out, size_t max, bool *end)
{
    paced *s = state;
    uint64_t now = weir_now_ns();
    if (s->gap && s->next_dl && now < s->next_dl) {
        weir_source_wake_at(s->next_dl);
        return 0;
    }
    stamp *o = out;
    size_t k = 0;
    while (k < max && k < s->per && (!s->n || s->next < s->n)) {
        o[k].seq = (int64_t)s->next++;
        o[k].t = now;
        k++;
    }
    s->produced += k;
    if (s->n && s->next >= s->n) {
        *end = true;
    } else if (s->gap) {
        s->next_dl = now + s->gap;
        weir_source_wake_at(s->next_dl);
    }
    return (int)k;
}

/* periodic record -> stamp; counts and checks what the source made */
typedef struct to_stamp {
    uint64_t n, bad, early;
} to_stamp;

static void to_stamp_map(void *state, const void *in, void *out)
{
    to_stamp *s = state;
    weir_periodic_rec r;
    memcpy(&r, in, sizeof r);
    if (r.seq != s->n)
        s->bad++;
    if (r.now_ns < r.deadline_ns || weir_now_ns() < r.deadline_ns)
        s->early++;
    s->n++;
    stamp o = {(int64_t)r.seq, r.now_ns};
    memcpy(out, &o, sizeof o);
}

/* stamp <-> variable-size record: 16 + seq % 40 bytes, the stamp then the
 * bytes (seq + j) & 0xff */
typedef struct to_var {
    unsigned char buf[64];
} to_var;

static size_t var_len(int64_t seq)
{
    return 16 + (size_t)(seq % 40);
}

static void to_var_map(void *state, const void *in, void *out)
{
    to_var *s = state;
    stamp r;
    memcpy(&r, in, sizeof r);
    memcpy(s->buf, &r, sizeof r);
    for (size_t j = 16; j < var_len(r.seq); j++)
        s->buf[j] = (unsigned char)((uint64_t)r.seq + j);
    weir_bytes b = {s->buf, var_len(r.seq)};
    memcpy(out, &b, sizeof b);
}

static void from_var_map(void *state, const void *in, void *out)
{
    _Atomic uint64_t *bad = state; /* the pipeline's `bad` */
    const weir_bytes *b = in;
    stamp r = {-1, 0};
    if (b->len >= 16) {
        memcpy(&r, b->data, sizeof r);
        const unsigned char *p = b->data;
        if (b->len != var_len(r.seq))
            atomic_fetch_add_explicit(bad, 1, memory_order_relaxed);
        for (size_t j = 16; j < b->len; j++)
            if (p[j] != (unsigned char)((uint64_t)r.seq + j)) {
                atomic_fetch_add_explicit(bad, 1, memory_order_relaxed);
                break;
            }
    } else {
        atomic_fetch_add_explicit(bad, 1, memory_order_relaxed);
    }
    memcpy(out, &r, sizeof r);
}

/* A user term: buffers up to 8 records, flushes them on a tick `age` after
 * the first, when full, and at the end (finish). */
typedef struct buffer {
    uint64_t age;
    stamp buf[8];
    unsigned n;
    uint64_t asked, early_ticks;
} buffer;

static int buffer_flush(buffer *b, weir_emit *e)
{
    unsigned n = b->n;
    b->n = 0;
    return n ? weir_emit_records(e, b->buf, n) : 0;
}

static int buffer_fn(void *state, const void *in, weir_emit *e)
{
    buffer *b = state;
    if (!b->n) {
        b->asked = weir_now_ns() + b->age;
        weir_emit_wake_at(e, b->asked);
    }
    memcpy(&b->buf[b->n++], in, sizeof(stamp));
    return b->n == 8 ? buffer_flush(b, e) : 0;
}

static int buffer_tick(void *state, uint64_t now, weir_emit *e)
{
    buffer *b = state;
    if (now != UINT64_MAX && (now < b->asked || weir_now_ns() < b->asked))
        b->early_ticks++;
    return buffer_flush(b, e);
}

static int buffer_finish(void *state, weir_emit *e)
{
    return buffer_flush(state, e);
}

/* The checking sink: a prefix of 0, 1, 2, ... each once. */
typedef struct check {
    int64_t next;
    uint64_t count, bad, early;
    uint64_t delay; /* the chain's total delay */
} check;

static int check_fn(void *state, const void *in)
{
    check *c = state;
    stamp r;
    memcpy(&r, in, sizeof r);
    if (r.seq != c->next)
        c->bad++;
    c->next = r.seq + 1;
    c->count++;
    if (weir_now_ns() - r.t < c->delay)
        c->early++;
    return 0;
}

/* What a window passes on. */
typedef struct winrec {
    uint64_t start, end, n;
    int64_t first, last;
    uint64_t contiguous, partial;
    uint64_t min_t, max_t; /* the records' stamps: before their arrival */
    uint64_t called_at;
} winrec;

static int win_fn(void *state, const void *recs, size_t n, const weir_window_info *info,
                  weir_emit *e)
{
    (void)state;
    const stamp *r = recs;
    winrec w = {
        info->start,   info->end,  info->n, n ? r[0].seq : 0, n ? r[n - 1].seq : -1, n == info->n,
        info->partial, UINT64_MAX, 0,       weir_now_ns()};
    for (size_t i = 0; i < n; i++) {
        if (r[i].seq != r[0].seq + (int64_t)i)
            w.contiguous = 0;
        if (r[i].t < w.min_t)
            w.min_t = r[i].t;
        if (r[i].t > w.max_t)
            w.max_t = r[i].t;
    }
    return weir_emit_record(e, &w);
}

static void arrive_map(void *state, const void *in, void *out)
{
    (void)state;
    stamp r;
    memcpy(&r, in, sizeof r);
    r.t = weir_now_ns();
    memcpy(out, &r, sizeof r);
}

/* ------------------------------------------------------------ a pipeline */

enum { SRC_PACED, SRC_PERIODIC };
enum { EL_DELAY, EL_VARDELAY, EL_IDLE_END, EL_IDLE_FAIL, EL_ID, EL_BUFFER, EL_N };
enum { ACT_END, ACT_STOP, ACT_CANCEL, ACT_DESTROY, ACT_N };

typedef struct plan {
    weir_pipeline *p;
    weir_exec_mode mode;
    int src_kind;
    paced src;
    uint64_t period, periodic_count;
    to_stamp conv;
    int nchain;
    int chain[MAXCHAIN];
    uint64_t chain_ns[MAXCHAIN]; /* delay / idle timeout / buffer age */
    to_var tv[MAXCHAIN];
    buffer buf[MAXCHAIN];
    bool buf_finish[MAXCHAIN];
    _Atomic uint64_t var_bad;
    bool window;
    weir_window_config wc;
    check before_window; /* the records reaching the window */
    weir_collector windows;
    check sink;
    int action;
    uint64_t act_at; /* ns after the start */
    bool acted;      /* the action was taken */
    bool destroyed;  /* weir_pipeline_destroy() taken as the action */
    int join;        /* join's result (1: not joined) */
    char desc[512];
} plan;

static bool has(const plan *pl, int el)
{
    for (int i = 0; i < pl->nchain; i++)
        if (pl->chain[i] == el)
            return true;
    return false;
}

static uint64_t chain_delay(const plan *pl)
{
    uint64_t d = 0;
    for (int i = 0; i < pl->nchain; i++)
        if (pl->chain[i] == EL_DELAY || pl->chain[i] == EL_VARDELAY)
            d += pl->chain_ns[i];
    return d;
}

static const char *const el_names[EL_N] = {"delay",     "var-delay", "idle-end",
                                           "idle-fail", "id",        "buffer"};
static const char *const act_names[ACT_N] = {"end", "stop", "cancel", "destroy"};

/* A random pipeline; `no_end`: one that is stopped, cancelled or destroyed
 * (not left to end by itself). */
static void plan_random(plan *pl, bool no_end)
{
    memset(pl, 0, sizeof *pl);
    pl->join = 1;
    pl->mode = (weir_exec_mode)below(3);
    pl->action = no_end ? ACT_STOP + (int)below(ACT_N - ACT_STOP) : (int)below(ACT_N);
    pl->act_at = below(20 * MS);
    bool endless = pl->action != ACT_END && below(2);
    pl->src_kind = below(4) ? SRC_PACED : SRC_PERIODIC;
    if (pl->src_kind == SRC_PACED) {
        pl->src.n = endless ? 0 : 1 + below(3000);
        pl->src.per = 1 + below(64);
        pl->src.gap = below(3) ? below(200 * US) : 0;
    } else {
        pl->period = 100 * US + below(400 * US);
        pl->periodic_count = endless ? 0 : 1 + below(60);
    }
    pl->nchain = (int)below(MAXCHAIN + 1);
    for (int i = 0; i < pl->nchain; i++) {
        pl->chain[i] = (int)below(EL_N);
        switch (pl->chain[i]) {
        case EL_DELAY:
        case EL_VARDELAY:
            pl->chain_ns[i] = below(2 * MS + 1);
            break;
        case EL_IDLE_END:
        case EL_IDLE_FAIL:
            pl->chain_ns[i] = 1 * MS + below(20 * MS);
            break;
        case EL_BUFFER:
            pl->chain_ns[i] = below(2 * MS + 1);
            pl->buf_finish[i] = !(endless && pl->action == ACT_STOP) || below(2);
            break;
        default:
            break;
        }
    }
    pl->window = below(3) == 0;
    if (pl->window) {
        if (below(2)) {
            pl->wc.kind = WEIR_WINDOW_COUNT;
            pl->wc.length = 1 + below(20);
            pl->wc.slide = below(2) ? 0 : 1 + below(pl->wc.length);
        } else {
            /* the length a multiple of the slide: length/slide windows a record */
            uint64_t slide = 250 * US + below(750 * US);
            pl->wc.kind = WEIR_WINDOW_TIME;
            pl->wc.length = slide * (1 + below(4));
            pl->wc.slide = below(2) ? 0 : slide;
            if (!pl->wc.slide)
                pl->wc.length = slide;
        }
    }
    int o = snprintf(pl->desc, sizeof pl->desc, "%s %s", weir_exec_mode_name(pl->mode),
                     pl->src_kind == SRC_PACED ? "paced" : "periodic");
    if (pl->src_kind == SRC_PACED)
        o += snprintf(pl->desc + o, sizeof pl->desc - (size_t)o,
                      "(n=%" PRIu64 " per=%" PRIu64 " gap=%" PRIu64 "us)", pl->src.n, pl->src.per,
                      pl->src.gap / US);
    else
        o += snprintf(pl->desc + o, sizeof pl->desc - (size_t)o,
                      "(period=%" PRIu64 "us count=%" PRIu64 ")", pl->period / US,
                      pl->periodic_count);
    for (int i = 0; i < pl->nchain; i++)
        o += snprintf(pl->desc + o, sizeof pl->desc - (size_t)o, " -> %s(%" PRIu64 "us)",
                      el_names[pl->chain[i]], pl->chain_ns[i] / US);
    if (pl->window)
        o += snprintf(pl->desc + o, sizeof pl->desc - (size_t)o,
                      " -> %s window(length=%" PRIu64 " slide=%" PRIu64 ")",
                      pl->wc.kind == WEIR_WINDOW_COUNT ? "count" : "time", pl->wc.length,
                      pl->wc.slide);
    snprintf(pl->desc + o, sizeof pl->desc - (size_t)o, ", %s at %" PRIu64 "us",
             act_names[pl->action], pl->act_at / US);
}

static weir_term *plan_build(plan *pl)
{
    weir_term *t[4 + 3 * MAXCHAIN];
    size_t n = 0;
    if (pl->src_kind == SRC_PACED) {
        t[n++] = weir_source("src", sizeof(stamp), paced_pull, &pl->src);
    } else {
        t[n++] = weir_periodic_source("src", pl->period, pl->periodic_count);
        t[n++] =
            weir_map("stamp", sizeof(weir_periodic_rec), sizeof(stamp), to_stamp_map, &pl->conv);
    }
    for (int i = 0; i < pl->nchain; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s%d", el_names[pl->chain[i]], i);
        switch (pl->chain[i]) {
        case EL_DELAY:
            t[n++] = weir_delay(name, sizeof(stamp), pl->chain_ns[i]);
            break;
        case EL_VARDELAY:
            t[n++] = weir_map(NULL, sizeof(stamp), WEIR_VARSIZE, to_var_map, &pl->tv[i]);
            t[n++] = weir_delay(name, WEIR_VARSIZE, pl->chain_ns[i]);
            t[n++] = weir_map(NULL, WEIR_VARSIZE, sizeof(stamp), from_var_map, &pl->var_bad);
            break;
        case EL_IDLE_END:
        case EL_IDLE_FAIL:
            t[n++] =
                weir_idle_timeout(name, sizeof(stamp), pl->chain_ns[i],
                                  pl->chain[i] == EL_IDLE_END ? WEIR_IDLE_END : WEIR_IDLE_FAIL);
            break;
        case EL_ID:
            t[n++] = weir_id(name, sizeof(stamp));
            break;
        case EL_BUFFER:
            pl->buf[i].age = pl->chain_ns[i];
            t[n] = weir_term_on_tick(
                weir_function(name, sizeof(stamp), sizeof(stamp), buffer_fn, &pl->buf[i]),
                buffer_tick);
            if (pl->buf_finish[i])
                t[n] = weir_term_on_finish(t[n], buffer_finish);
            n++;
            break;
        }
    }
    if (pl->window) {
        weir_collector_init(&pl->windows, sizeof(winrec));
        /* the records' stamps become the time they reach the window, or
         * just before: a lower bound of the window's own stamp */
        t[n++] = weir_map("arrive", sizeof(stamp), sizeof(stamp), arrive_map, NULL);
        t[n++] = weir_sink("count", sizeof(stamp), check_fn, &pl->before_window);
        /* the sink above ends that branch: the window reads the same stream */
        t[n - 1] = weir_par2(t[n - 1], weir_seq2(weir_window("win", sizeof(stamp), sizeof(winrec),
                                                             &pl->wc, win_fn, NULL),
                                                 weir_collect("windows", &pl->windows)));
    } else {
        pl->sink.delay = chain_delay(pl);
        t[n++] = weir_sink("sink", sizeof(stamp), check_fn, &pl->sink);
    }
    return weir_seq(n, t);
}

/* ------------------------------------------------------------- verdicts */

static int failures;
static uint64_t records_checked, windows_checked, idle_failed;
static uint64_t n_pipelines, n_exact, n_acts[ACT_N], n_rt_destroy;
static unsigned long seed;
static uint64_t iteration;

#define FAIL(pl, ...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "stress_time: FAIL seed %lu iteration %" PRIu64 ": %s (join %d): ", seed,  \
                iteration, (pl)->desc, (pl)->join);                                                \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        failures++;                                                                                \
    } while (0)

static void check_windows(plan *pl, bool exact)
{
    const winrec *w = pl->windows.data;
    const uint64_t N = pl->before_window.count;
    const uint64_t slide = pl->wc.slide ? pl->wc.slide : pl->wc.length;
    windows_checked += pl->windows.count;
    for (size_t i = 0; i < pl->windows.count; i++) {
        if (!w[i].contiguous || w[i].n == 0 || w[i].last - w[i].first + 1 != (int64_t)w[i].n ||
            w[i].first < 0 || (exact && (uint64_t)w[i].last >= N)) {
            /* (the count sink and the window read the stream side by side:
             * after a cancel the window may have read further) */
            FAIL(pl, "window %zu: records %" PRId64 "..%" PRId64 " (n %" PRIu64 ") of %" PRIu64, i,
                 w[i].first, w[i].last, w[i].n, N);
            return;
        }
    }
    if (!exact)
        return;
    if (pl->wc.kind == WEIR_WINDOW_COUNT) {
        const uint64_t L = pl->wc.length;
        const bool tumbling = slide == L;
        size_t want = (size_t)(N / slide) + (N % slide ? 1 : 0);
        if (pl->windows.count != want) {
            FAIL(pl, "%zu count windows over %" PRIu64 " records, want %zu", pl->windows.count, N,
                 want);
            return;
        }
        for (size_t i = 0; i < want; i++) {
            uint64_t end = i < N / slide ? (i + 1) * slide : N;
            uint64_t start = i < N / slide ? (end > L ? end - L : 0)
                             : tumbling    ? N - N % L
                             : N > L       ? N - L
                                           : 0;
            if (w[i].start != start || w[i].end != end || (uint64_t)w[i].first != start ||
                w[i].n != end - start) {
                FAIL(pl,
                     "count window %zu: [%" PRIu64 ", %" PRIu64 ") n %" PRIu64 ", want [%" PRIu64
                     ", %" PRIu64 ")",
                     i, w[i].start, w[i].end, w[i].n, start, end);
                return;
            }
        }
        return;
    }
    /* time windows: aligned, increasing, each record in length/slide */
    unsigned *in = calloc(N ? N : 1, sizeof *in);
    if (!in) {
        FAIL(pl, "out of memory");
        return;
    }
    for (size_t i = 0; i < pl->windows.count; i++) {
        if (w[i].end % slide || w[i].end - w[i].start != pl->wc.length ||
            (i && w[i].end <= w[i - 1].end)) {
            const winrec *v = i ? &w[i - 1] : &w[i];
            FAIL(pl,
                 "time window %zu: [%" PRIu64 ", %" PRIu64 ") records %" PRId64 "..%" PRId64
                 " stamped end-%" PRId64 "..end-%" PRId64 " passed at end+%" PRId64
                 " partial %d, after [%" PRIu64 ", %" PRIu64 ") records %" PRId64 "..%" PRId64
                 " stamped end-%" PRId64 "..end-%" PRId64 " passed at end+%" PRId64 " partial %d",
                 i, w[i].start, w[i].end, w[i].first, w[i].last, (int64_t)(w[i].end - w[i].min_t),
                 (int64_t)(w[i].end - w[i].max_t), (int64_t)(w[i].called_at - w[i].end),
                 (int)w[i].partial, v->start, v->end, v->first, v->last,
                 (int64_t)(v->end - v->min_t), (int64_t)(v->end - v->max_t),
                 (int64_t)(v->called_at - v->end), (int)v->partial);
            free(in);
            return;
        }
        for (int64_t r = w[i].first; r <= w[i].last; r++)
            in[r]++;
    }
    const unsigned per = (unsigned)(pl->wc.length / slide);
    for (uint64_t r = 0; r < N; r++)
        if (in[r] != per) {
            FAIL(pl, "record %" PRIu64 " of %" PRIu64 " in %u time windows, want %u", r, N, in[r],
                 per);
            break;
        }
    free(in);
}

static void plan_check(plan *pl)
{
    const bool idle_end = has(pl, EL_IDLE_END);
    const bool idle_fail = has(pl, EL_IDLE_FAIL);
    const uint64_t made = pl->src_kind == SRC_PACED ? pl->src.produced : pl->conv.n;
    const check *c = pl->window ? &pl->before_window : &pl->sink;
    records_checked += c->count;
    if (atomic_load(&pl->var_bad))
        FAIL(pl, "%" PRIu64 " variable-size records changed", atomic_load(&pl->var_bad));
    if (c->bad)
        FAIL(pl, "%" PRIu64 " records out of order, twice or missing in the middle", c->bad);
    if (c->count > made)
        FAIL(pl, "%" PRIu64 " records delivered, %" PRIu64 " made", c->count, made);
    if (pl->src_kind == SRC_PERIODIC && (pl->conv.bad || pl->conv.early))
        FAIL(pl, "periodic records: %" PRIu64 " out of sequence, %" PRIu64 " early", pl->conv.bad,
             pl->conv.early);
    for (int i = 0; i < pl->nchain; i++)
        if (pl->buf[i].early_ticks)
            FAIL(pl, "buffer %d: %" PRIu64 " ticks before their deadline", i,
                 pl->buf[i].early_ticks);
    if (pl->join == -ETIMEDOUT && !pl->destroyed) {
        const char *m = weir_pipeline_error(pl->p);
        if (!idle_fail || !strstr(m, "idle-fail"))
            FAIL(pl, "join -ETIMEDOUT: '%s'", m);
        idle_failed++;
    }
    const bool exact = pl->join == 0 && !pl->destroyed;
    if (exact) {
        n_exact++;
        if (!idle_end && c->count != made)
            FAIL(pl, "join 0 but %" PRIu64 " of %" PRIu64 " records delivered", c->count, made);
        if (!(pl->acted && pl->action == ACT_STOP) && c->early)
            FAIL(pl, "%" PRIu64 " records before their delay (%" PRIu64 " us)", c->early,
                 chain_delay(pl) / US);
        if (pl->src_kind == SRC_PERIODIC && pl->periodic_count && !pl->acted && !idle_end &&
            made != pl->periodic_count)
            FAIL(pl, "%" PRIu64 " periodic records of %" PRIu64, made, pl->periodic_count);
    }
    if (pl->window)
        check_windows(pl, exact);
}

/* -------------------------------------------------------------- watchdog */

static _Atomic double deadline; /* 0: disarmed */
static _Atomic bool watchdog_quit;
static pthread_mutex_t desc_mu = PTHREAD_MUTEX_INITIALIZER;
static char cur_desc[MAXP * 600];

static void *watchdog(void *arg)
{
    (void)arg;
    while (!atomic_load(&watchdog_quit)) {
        double d = atomic_load(&deadline);
        if (d > 0 && stress_now() > d) {
            pthread_mutex_lock(&desc_mu);
            fprintf(stderr,
                    "stress_time: HANG: seed %lu iteration %" PRIu64
                    " made no progress for %d s:\n%s",
                    seed, iteration, WATCHDOG_S, cur_desc);
            pthread_mutex_unlock(&desc_mu);
            fflush(stderr);
            abort();
        }
        usleep(100 * 1000);
    }
    return NULL;
}

/* ------------------------------------------------------------------ main */

static void sleep_until(uint64_t t)
{
    uint64_t now = weir_now_ns();
    if (t > now)
        usleep((useconds_t)((t - now) / 1000));
}

/* One iteration: 1..MAXP pipelines on a runtime of `workers`. */
static int one_iteration(unsigned workers)
{
    weir_config rc;
    weir_config_init(&rc);
    rc.workers = workers;
    rc.affinity = WEIR_AFFINITY_NONE;
    rc.print_stats = false;
    weir_runtime *rt;
    if (weir_runtime_create(&rc, &rt) != 0) {
        fprintf(stderr, "stress_time: runtime: %s\n", weir_last_error());
        return -1;
    }
    static plan plans[MAXP];
    const int np = 1 + (int)below(MAXP);
    /* now and then the runtime is destroyed under the pipelines */
    const bool rt_destroy = below(8) == 0;
    const uint64_t rt_destroy_at = below(20 * MS);
    pthread_mutex_lock(&desc_mu);
    cur_desc[0] = 0;
    for (int i = 0; i < np; i++) {
        plan_random(&plans[i], false);
        size_t o = strlen(cur_desc);
        snprintf(cur_desc + o, sizeof cur_desc - o, "  [%d] %s%s\n", i, plans[i].desc,
                 rt_destroy ? " (runtime destroyed)" : "");
    }
    pthread_mutex_unlock(&desc_mu);
    for (int i = 0; i < np; i++) {
        plan *pl = &plans[i];
        weir_term *t = plan_build(pl);
        weir_pipeline_config c;
        weir_pipeline_config_init(&c);
        c.mode = pl->mode;
        c.print_stats = false;
        c.batch = 1 + (unsigned)below(64);
        c.capacity = 4u << below(8);
        c.byte_capacity = 4096;
        if (weir_pipeline_create(rt, t, &c, &pl->p) != 0) {
            fprintf(stderr, "stress_time: create %s: %s\n", pl->desc, weir_last_error());
            weir_term_destroy(t);
            return -1;
        }
    }
    uint64_t t0 = weir_now_ns();
    for (int i = 0; i < np; i++)
        if (weir_pipeline_start(plans[i].p) != 0) {
            fprintf(stderr, "stress_time: start %s: %s\n", plans[i].desc, weir_last_error());
            return -1;
        }
    n_pipelines += (uint64_t)np;
    /* the actions in time order */
    for (;;) {
        int next = -1;
        for (int i = 0; i < np; i++)
            if (plans[i].action != ACT_END && !plans[i].acted &&
                (next < 0 || plans[i].act_at < plans[next].act_at))
                next = i;
        if (rt_destroy && (next < 0 || rt_destroy_at < plans[next].act_at) && rt) {
            sleep_until(t0 + rt_destroy_at);
            weir_runtime_destroy(rt);
            rt = NULL;
            n_rt_destroy++;
        }
        if (next < 0)
            break;
        plan *pl = &plans[next];
        sleep_until(t0 + pl->act_at);
        pl->acted = true;
        n_acts[pl->action]++;
        switch (pl->action) {
        case ACT_STOP:
            if (weir_pipeline_stop(pl->p) != 0)
                FAIL(pl, "stop refused");
            break;
        case ACT_CANCEL:
            if (weir_pipeline_cancel(pl->p) != 0)
                FAIL(pl, "cancel refused");
            break;
        case ACT_DESTROY:
            weir_pipeline_destroy(pl->p);
            pl->destroyed = true;
            break;
        }
    }
    for (int i = 0; i < np; i++) {
        plan *pl = &plans[i];
        if (pl->action == ACT_END)
            n_acts[ACT_END]++;
        if (pl->destroyed)
            continue;
        pl->join = weir_pipeline_join_for(pl->p, JOIN_MAX);
        int want_ok = pl->join == 0 || pl->join == -ETIMEDOUT ||
                      (pl->join == -ECANCELED && pl->action == ACT_CANCEL) ||
                      (pl->join == -ESHUTDOWN && rt_destroy);
        if (!want_ok)
            FAIL(pl, "join %d (%s)", pl->join, weir_pipeline_error(pl->p));
    }
    for (int i = 0; i < np; i++) {
        plan *pl = &plans[i];
        plan_check(pl);
        if (!pl->destroyed)
            weir_pipeline_destroy(pl->p);
        if (pl->window)
            weir_collector_deinit(&pl->windows);
    }
    if (rt)
        weir_runtime_destroy(rt);
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
    pthread_t wd;
    atomic_init(&watchdog_quit, false);
    atomic_init(&deadline, 0.0);
    if (pthread_create(&wd, NULL, watchdog, NULL) != 0) {
        fprintf(stderr, "stress_time: cannot start the watchdog\n");
        return 1;
    }
    const double end = stress_now() + o.seconds;
    while (stress_now() < end && !failures) {
        atomic_store(&deadline, stress_now() + WATCHDOG_S);
        unsigned workers = o.workers ? o.workers : 1 + (unsigned)below(4);
        if (one_iteration(workers) != 0) {
            failures++;
            break;
        }
        iteration++;
    }
    atomic_store(&deadline, 0.0);
    atomic_store(&watchdog_quit, true);
    pthread_join(wd, NULL);
    printf("stress_time: %s seed=%lu iterations=%" PRIu64 " pipelines=%" PRIu64 " (end %" PRIu64
           ", stop %" PRIu64 ", cancel %" PRIu64 ", destroy %" PRIu64 "; runtime destroyed %" PRIu64
           "x) exact=%" PRIu64 " records=%" PRIu64 " windows=%" PRIu64 " idle_failed=%" PRIu64 "\n",
           failures ? "FAIL" : "OK", seed, iteration, n_pipelines, n_acts[ACT_END],
           n_acts[ACT_STOP], n_acts[ACT_CANCEL], n_acts[ACT_DESTROY], n_rt_destroy, n_exact,
           records_checked, windows_checked, idle_failed);
    return failures ? 1 : 0;
}
