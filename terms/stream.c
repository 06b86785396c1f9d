/*
 * weir terms — the bounded broadcast stream.
 *
 * One producer stage writes fixed-size records into a power-of-two ring;
 * each consumer owns a cursor. A record is written once whatever the number
 * of consumers, and is read in place (consumers get a pointer into the
 * ring), so the hot path neither allocates nor copies per consumer.
 *
 * Memory orders (what pairs with what):
 *   head   producer: store release (publish)  ->  consumer: load acquire
 *          (avail). Records below head are written before the consumer
 *          reads them.
 *   ended  producer: store release after the last publish  ->  consumer:
 *          load acquire *before* loading head, so ended == 1 implies the
 *          head it then reads is final.
 *   tail   consumer: store seq_cst after it has read the records (release
 *          part: its reads happen before the producer reuses the slots)  ->
 *          producer: load acquire in the space scan.
 *   waiting_on / tail (blocking handshake, a Dekker pattern, hence seq_cst
 *          on all four accesses): the producer stores waiting_on = i, then
 *          re-reads tail[i]; consumer i stores its tail, then reads
 *          waiting_on. In the single total order of seq_cst operations one
 *          of the two sees the other: either the producer sees the new tail
 *          and does not block, or the consumer sees the request and notifies
 *          the producer. No lost wake-up, no polling.
 *
 * Blocking scan. A blocked producer wants `want` free slots, i.e. every
 * attached cursor at or past target = head - cap + want. It scans the
 * cursors in order and parks on the first one below the target (p_scan
 * remembers where). Tails only grow and the target is fixed while the
 * producer waits (head does not move), so cursors before p_scan stay past
 * the target: a scan costs O(consumers) in total per episode however many
 * wake-ups it takes, which matters for a broadcast to 10 000 branches.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stream_place.h"

size_t weir__stream_ring_bytes(size_t size, uint64_t cap)
{
    size_t bytes;
    if (cap > SIZE_MAX || __builtin_mul_overflow((size_t)cap, size, &bytes) ||
        bytes > SIZE_MAX - WEIR_CACHELINE)
        return 0;
    return (bytes + WEIR_CACHELINE - 1) / WEIR_CACHELINE * WEIR_CACHELINE;
}

int weir__stream_init(weir__stream *s, const char *name, size_t size, uint64_t cap, unsigned ncons)
{
    size_t bytes = weir__stream_ring_bytes(size, cap);
    char *buf = bytes ? weir_aligned_alloc(WEIR_CACHELINE, bytes) : NULL;
    weir__cursor *cursors =
        weir_aligned_alloc(WEIR_CACHELINE, (size_t)ncons * sizeof(weir__cursor));
    struct weir__stage **consumers = weir_calloc(ncons, sizeof *consumers);
    uint32_t *slots = weir_calloc(ncons, sizeof *slots);
    if (!buf || !cursors || !consumers || !slots) {
        weir_free(buf);
        weir_free(cursors);
        weir_free(consumers);
        weir_free(slots);
        memset((void *)s, 0, sizeof *s);
        return -ENOMEM;
    }
    weir__stream_place(s, name, size, cap, ncons, buf, cursors, consumers, slots);
    return 0;
}

/* The ring is not zeroed: a slot is always written before it is published,
 * and untouched pages of a large ring then cost no memory. */
void weir__stream_place(weir__stream *s, const char *name, size_t size, uint64_t cap,
                        unsigned ncons, char *buf, weir__cursor *cursors,
                        struct weir__stage **consumers, uint32_t *slots)
{
    memset((void *)s, 0, sizeof *s);
    s->buf = buf;
    s->cursors = cursors;
    s->consumers = consumers;
    s->slots = slots;
    for (unsigned i = 0; i < ncons; i++) {
        atomic_init(&s->cursors[i].tail, 0);
        atomic_init(&s->cursors[i].bdone, 0);
        s->consumers[i] = NULL;
        s->slots[i] = WEIR__NOBODY;
    }
    atomic_init(&s->head, 0);
    atomic_init(&s->ended, 0);
    atomic_init(&s->waiting_on, WEIR__NOBODY);
    atomic_init(&s->max_depth, 0);
    atomic_init(&s->last_publish_ns, 0);
    atomic_init(&s->stall_mark, 0);
    atomic_init(&s->stalls, 0);
    s->stall_ns = 0;
    s->size = size;
    s->cap = cap;
    s->mask = cap - 1;
    s->ncons = ncons;
    s->name = name;
    s->p_free = cap;
    s->p_target = UINT64_MAX;
}

void weir__stream_deinit(weir__stream *s)
{
    weir__stream_free_var(s);
    weir_free(s->buf);
    weir_free(s->cursors);
    weir_free(s->consumers);
    weir_free(s->slots);
    s->buf = NULL;
    s->cursors = NULL;
    s->consumers = NULL;
    s->slots = NULL;
}

/*
 * Wait until every attached cursor is at or past `target` (a record
 * position <= p_head). Scans the cursors from the resume point p_scan (kept
 * while the target stays the same: tails only grow, so cursors before it are
 * still past it) and parks on the first one below the target. @return true
 * with *min a lower bound of the smallest tail (at most p_head) when every
 * cursor is past the target; false when the producer must wait (a consumer
 * has been asked, through waiting_on, to notify it).
 */
static bool weir__stream_scan(weir__stream *s, uint64_t target, uint64_t *min_out)
{
    const uint64_t head = s->p_head;
    if (target != s->p_target) {
        s->p_target = target;
        s->p_scan = 0;
    }
    uint64_t lo = UINT64_MAX;
    unsigned i;
    for (i = s->p_scan; i < s->ncons; i++) {
        /* acquire: pairs with the consumer's tail store in
         * weir__stream_advance(); its reads of the slots (and, var, of the
         * bytes) we may now reuse happen before our writes. */
        uint64_t t = atomic_load_explicit(&s->cursors[i].tail, memory_order_acquire);
        if (t < target) {
            /* seq_cst: the Dekker handshake with weir__stream_advance()
             * (store waiting_on, then re-read the tail). */
            atomic_store_explicit(&s->waiting_on, i, memory_order_seq_cst);
            t = atomic_load_explicit(&s->cursors[i].tail, memory_order_seq_cst);
            if (t < target) {
                s->p_scan = i;
                return false;
            }
            /* It moved meanwhile: withdraw the request. If the consumer took
             * it first we get one spurious notification, which is harmless. */
            uint32_t exp = i;
            atomic_compare_exchange_strong_explicit(&s->waiting_on, &exp, WEIR__NOBODY,
                                                    memory_order_relaxed, memory_order_relaxed);
        }
        if (t < lo)
            lo = t;
    }
    /* Cursors before the resume point were past the target when scanned,
     * and tails only grow. Detached cursors read as UINT64_MAX. */
    uint64_t min = lo;
    if (s->p_scan > 0 && target < min)
        min = target;
    if (min > head)
        min = head;
    s->p_scan = 0;
    s->p_target = UINT64_MAX;
    *min_out = min;
    return true;
}

/* Known free space from a lower bound of the smallest tail. */
static void weir__stream_note_min(weir__stream *s, uint64_t min)
{
    s->p_free = s->cap - (s->p_head - min);
    if (s->var) {
        if (min == s->p_head) {
            /* Nothing live: the next record may start at the byte ring's
             * beginning, whatever the position (so a record as large as the
             * ring always fits once the consumers have caught up). */
            s->p_bhead = (s->p_bhead + s->bmask) & ~s->bmask;
            s->p_bfree = s->bcap;
        } else {
            uint64_t from = atomic_load_explicit(&s->bpos[min & s->mask], memory_order_relaxed);
            s->p_bfree = s->bcap - (s->p_bhead - from);
        }
    }
}

bool weir__stream_space(weir__stream *s, uint32_t want)
{
    if (s->p_free > 0)
        return true;
    if (want > s->cap)
        want = (uint32_t)s->cap;
    /* p_free == 0 means head - (a lower bound of the min tail) == cap, so
     * head >= cap and the target does not underflow. */
    uint64_t min;
    if (!weir__stream_scan(s, s->p_head - s->cap + want, &min))
        return false;
    weir__stream_note_min(s, min);
    return s->p_free > 0;
}

/* ------------------------------------------------------ variable-size write */

int weir__stream_set_var(weir__stream *s, uint64_t bcap)
{
    s->bytes = weir_aligned_alloc(WEIR_CACHELINE, (size_t)bcap);
    s->bpos = weir_aligned_alloc(WEIR_CACHELINE, (size_t)s->cap * sizeof *s->bpos);
    if (!s->bytes || !s->bpos) {
        weir__stream_free_var(s);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < s->cap; i++)
        atomic_init(&s->bpos[i], 0);
    s->var = true;
    s->bcap = bcap;
    s->bmask = bcap - 1;
    s->p_bhead = 0;
    s->p_bfree = bcap;
    s->p_bytes = 0;
    atomic_init(&s->st_bytes, 0);
    atomic_init(&s->st_bhead, 0);
    atomic_init(&s->max_bdepth, 0);
    return 0;
}

void weir__stream_free_var(weir__stream *s)
{
    weir_free(s->bytes);
    weir_free((void *)s->bpos);
    s->bytes = NULL;
    s->bpos = NULL;
}

static inline uint64_t weir__pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* The byte region start of record t (p_head's: the byte head). */
static inline uint64_t weir__stream_bstart(const weir__stream *s, uint64_t t)
{
    if (t == s->p_head)
        return s->p_bhead;
    return atomic_load_explicit(&s->bpos[t & s->mask], memory_order_relaxed);
}

/*
 * Make `need` bytes free at the byte head (need <= bcap). First from the
 * tails as they are; when that is not enough, wait for the oldest record
 * whose consumption frees enough: the first t with p_bhead - bstart(t) <=
 * bcap - need (a binary search, bpos grows with t; t = p_head always does,
 * everything consumed). A little hysteresis (a quarter of the ring) keeps a
 * blocked producer from being woken per record.
 */
static bool weir__stream_bspace(weir__stream *s, uint64_t need)
{
    for (;;) {
        uint64_t min = s->p_head;
        for (unsigned i = 0; i < s->ncons; i++) {
            /* acquire: as in weir__stream_scan() */
            uint64_t t = atomic_load_explicit(&s->cursors[i].tail, memory_order_acquire);
            if (t < min)
                min = t;
        }
        weir__stream_note_min(s, min);
        uint64_t o = s->p_bhead & s->bmask;
        uint64_t skip = o + need > s->bcap && need > 0 ? s->bcap - o : 0;
        if (s->p_bfree >= need + skip)
            return true;
        uint64_t target = s->p_head;
        if (need + skip <= s->bcap) {
            uint64_t want = need + skip;
            if (want < s->bcap / 4)
                want = s->bcap / 4;
            uint64_t lo = min + 1, hi = s->p_head;
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                if (s->p_bhead - weir__stream_bstart(s, mid) <= s->bcap - want)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            target = lo;
        }
        /* else only an empty ring (rebased at p_head) will do: a trailing
         * run of empty records also starts at the byte head, so the search
         * would stop short of p_head */
        if (!weir__stream_scan(s, target, &min))
            return false; /* a consumer will notify the producer */
        /* every cursor is past the target now: look again (the next pass
         * finds the room, or a later target to wait for) */
    }
}

void *weir__stream_breserve(weir__stream *s, size_t len, uint32_t want, int *err)
{
    if (WEIR_UNLIKELY(len > s->bcap)) {
        *err = -EMSGSIZE;
        return NULL;
    }
    if (s->p_free == 0 && !weir__stream_space(s, want))
        return NULL;
    const uint64_t need = weir__pad8(len);
    uint64_t o = s->p_bhead & s->bmask;
    uint64_t skip = o + need > s->bcap && need > 0 ? s->bcap - o : 0;
    if (s->p_bfree < need + skip) {
        if (!weir__stream_bspace(s, need))
            return NULL;
        o = s->p_bhead & s->bmask;
        skip = o + need > s->bcap && need > 0 ? s->bcap - o : 0;
    }
    /* relaxed: producer-private bookkeeping, read by monitoring only */
    atomic_store_explicit(&s->bpos[s->p_head & s->mask], s->p_bhead, memory_order_relaxed);
    s->p_bhead += skip;
    s->p_bfree -= skip;
    return s->bytes + (s->p_bhead & s->bmask);
}

void weir__stream_bcommit(weir__stream *s, void *at, size_t len)
{
    weir_bytes *d = (weir_bytes *)(void *)(s->buf + (size_t)(s->p_head & s->mask) * s->size);
    d->data = at;
    d->len = len;
    uint64_t used = weir__pad8(len);
    s->p_bhead += used;
    s->p_bfree -= used;
    s->p_bytes += len;
    s->p_head++;
    s->p_free--;
}

int weir__stream_put_var(weir__stream *s, const weir_bytes *b, uint32_t want)
{
    int err = 0;
    void *at = weir__stream_breserve(s, b->len, want, &err);
    if (!at)
        return err;
    if (b->len)
        memcpy(at, b->data, b->len);
    weir__stream_bcommit(s, at, b->len);
    return 1;
}

size_t weir__stream_write(weir__stream *s, const char *src, size_t stride, size_t n, uint32_t want,
                          int *err)
{
    size_t done = 0;
    if (s->var) {
        for (; done < n; done++) {
            int r = weir__stream_put_var(s, (const weir_bytes *)(const void *)(src + done * stride),
                                         want);
            if (r <= 0) {
                if (r < 0)
                    *err = r;
                break;
            }
        }
        return done;
    }
    while (done < n) {
        if (s->p_free == 0 && !weir__stream_space(s, want))
            break;
        size_t k = weir__stream_wspan(s);
        if (k > n - done)
            k = n - done;
        char *dst = weir__stream_slot(s, s->p_head);
        if (stride == s->size)
            memcpy(dst, src + done * stride, k * s->size);
        else
            for (size_t j = 0; j < k; j++)
                memcpy(dst + j * s->size, src + (done + j) * stride, s->size);
        weir__stream_wcommit(s, k);
        done += k;
    }
    return done;
}

/*
 * The stall watch. A stream is *stalled* while its producer publishes
 * nothing for longer than the pipeline's starvation threshold although a
 * consumer has read everything (a source silent in its own I/O, a filter
 * dropping everything): its consumers are starved of input. A full stream
 * is backpressure, not a stall. Each silence is counted once in `stalls`
 * (an input starvation), by whoever sees it first: a monitoring reader
 * while it lasts (weir__stream_stalled), or the producer when it publishes
 * again. A silence is named by the last_publish_ns that began it; stamps
 * only grow, so stall_mark moves forward by CAS and each value is counted
 * by the one thread whose CAS installs it. relaxed throughout: monitoring
 * data, read with no other data depending on it.
 */
static bool weir__stream_drained(const weir__stream *s, uint64_t head)
{
    for (unsigned i = 0; i < s->ncons; i++) {
        uint64_t t =
            atomic_load_explicit(&((weir__stream *)s)->cursors[i].tail, memory_order_relaxed);
        if (t != WEIR__DETACHED && t >= head)
            return true;
    }
    return false;
}

static void weir__stream_note_stall(weir__stream *s, uint64_t since)
{
    uint64_t m = atomic_load_explicit(&s->stall_mark, memory_order_relaxed);
    while (m < since) {
        if (atomic_compare_exchange_weak_explicit(&s->stall_mark, &m, since, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_fetch_add_explicit(&s->stalls, 1, memory_order_relaxed);
            return;
        }
    }
}

/* Producer, at a publish after records [.., h_old): one clock read per
 * published batch, only when the pipeline watches (starvation_ns != 0). */
static void weir__stream_stamp(weir__stream *s, uint64_t h_old)
{
    uint64_t now = weir__terms_now_ns();
    uint64_t prev = atomic_load_explicit(&s->last_publish_ns, memory_order_relaxed);
    atomic_store_explicit(&s->last_publish_ns, now, memory_order_relaxed);
    if (now > prev && now - prev > s->stall_ns && weir__stream_drained(s, h_old))
        weir__stream_note_stall(s, prev);
}

bool weir__stream_stalled(weir__stream *s, uint64_t now)
{
    if (!s->stall_ns || atomic_load_explicit(&s->ended, memory_order_relaxed))
        return false;
    uint64_t last = atomic_load_explicit(&s->last_publish_ns, memory_order_relaxed);
    if (now <= last || now - last <= s->stall_ns)
        return false;
    if (!weir__stream_drained(s, atomic_load_explicit(&s->head, memory_order_relaxed)))
        return false;
    weir__stream_note_stall(s, last);
    return true;
}

bool weir__stream_publish(weir__stream *s)
{
    uint64_t h = s->p_head;
    /* relaxed: the producer is the only writer of head. */
    uint64_t h_old = atomic_load_explicit(&s->head, memory_order_relaxed);
    if (h == h_old)
        return false;
    /* release: pairs with the acquire in weir__stream_avail(); the records
     * below h are written before a consumer can see h. */
    atomic_store_explicit(&s->head, h, memory_order_release);
    if (s->stall_ns)
        weir__stream_stamp(s, h_old);
    uint64_t depth = s->cap - s->p_free; /* an upper bound: p_free is a lower bound */
    if (depth > atomic_load_explicit(&s->max_depth, memory_order_relaxed))
        atomic_store_explicit(&s->max_depth, depth, memory_order_relaxed);
    if (s->var) {
        /* relaxed: monitoring data */
        atomic_store_explicit(&s->st_bytes, s->p_bytes, memory_order_relaxed);
        atomic_store_explicit(&s->st_bhead, s->p_bhead, memory_order_relaxed);
        uint64_t bd = s->bcap - s->p_bfree;
        if (bd > atomic_load_explicit(&s->max_bdepth, memory_order_relaxed))
            atomic_store_explicit(&s->max_bdepth, bd, memory_order_relaxed);
    }
    return true;
}

void weir__stream_end(weir__stream *s)
{
    weir__stream_publish(s);
    /* release: pairs with the acquire load of ended in weir__stream_avail(),
     * which precedes its load of head, so the final head is seen. */
    atomic_store_explicit(&s->ended, 1, memory_order_release);
}

uint64_t weir__stream_avail(weir__stream *s, uint64_t tail, bool *at_end)
{
    /* acquire, and before head: pairs with the release in weir__stream_end(). */
    uint32_t e = atomic_load_explicit(&s->ended, memory_order_acquire);
    /* acquire: pairs with the release in weir__stream_publish(). */
    uint64_t h = atomic_load_explicit(&s->head, memory_order_acquire);
    *at_end = e && h == tail;
    return h - tail;
}

static void weir__stream_release_cursor(weir__stream *s, unsigned i, uint64_t tail, weir_worker *w)
{
    /* seq_cst: release for the producer's acquire scan, and the consumer
     * half of the Dekker handshake with weir__stream_space(). */
    atomic_store_explicit(&s->cursors[i].tail, tail, memory_order_seq_cst);
    /* seq_cst: see above; pairs with the producer's store of waiting_on. */
    if (atomic_load_explicit(&s->waiting_on, memory_order_seq_cst) == i) {
        uint32_t exp = i;
        /* relaxed: the notification below carries the ordering. */
        if (atomic_compare_exchange_strong_explicit(&s->waiting_on, &exp, WEIR__NOBODY,
                                                    memory_order_relaxed, memory_order_relaxed))
            weir__stage_notify(s->producer, w);
    }
}

void weir__stream_advance(weir__stream *s, unsigned i, uint64_t tail, weir_worker *w)
{
    weir__stream_release_cursor(s, i, tail, w);
}

void weir__stream_detach(weir__stream *s, unsigned i, weir_worker *w)
{
    if (s->barq) {
        /* seq_cst: as a bdone store (barrier.c); a waiting producer is
         * woken by the tail's release below */
        atomic_store_explicit(&s->cursors[i].bdone, UINT64_MAX, memory_order_seq_cst);
        if (atomic_exchange_explicit(&s->barq->waiting, 0, memory_order_seq_cst))
            weir__stage_notify(s->producer, w);
    }
    weir__stream_release_cursor(s, i, WEIR__DETACHED, w);
}

uint64_t weir__stream_depth(const weir__stream *s)
{
    /* relaxed: a monitoring estimate. */
    uint64_t h = atomic_load_explicit(&((weir__stream *)s)->head, memory_order_relaxed);
    uint64_t min = UINT64_MAX;
    for (unsigned i = 0; i < s->ncons; i++) {
        uint64_t t =
            atomic_load_explicit(&((weir__stream *)s)->cursors[i].tail, memory_order_relaxed);
        if (t < min)
            min = t;
    }
    return min >= h ? 0 : h - min;
}

uint64_t weir__stream_bdepth(const weir__stream *s)
{
    if (!s->var)
        return 0;
    weir__stream *m = (weir__stream *)s;
    /* relaxed: a monitoring estimate (the slot of a tail read late may have
     * been reused: clamp to the ring) */
    uint64_t h = atomic_load_explicit(&m->head, memory_order_relaxed);
    uint64_t bh = atomic_load_explicit(&m->st_bhead, memory_order_relaxed);
    uint64_t min = UINT64_MAX;
    for (unsigned i = 0; i < s->ncons; i++) {
        uint64_t t = atomic_load_explicit(&m->cursors[i].tail, memory_order_relaxed);
        if (t < min)
            min = t;
    }
    if (min >= h)
        return 0;
    uint64_t from = atomic_load_explicit(&m->bpos[min & s->mask], memory_order_relaxed);
    return bh > from ? (bh - from < s->bcap ? bh - from : s->bcap) : 0;
}
