/*
 * weir terms — time: stages that wake at a deadline, and the built-ins on
 * top (delay, periodic source, windows, idle timeout).
 *
 * A term asks to run again at a deadline (weir_emit_wake_at() from a
 * function term with a tick callback, weir_source_wake_at() from a pull
 * source). The request is the node's `wake_at`; at the end of an activation
 * the stage arms one wake-up for the earliest request of its nodes
 * (weir__wake_arm): in the pool, a runtime timer (include/weir/timer.h) whose
 * job notifies the stage, so waiting holds no worker; on a thread of its own
 * (threads mode, hybrid sources), a timed wait of that thread. When the
 * stage runs at or after a node's deadline it calls the node's tick
 * callback (weir__run_ticks), whose emits go down the fused chain as any.
 *
 * The pool's wake-up (weir__wake): one timer and one job per stage, armed
 * at most once at a time. `pending` says a timer is armed or fired with its
 * job not started yet; the activation (one at a time) is the only arming
 * thread, the job the only clearing one.
 *   pending  set by the activation before weir_submit_at (relaxed: the
 *            timer's arm/fire hand-off orders it with the job); cleared by
 *            the job first thing, release; the activation's acquire load
 *            pairs with it: seeing false, the job has started, so the job
 *            and timer may be armed again (the timer API's rule).
 *   tokens   an armed wake-up holds a watcher (the pipeline is not freed
 *            until its job has run: relaxed increment at the arm, release
 *            decrement at the end of the job, as exec.c's idle path) and a
 *            `busy` token (a stage waiting for its timer is not deadlocked:
 *            the deadlock watch of exec.c counts it busy until the job has
 *            notified it). A cancel that wins returns both.
 *   earlier  a request earlier than the armed deadline cancels and re-arms;
 *            a later one leaves the armed timer: its activation asks again.
 *   end      the stage's end cancels an armed wake-up (weir__wake_stop); one
 *            that already fired runs its job, which finds the stage DONE
 *            (the notify is ignored) and returns the tokens.
 *   destroy  the timer is run_on_drop: a runtime destroyed while the stage
 *            waits for it runs the job on the destroying thread after the
 *            workers stopped; its notify cannot submit, so the stage runs
 *            there, sees the runtime stopping and fails the pipeline with
 *            -ESHUTDOWN (exec.c): join returns. A cancel that finds the
 *            timer dropped leaves the tokens to that job.
 *
 * Stop cuts waits short: while the pipeline stops, every pending tick runs
 * at once with now = UINT64_MAX ("the end of time": a delay releases what
 * it holds, a window closes), and the finish callbacks follow. Cancel drops
 * what is pending. At the end of the input a stage with ticks still pending
 * waits for them before its finish callbacks run (a delay releases its last
 * records after their delay).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct weir__wake {
    weir_timer timer;
    weir_job job;
    _Atomic bool pending;
    uint64_t armed; /* the deadline armed (activation-private) */
    weir__stage *s;
} weir__wake;

static inline bool weir__time_stopping(const weir_pipeline *p)
{
    /* relaxed: as in stage.c */
    return atomic_load_explicit(&((weir_pipeline *)p)->stopping, memory_order_relaxed);
}

static void weir__wake_job(weir_worker *w, weir_job *job)
{
    weir__wake *k = job->arg;
    weir__stage *s = k->s;
    weir_pipeline *p = s->p;
    /* release: pairs with the acquire load in weir__wake_arm() */
    atomic_store_explicit(&k->pending, false, memory_order_release);
    weir__stage_notify(s, w);
    weir__stage_unbusy(s, w); /* the arm's busy token, after the notify */
    /* release: our last access to the pipeline (see exec.c) */
    atomic_fetch_sub_explicit(&p->watchers, 1, memory_order_release);
}

/* Give back an armed wake-up's tokens (a cancel that won, or a timer the
 * runtime's destroy dropped). The calling activation holds a busy token of
 * its own, so `busy` cannot reach 0 here: relaxed. */
static void weir__wake_release(weir__wake *k, weir_pipeline *p)
{
    atomic_store_explicit(&k->pending, false, memory_order_relaxed);
    atomic_fetch_sub_explicit(&p->busy, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&p->watchers, 1, memory_order_release);
}

int weir__wake_arm(weir__stage *s, uint64_t deadline)
{
    weir_pipeline *p = s->p;
    if (s->thread) {
        s->thread->deadline = deadline; /* a timed wait (exec_threads.c) */
        return 0;
    }
    weir__wake *k = s->wake;
    if (!k) {
        k = weir_calloc(1, sizeof *k);
        if (!k)
            return -ENOMEM;
        weir_timer_init(&k->timer);
        /* a runtime destroyed while the stage waits for its timer must still
         * wake it: the job then finds the runtime stopping and fails the
         * pipeline with -ESHUTDOWN (exec.c), so its join returns */
        weir_timer_run_on_drop(&k->timer);
        atomic_init(&k->pending, false);
        k->s = s;
        s->wake = k;
    }
    /* acquire: pairs with the job's release store */
    if (atomic_load_explicit(&k->pending, memory_order_acquire)) {
        if (k->armed <= deadline)
            return 0; /* it fires first; that activation asks again */
        int r = weir_timer_cancel(p->rt, &k->timer);
        if (r != 0)
            return 0; /* fired (-EALREADY), or dropped by the runtime's
                         destroy (-ESHUTDOWN, run_on_drop): its job runs */
        /* cancelled: its tokens are ours to reuse */
    } else {
        /* relaxed: RMWs by a running activation (see the top) */
        atomic_fetch_add_explicit(&p->watchers, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->busy, 1, memory_order_relaxed);
        atomic_store_explicit(&k->pending, true, memory_order_relaxed);
    }
    weir_job_init(&k->job, weir__wake_job, k, 0);
    k->armed = deadline;
    int r = weir_submit_at(p->rt, &k->job, deadline, &k->timer);
    if (r < 0)
        weir__wake_release(k, p);
    return r;
}

void weir__wake_stop(weir__stage *s)
{
    weir__wake *k = s->wake;
    if (!k || !atomic_load_explicit(&k->pending, memory_order_acquire))
        return;
    /* fired or dropped (run_on_drop): the job runs and returns the tokens */
    if (weir_timer_cancel(s->p->rt, &k->timer) == 0)
        weir__wake_release(k, s->p);
}

void weir__wake_free(weir__stage *s)
{
    weir_free(s->wake);
    s->wake = NULL;
}

/* The earliest wake-up its nodes asked for (0: none). */
uint64_t weir__stage_wake(const weir__stage *s)
{
    uint64_t m = 0;
    for (unsigned i = 0; i < s->nnodes; i++) {
        uint64_t d = s->nodes[i].wake_at;
        if (d && (!m || d < m))
            m = d;
    }
    return m;
}

bool weir__stage_wake_waits_before(const weir__stage *s, unsigned i)
{
    for (unsigned j = 0; j < i; j++)
        if (s->nodes[j].wake_at && s->nodes[j].term->tick_waits)
            return true;
    return false;
}

bool weir__stage_wake_waits(const weir__stage *s)
{
    return weir__stage_wake_waits_before(s, s->nnodes);
}

int weir__run_ticks(weir__stage *s)
{
    uint64_t m = weir__stage_wake(s);
    if (!m)
        return 0;
    uint64_t now = weir__terms_now_ns();
    if (!weir__time_stopping(s->p) && now < m)
        return 0;
    int ended = 0;
    for (unsigned i = 0; i < s->nnodes && !s->err; i++) {
        weir__node *n = &s->nodes[i];
        /* per node: a tick may stop the pipeline, and the later ones then
         * release what they hold */
        const uint64_t at = weir__time_stopping(s->p) ? UINT64_MAX : now;
        if (!n->wake_at || n->wake_at > at)
            continue;
        n->wake_at = 0;
        if (!n->term->tick)
            continue; /* a pull source: its next call is the tick */
        int r = n->term->tick(n->state, at, &n->emit);
        if (r == WEIR__TICK_END) {
            ended = 1; /* weir_idle_timeout: end the output */
        } else if (r < 0) {
            weir__note_err(s, i, r);
        }
    }
    return ended;
}

WEIR_API int weir_emit_wake_at(weir_emit *e, uint64_t deadline_ns)
{
    weir__node *n = (weir__node *)(void *)e;
    if (!n->term->tick)
        return weir_emit_fail(e, -EINVAL,
                              "weir_emit_wake_at: term has no tick callback (weir_term_on_tick)");
    n->wake_at = deadline_ns ? deadline_ns : 1;
    return 0;
}

WEIR_API int weir_source_wake_at(uint64_t deadline_ns)
{
    weir__stage *s = weir__current_stage;
    if (!s || s->head != WEIR__H_PULL)
        return weir__terms_error(-EINVAL, "weir_source_wake_at: not called from a pull source's "
                                          "callback");
    s->nodes[0].wake_at = deadline_ns ? deadline_ns : 1;
    return 0;
}

WEIR_API weir_term *weir_term_on_tick(weir_term *t, weir_tick_fn fn)
{
    if (!t)
        return NULL;
    if (t->owner != WEIR__FREE) {
        weir__terms_error(-EBUSY, "weir_term_on_tick: term '%s' is already composed", t->name);
        return NULL;
    }
    if (t->kind != WEIR__K_FUNCTION || !fn) {
        weir__terms_error(-EINVAL,
                          "weir_term_on_tick: %s '%s' %s (a tick emits: function terms only)",
                          t->kind_name, t->name, fn ? "cannot tick" : "gets a NULL tick");
        weir_term_destroy(t);
        return NULL;
    }
    t->tick = fn;
    return t;
}

/* ------------------------------------------------------------------ delay */

/* A FIFO of records with their release times: a byte buffer of entries
 * {deadline, length, bytes (8-aligned)}, compacted when half is consumed. */
typedef struct weir__fifo {
    char *buf;
    size_t head, tail, cap;
    size_t n;
} weir__fifo;

static int weir__fifo_push(weir__fifo *q, uint64_t deadline, const void *rec, size_t len)
{
    size_t need = 16 + (len + 7) / 8 * 8;
    if (q->cap - q->tail < need) {
        if (q->head > 0) {
            memmove(q->buf, q->buf + q->head, q->tail - q->head);
            q->tail -= q->head;
            q->head = 0;
        }
        if (q->cap - q->tail < need) {
            size_t cap = q->cap ? q->cap : 4096;
            while (cap - q->tail < need)
                cap *= 2;
            char *nb = weir_realloc(q->buf, cap);
            if (!nb)
                return -ENOMEM;
            q->buf = nb;
            q->cap = cap;
        }
    }
    uint64_t h[2] = {deadline, len};
    memcpy(q->buf + q->tail, h, 16);
    if (len)
        memcpy(q->buf + q->tail + 16, rec, len);
    q->tail += need;
    q->n++;
    return 0;
}

/* The oldest entry, or NULL. */
static const char *weir__fifo_peek(const weir__fifo *q, uint64_t *deadline, size_t *len)
{
    if (q->head == q->tail)
        return NULL;
    uint64_t h[2];
    memcpy(h, q->buf + q->head, 16);
    *deadline = h[0];
    *len = (size_t)h[1];
    return q->buf + q->head + 16;
}

static void weir__fifo_pop(weir__fifo *q, size_t len)
{
    q->head += 16 + (len + 7) / 8 * 8;
    q->n--;
    if (q->head == q->tail)
        q->head = q->tail = 0;
}

typedef struct weir__delay {
    uint64_t delay_ns;
    size_t size; /* 0: variable-size */
    weir__fifo q;
} weir__delay;

static int weir__delay_release(weir__delay *d, uint64_t now, weir_emit *e)
{
    uint64_t dl;
    size_t len;
    const char *rec;
    while ((rec = weir__fifo_peek(&d->q, &dl, &len)) && dl <= now) {
        int r = d->size ? weir_emit_record(e, rec) : weir_emit_bytes(e, rec, len);
        weir__fifo_pop(&d->q, len);
        if (r < 0)
            return r;
    }
    if (rec)
        weir_emit_wake_at(e, dl);
    return 0;
}

static int weir__delay_fn(void *state, const void *in, weir_emit *e)
{
    weir__delay *d = state;
    uint64_t now = weir__terms_now_ns();
    const void *p = in;
    size_t len = d->size;
    if (!d->size) {
        const weir_bytes *b = in;
        p = b->data;
        len = b->len;
    }
    uint64_t dl = now + d->delay_ns < now ? UINT64_MAX : now + d->delay_ns;
    if (weir__fifo_push(&d->q, dl, p, len) < 0)
        return weir_emit_fail(e, -ENOMEM, "out of memory for the delayed records");
    /* the oldest first: release what is due (also under a stop) */
    /* a stop (not a cancel: cancelled records are dropped) releases all */
    const weir_pipeline *pl = ((const weir__node *)(const void *)e)->stage->p;
    bool stop = weir__time_stopping(pl) &&
                !atomic_load_explicit(&((weir_pipeline *)pl)->cancelled, memory_order_relaxed);
    return weir__delay_release(d, stop ? UINT64_MAX : now, e);
}

static int weir__delay_tick(void *state, uint64_t now, weir_emit *e)
{
    return weir__delay_release(state, now, e);
}

static void weir__delay_free(void *state)
{
    weir__delay *d = state;
    weir_free(d->q.buf);
    weir_free(d);
}

WEIR_API weir_term *weir_delay(const char *name, size_t size, uint64_t delay_ns)
{
    if (size == 0) {
        weir__terms_error(-EINVAL, "delay '%s': record size 0", name ? name : "(unnamed)");
        return NULL;
    }
    weir__delay *d = weir_calloc(1, sizeof *d);
    if (!d) {
        weir__terms_error(-ENOMEM, "delay: out of memory");
        return NULL;
    }
    d->delay_ns = delay_ns;
    d->size = size == WEIR_VARSIZE ? 0 : size;
    weir_term *t = weir_function(name, size, size, weir__delay_fn, d);
    if (!t) {
        weir_free(d);
        return NULL;
    }
    weir__term_set_kind(t, name, "delay");
    t->tick = weir__delay_tick;
    t->tick_waits = true; /* the last records go out after their delay */
    return weir_term_on_free(t, weir__delay_free);
}

/* -------------------------------------------------------- periodic source */

typedef struct weir__periodic {
    uint64_t period, count;
    uint64_t next_dl, seq;
} weir__periodic;

static int weir__periodic_pull(void *state, void *out, size_t max, bool *end)
{
    weir__periodic *ps = state;
    uint64_t now = weir__terms_now_ns();
    if (ps->next_dl == 0)
        ps->next_dl = now + ps->period; /* the first record one period after start */
    weir_periodic_rec *o = out;
    size_t k = 0;
    while (k < max && ps->next_dl <= now && (!ps->count || ps->seq < ps->count)) {
        o[k].seq = ps->seq++;
        o[k].deadline_ns = ps->next_dl;
        o[k].now_ns = now;
        k++;
        ps->next_dl += ps->period;
    }
    if (ps->count && ps->seq >= ps->count)
        *end = true;
    else if (k == 0)
        weir_source_wake_at(ps->next_dl);
    return (int)k;
}

WEIR_API weir_term *weir_periodic_source(const char *name, uint64_t period_ns, uint64_t count)
{
    if (period_ns == 0) {
        weir__terms_error(-EINVAL, "periodic source '%s': period 0", name ? name : "(unnamed)");
        return NULL;
    }
    weir__periodic *ps = weir_calloc(1, sizeof *ps);
    if (!ps) {
        weir__terms_error(-ENOMEM, "periodic source: out of memory");
        return NULL;
    }
    ps->period = period_ns;
    ps->count = count;
    weir_term *t = weir_source(name, sizeof(weir_periodic_rec), weir__periodic_pull, ps);
    if (!t) {
        weir_free(ps);
        return NULL;
    }
    weir__term_set_kind(t, name, "periodic source");
    return weir_term_on_free(t, weir_free);
}

/* ---------------------------------------------------------------- windows */

typedef struct weir__window {
    weir_window_config cfg;
    size_t size;
    weir_window_fn fn;
    void *state;
    /* the records of the open windows, oldest first: count windows keep the
     * last `length` records, time windows those of the last `length` ns */
    char *recs;
    uint64_t *ts;
    size_t n, cap;
    uint64_t seen;     /* records so far (count windows) */
    uint64_t next_end; /* time windows: the end of the next window to close */
    bool any;          /* a record since the last window closed */
} weir__window;

static int weir__win_reserve(weir__window *w, size_t n)
{
    if (w->cap >= n)
        return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n)
        cap *= 2;
    char *nr = weir_realloc(w->recs, cap * w->size);
    if (!nr)
        return -ENOMEM;
    w->recs = nr;
    uint64_t *nt = weir_realloc(w->ts, cap * sizeof *nt);
    if (!nt)
        return -ENOMEM;
    w->ts = nt;
    w->cap = cap;
    return 0;
}

static void weir__win_drop(weir__window *w, size_t k)
{
    if (k == 0)
        return;
    memmove(w->recs, w->recs + k * w->size, (w->n - k) * w->size);
    memmove(w->ts, w->ts + k, (w->n - k) * sizeof *w->ts);
    w->n -= k;
}

/* Time windows: close every window that ends at or before `now`. */
static int weir__win_close_time(weir__window *w, uint64_t now, weir_emit *e)
{
    const uint64_t len = w->cfg.length, slide = w->cfg.slide ? w->cfg.slide : w->cfg.length;
    while (w->next_end && w->next_end <= now) {
        uint64_t end = w->next_end, start = end > len ? end - len : 0;
        /* records in [start, end): the buffer is in arrival order */
        size_t a = 0;
        while (a < w->n && w->ts[a] < start)
            a++;
        size_t b = a;
        while (b < w->n && w->ts[b] < end)
            b++;
        if (b > a) {
            const bool eot = now == UINT64_MAX; /* end of input, or a stop */
            weir_window_info info = {start, end, b - a, eot && end > weir__terms_now_ns()};
            int r = w->fn(w->state, w->recs + a * w->size, b - a, &info, e);
            if (r < 0)
                return r;
        }
        /* nothing older than the next window's start is needed again */
        uint64_t next_start = end + slide > len ? end + slide - len : 0;
        size_t drop = 0;
        while (drop < w->n && w->ts[drop] < next_start)
            drop++;
        weir__win_drop(w, drop);
        w->next_end = w->n ? end + slide : 0;
        if (w->n && w->ts[0] >= w->next_end) {
            /* skip the empty windows up to the first record's */
            uint64_t k = (w->ts[0] - w->next_end) / slide + 1;
            w->next_end += k * slide;
        }
    }
    if (w->next_end && now != UINT64_MAX)
        weir_emit_wake_at(e, w->next_end);
    return 0;
}

static int weir__window_fn(void *state, const void *in, weir_emit *e)
{
    weir__window *w = state;
    if (weir__win_reserve(w, w->n + 1) < 0)
        return weir_emit_fail(e, -ENOMEM, "out of memory for the window's records");
    if (w->cfg.kind == WEIR_WINDOW_COUNT) {
        memcpy(w->recs + w->n * w->size, in, w->size);
        w->ts[w->n++] = 0;
        w->seen++;
        const uint64_t len = w->cfg.length, slide = w->cfg.slide ? w->cfg.slide : len;
        if (w->n > len)
            weir__win_drop(w, w->n - len);
        if (w->seen % slide == 0) {
            weir_window_info info = {w->seen - w->n, w->seen, w->n, false};
            int r = w->fn(w->state, w->recs, w->n, &info, e);
            if (r < 0)
                return r;
            if (slide >= len)
                w->n = 0; /* tumbling: nothing is kept */
        }
        return 0;
    }
    uint64_t now = weir__terms_now_ns();
    /* windows that ended before this record arrived close first */
    int r = weir__win_close_time(w, now, e);
    if (r < 0)
        return r;
    memcpy(w->recs + w->n * w->size, in, w->size);
    w->ts[w->n++] = now;
    if (!w->next_end) {
        /* the first window that holds this record ends at the next multiple
         * of the slide after it (windows are aligned to the clock) */
        uint64_t slide = w->cfg.slide ? w->cfg.slide : w->cfg.length;
        w->next_end = (now / slide + 1) * slide;
        weir_emit_wake_at(e, w->next_end);
    }
    return 0;
}

static int weir__window_tick(void *state, uint64_t now, weir_emit *e)
{
    /* a stop: the input drains and the finish passes the open windows,
     * partial, once (closing them here would pass a window again for every
     * record still on its way) */
    if (now == UINT64_MAX)
        return 0;
    return weir__win_close_time(state, now, e);
}

/* End of input: the windows still open are passed as they are (partial). */
static int weir__window_finish(void *state, weir_emit *e)
{
    weir__window *w = state;
    if (w->cfg.kind == WEIR_WINDOW_TIME) {
        int r = weir__win_close_time(w, UINT64_MAX, e);
        if (r < 0)
            return r;
        return 0;
    }
    const uint64_t len = w->cfg.length, slide = w->cfg.slide ? w->cfg.slide : len;
    if (w->n && w->seen % slide != 0) {
        weir_window_info info = {w->seen - w->n, w->seen, w->n, true};
        return w->fn(w->state, w->recs, w->n, &info, e);
    }
    return 0;
}

static void weir__window_free(void *state)
{
    weir__window *w = state;
    if (w->cfg.free_state)
        w->cfg.free_state(w->state);
    weir_free(w->recs);
    weir_free(w->ts);
    weir_free(w);
}

WEIR_API weir_term *weir_window(const char *name, size_t in_size, size_t out_size,
                                const weir_window_config *cfg, weir_window_fn fn, void *state)
{
    const char *nm = name ? name : "(unnamed)";
    if (!cfg || !fn) {
        weir__terms_error(-EINVAL, "window '%s': NULL config or callback", nm);
        return NULL;
    }
    if (in_size == 0 || in_size == WEIR_VARSIZE) {
        weir__terms_error(-EINVAL,
                          "window '%s': needs fixed-size input records (got %s); a window keeps "
                          "copies of its records",
                          nm, in_size ? "WEIR_VARSIZE" : "size 0");
        return NULL;
    }
    if ((cfg->kind != WEIR_WINDOW_COUNT && cfg->kind != WEIR_WINDOW_TIME) || cfg->length == 0 ||
        cfg->slide > cfg->length) {
        weir__terms_error(-EINVAL,
                          "window '%s': bad config (kind %d, length %llu, slide %llu): length > "
                          "0, slide 0 (tumbling) or 1..length (sliding)",
                          nm, (int)cfg->kind, (unsigned long long)cfg->length,
                          (unsigned long long)cfg->slide);
        return NULL;
    }
    if (cfg->kind == WEIR_WINDOW_COUNT && cfg->length > (UINT64_C(1) << 32)) {
        weir__terms_error(-EINVAL, "window '%s': a count window of more than 2^32 records", nm);
        return NULL;
    }
    weir__window *w = weir_calloc(1, sizeof *w);
    if (!w) {
        weir__terms_error(-ENOMEM, "window: out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    w->size = in_size;
    w->fn = fn;
    w->state = state;
    weir_term *t = weir_function(name, in_size, out_size, weir__window_fn, w);
    if (!t) {
        weir_free(w);
        return NULL;
    }
    weir__term_set_kind(t, name, "window");
    t->finish = weir__window_finish;
    if (cfg->kind == WEIR_WINDOW_TIME)
        t->tick = weir__window_tick;
    return weir_term_on_free(t, weir__window_free);
}

/* ----------------------------------------------------------- idle timeout */

typedef struct weir__idle {
    uint64_t timeout;
    weir_idle_action action;
    size_t size; /* 0: variable-size */
    uint64_t last;
    const char *name;
} weir__idle;

static int weir__idle_fn(void *state, const void *in, weir_emit *e)
{
    weir__idle *x = state;
    uint64_t now = weir__terms_now_ns();
    if (!x->last)
        weir_emit_wake_at(e, now + x->timeout); /* the first record arms it */
    x->last = now;
    return weir_emit_record(e, in);
}

static int weir__idle_tick(void *state, uint64_t now, weir_emit *e)
{
    weir__idle *x = state;
    if (now == UINT64_MAX)
        return 0; /* a stop: not an idle stream */
    if (now - x->last < x->timeout) {
        weir_emit_wake_at(e, x->last + x->timeout);
        return 0;
    }
    if (x->action == WEIR_IDLE_FAIL)
        return weir_emit_fail(e, -ETIMEDOUT, "no record for %llu ms (idle timeout)",
                              (unsigned long long)(x->timeout / 1000000));
    return WEIR__TICK_END;
}

WEIR_API weir_term *weir_idle_timeout(const char *name, size_t size, uint64_t timeout_ns,
                                      weir_idle_action action)
{
    const char *nm = name ? name : "(unnamed)";
    if (size == 0 || timeout_ns == 0 || (action != WEIR_IDLE_END && action != WEIR_IDLE_FAIL)) {
        weir__terms_error(-EINVAL,
                          "idle timeout '%s': record size, timeout and action must be set "
                          "(WEIR_IDLE_END or WEIR_IDLE_FAIL)",
                          nm);
        return NULL;
    }
    weir__idle *x = weir_calloc(1, sizeof *x);
    if (!x) {
        weir__terms_error(-ENOMEM, "idle timeout: out of memory");
        return NULL;
    }
    x->timeout = timeout_ns;
    x->action = action;
    x->size = size == WEIR_VARSIZE ? 0 : size;
    weir_term *t = weir_function(name, size, size, weir__idle_fn, x);
    if (!t) {
        weir_free(x);
        return NULL;
    }
    weir__term_set_kind(t, name, "idle timeout");
    t->tick = weir__idle_tick;
    return weir_term_on_free(t, weir_free);
}
