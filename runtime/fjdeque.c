/*
 * The fork-join frame deque: a split deque (private part / public part) whose
 * public part thieves steal Chase–Lev style, with frames executed in place.
 *
 * Layout. A worker's frames form one stack, indexed 0, 1, 2, ... from the
 * bottom. Frames live in segments that never move (segment k holds
 * c0 * 2^k frames), so a thief can run a stolen frame in place and write its
 * result there while the owner keeps pushing above it. Indices split the
 * stack in three parts:
 *
 *     [0, top)        stolen (or already synced) frames
 *     [top, split)    public: thieves may take the frame at `top`
 *     [split, bottom) private: only the owner knows they exist
 *
 * `top` and `split` are packed in one 64-bit word, `fj.ts` (top in the low
 * half). Every change to that word is a single atomic operation — thieves
 * CAS it (top -> top + 1), the owner publishes with fetch_add on split and
 * withdraws with fetch_sub on split — so the word is a linearizable record of
 * "which frames are public and unclaimed", and exactly-once follows from its
 * modification order (docs/design.md, "The frame deque", walks through every
 * operation pair). `bottom` is not stored: it is the owner's `sp` register.
 *
 * The fast path (include/weir/task.h) never touches `ts`: a spawn writes a
 * private frame with plain stores; a sync pops it and, seeing `pub == 0`,
 * calls the task inline. Only frames the owner chose to publish (because a
 * thief or a parking worker zeroed `limit`) pay an atomic RMW when synced.
 *
 * | operation            | caller       | concurrently with                   |
 * |----------------------|--------------|-------------------------------------|
 * | spawn / sync (inline)| owner only   | weir__fj_steal                      |
 * | weir__fj_spawn_slow  | owner only   | weir__fj_steal                      |
 * |   (grow; publish())  |              |                                     |
 * | weir__fj_shrink      | owner only   | weir__fj_steal                      |
 * | weir__fj_sync_public | owner only   | weir__fj_steal                      |
 * | weir__fj_steal       | other worker | everything above, other steals      |
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "tracing.h"

#define LO(x)          ((uint32_t)(x))
#define HI(x)          ((uint32_t)((x) >> 32))
#define PACK(top, spl) (((uint64_t)(spl) << 32) | (uint64_t)(top))

static inline uint32_t seg_base(const weir_worker *w, unsigned k)
{
    return ((1u << k) - 1u) << w->seg_shift;
}

static inline uint32_t seg_size(const weir_worker *w, unsigned k)
{
    return 1u << (k + w->seg_shift);
}

/* The frame at index `idx`; any thread, once the frame is known to exist. */
static inline weir_frame *frame_at(const weir_worker *w, uint32_t idx)
{
    uint32_t q = (idx >> w->seg_shift) + 1u;
    unsigned k = 31u - (unsigned)__builtin_clz(q);
    return w->segs[k] + (idx - seg_base(w, k));
}

/* Owner: the index of a stack pointer in the current segment (sp may be one
 * past its end). */
static inline uint32_t index_of(const weir_worker *w, const weir_frame *sp)
{
    return seg_base(w, w->cur_seg) + (uint32_t)(sp - w->fj.seg_begin);
}

/* Frames in segments 0..k together, c0 * (2^(k+1) - 1), in 64 bits: the
 * bound check below must not wrap (or shift by 32) before it can fail.
 * With k < WEIR__MAX_SEGS and seg_shift <= 20 (config.c caps deque_initial
 * at 2^20) it stays below 2^53. */
static inline uint64_t frames_upto(const weir_worker *w, unsigned k)
{
    return (((uint64_t)2 << k) - 1u) << w->seg_shift;
}

/* @return 0, -EOVERFLOW when segment k would take the frame count past what
 *         a 32-bit index (and `bottom` one past the last frame) can hold,
 *         or -ENOMEM. */
static int alloc_segment(weir_worker *w, unsigned k)
{
    if (k >= WEIR__MAX_SEGS || frames_upto(w, k) > UINT32_MAX)
        return -EOVERFLOW;
    size_t bytes = (size_t)seg_size(w, k) * sizeof(weir_frame);
    weir_frame *s = weir__numa_alloc(&w->rt->topo, bytes, w->numa_os);
    if (!s)
        return -ENOMEM;
    w->segs[k] = s;
    return 0;
}

int weir__fj_init(weir_worker *w, unsigned initial)
{
    w->seg_shift = (unsigned)__builtin_ctz(initial);
    int err = alloc_segment(w, 0);
    if (err)
        return err;
    w->cur_seg = 0;
    w->fj.seg_begin = w->segs[0];
    w->fj.seg_end = w->segs[0] + seg_size(w, 0);
    w->split = 0;
    atomic_init(&w->fj.ts, PACK(0, 0));
    atomic_init(&w->fj.limit, (uintptr_t)w->fj.seg_end);
    atomic_init(&w->fj.spawns, 0);
    return 0;
}

void weir__fj_destroy(weir_worker *w)
{
    for (unsigned k = 0; k < WEIR__MAX_SEGS; k++) {
        if (w->segs[k])
            weir__numa_free(&w->rt->topo, w->segs[k], (size_t)seg_size(w, k) * sizeof(weir_frame));
        w->segs[k] = NULL;
    }
}

/* Owner: make `limit` the current segment end again, keeping a publication
 * request (limit == 0) that arrived meanwhile. The exchange is the only way
 * to tell "a thief just asked" from "nobody asked" without losing either.
 * @return true if a request was pending. */
static bool reset_limit(weir_worker *w, bool keep_request)
{
    uintptr_t old =
        atomic_exchange_explicit(&w->fj.limit, (uintptr_t)w->fj.seg_end, memory_order_relaxed);
    if (old == 0 && keep_request)
        atomic_store_explicit(&w->fj.limit, 0, memory_order_relaxed);
    return old == 0;
}

void weir__fj_request(weir_worker *v)
{
    /* Read first so that idle thieves do not keep bouncing the line. relaxed:
     * a hint; the publication it triggers carries the data (release). */
    if (atomic_load_explicit(&v->fj.limit, memory_order_relaxed) != 0)
        atomic_store_explicit(&v->fj.limit, 0, memory_order_relaxed);
}

/* Publish the older half of the private frames below `sp`. */
static bool publish(weir_worker *w, weir_frame *sp)
{
    uint32_t bottom = index_of(w, sp);
    uint32_t priv = bottom - w->split;
    if (priv == 0)
        return false;
    uint32_t k = (priv + 1) / 2; /* the older half: the largest subtrees */
    for (uint32_t i = w->split; i < w->split + k; i++)
        frame_at(w, i)->run |= WEIR__PUB;
    /* release: publishes the frames [split, split+k) (run, args, thief == 0);
     * pairs with the acquire of a thief's successful CAS in weir__fj_steal(),
     * which reads this value or a later one in its release sequence (thieves'
     * CASes are RMWs and extend it). */
    atomic_fetch_add_explicit(&w->fj.ts, (uint64_t)k << 32, memory_order_release);
    w->split += k;
    WEIR__INC(w, publishes, 1);
    weir__notify(w->rt);
    return true;
}

weir_frame *weir__fj_spawn_slow(weir_worker *w, weir_frame *sp)
{
    /* Two reasons to be here: a publication request (limit == 0) and/or the
     * end of the segment (sp == seg_end). */
    if (reset_limit(w, false) && !publish(w, sp))
        atomic_store_explicit(&w->fj.limit, 0, memory_order_relaxed); /* nothing yet: keep asking */
    if (sp != w->fj.seg_end)
        return sp;
    unsigned k = w->cur_seg + 1;
    if (k >= WEIR__MAX_SEGS || !w->segs[k]) {
        int err = alloc_segment(w, k);
        if (err) {
            /* A spawn has no error channel (like a C stack overflow): the
             * frame stack cannot grow, and continuing would corrupt it. The
             * message names the way out: frames reserved at create
             * (tests/unit/test_fjgrow.c pins both the text and the abort). */
            if (err == -EOVERFLOW)
                weir__log(WEIR_LOG_FATAL,
                          "worker %u cannot grow its frame deque beyond %" PRIu64
                          " frames: frame indices are 32-bit",
                          w->index, frames_upto(w, w->cur_seg));
            else
                weir__log(WEIR_LOG_FATAL,
                          "worker %u cannot grow its frame deque to %" PRIu64
                          " frames: %s (weir_config.deque_initial reserves frames at create)",
                          w->index, frames_upto(w, k), weir_strerror(err));
            abort();
        }
    }
    w->cur_seg = k;
    w->fj.seg_begin = w->segs[k];
    w->fj.seg_end = w->segs[k] + seg_size(w, k);
    reset_limit(w, true);
    return w->fj.seg_begin;
}

/* Owner, from weir__fj_rest(): frame `t`, just popped, begins the current
 * segment. The stack pointer must not rest there (task.h: a caller holding
 * the end of the previous segment would otherwise see this segment's state
 * after its callee returned, and write past that end): make the previous
 * segment current and rest at its end. Segment 0 has none before it. */
weir_frame *weir__fj_shrink(weir_worker *w, weir_frame *t)
{
    if (w->cur_seg == 0)
        return t;
    unsigned k = w->cur_seg - 1;
    w->cur_seg = k;
    w->fj.seg_begin = w->segs[k];
    w->fj.seg_end = w->segs[k] + seg_size(w, k);
    reset_limit(w, true);
    return w->fj.seg_end;
}

/* Wait for the thief of `t` to finish it; never idle: steal back from the
 * thief (leapfrogging), else from anyone, with our stack top above `t`. */
static void wait_stolen(weir_worker *w, weir_frame *t)
{
    weir_frame *sp = t + 1; /* may equal fj.seg_end: the next spawn grows */
    uintptr_t th;
    /* acquire: pairs with the thief's release store of WEIR__DONE after it
     * wrote the result into the frame. */
    while ((th = atomic_load_explicit(&t->thief, memory_order_acquire)) != WEIR__DONE) {
        if (th != 0) {
            weir_worker *thief = (weir_worker *)th;
            WEIR__INC(w, steal_attempts, 1);
            int r = weir__fj_steal(w, thief, sp);
            if (r == WEIR__STEAL_OK) {
                WEIR__INC(w, steals, 1);
                WEIR__INC(w, tasks_stolen, 1);
                WEIR__INC(w, leapfrogs, 1);
                continue;
            }
            if (r == WEIR__STEAL_EMPTY)
                WEIR__INC(w, steal_empty, 1);
            else
                WEIR__INC(w, steal_contended, 1);
        }
        if (!weir__steal_round(w, sp, true))
            weir__cpu_relax();
    }
}

int weir__fj_sync_public(weir_worker *w, weir_frame *t)
{
    uint32_t i = w->split - 1; /* LIFO: the popped public frame is split - 1 */
    /* Withdraw frame i from the public part. relaxed is enough: atomicity
     * alone decides the race with a thief's CAS (both modify `ts`; whichever
     * comes first in its modification order wins), and if we win we run a
     * frame we wrote ourselves. */
    uint64_t old = atomic_fetch_sub_explicit(&w->fj.ts, (uint64_t)1 << 32, memory_order_relaxed);
    if (LO(old) <= i) {
        w->split = i;
        return 1; /* ours: run it inline */
    }
    /* Stolen (top was i + 1). The word now reads (i+1, i): empty. Make it
     * (i+1, i+1) so frames we push above t while waiting get indices > i. */
    atomic_store_explicit(&w->fj.ts, PACK(i + 1, i + 1), memory_order_relaxed);
    w->split = i + 1;
    wait_stolen(w, t);
    /* The thief is done with t (we saw WEIR__DONE): give the frame back its
     * "never stolen" state, which spawn relies on instead of writing it. */
    atomic_store_explicit(&t->thief, 0, memory_order_relaxed);
    /* Everything we pushed above t has been synced, so no frame is public:
     * reset to (i, i); frame i is free again for the next spawn. */
    atomic_store_explicit(&w->fj.ts, PACK(i, i), memory_order_relaxed);
    w->split = i;
    return 0;
}

int weir__fj_steal(weir_worker *self, weir_worker *v, weir_frame *sp)
{
    /* relaxed: the successful CAS below is what synchronizes */
    uint64_t old = atomic_load_explicit(&v->fj.ts, memory_order_relaxed);
    uint32_t top = LO(old);
    if (top >= HI(old)) {
        weir__fj_request(v); /* nothing public: ask for some at its next spawn */
        return WEIR__STEAL_EMPTY;
    }
    /* acquire on success: pairs with the owner's release fetch_add in
     * publish() (from weir__fj_spawn_slow()), making the frame's contents (and the segment
     * pointer) visible. top + 1 <= split < 2^32: no carry into split. */
    if (!atomic_compare_exchange_strong_explicit(&v->fj.ts, &old, old + 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return WEIR__STEAL_LOST;
    weir_frame *t = frame_at(v, top);
    /* relaxed: only a hint for the owner's leapfrogging */
    atomic_store_explicit(&t->thief, (uintptr_t)self, memory_order_relaxed);
    if (weir__tracing())
        weir__trace_steal(v->index);
    weir__found_work(self);
    self->fj_depth++;
    ((weir__frame_fn)(t->run & ~WEIR__PUB))(self, sp, t);
    self->fj_depth--;
    WEIR__INC(self, tasks_run, 1);
    /* release: the result written by t->run happens-before the owner's
     * acquire load in wait_stolen(). */
    atomic_store_explicit(&t->thief, WEIR__DONE, memory_order_release);
    return WEIR__STEAL_OK;
}

bool weir__fj_maybe_public(weir_worker *v)
{
    uint64_t x = atomic_load_explicit(&v->fj.ts, memory_order_seq_cst);
    return LO(x) < HI(x);
}

int weir__fj_run_root(weir_runtime *rt, weir_frame *root)
{
    weir_worker *w = weir_runtime_self(rt);
    if (w) {
        if (w->fj_depth > 0)
            return weir__error(-EDEADLK,
                               "NAME_run() called from inside a fork-join task: use WEIR_CALL");
        /* A job body runs with an empty frame stack (jobs are only run from
         * the scheduler loop), so the stack starts at frame 0. */
        w->fj_depth++;
        if (weir__tracing())
            weir__trace_root(w, w->segs[0], root);
        else
            ((weir__frame_fn)root->run)(w, w->segs[0], root);
        w->fj_depth--;
        return 0;
    }
    return weir__fj_run_root_remote(rt, root);
}
