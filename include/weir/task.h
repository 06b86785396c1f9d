/*
 * weir — fork-join tasks (spawn / sync) with arguments inline in deque frames.
 *
 *   WEIR_TASK_1(long, fib, int, n)
 *   {
 *       if (n < 2)
 *           return n;
 *       WEIR_SPAWN(fib, n - 1);
 *       long b = WEIR_CALL(fib, n - 2);
 *       long a = WEIR_SYNC(fib);
 *       return a + b;
 *   }
 *   ...
 *   long r = fib_run(rt, 35);        // from a thread outside the runtime
 *
 * WEIR_TASK_n(RT, NAME, T1, A1, ...) defines a task returning RT with n
 * arguments; WEIR_VOID_TASK_n for tasks without result. Inside a task body
 * two names are implicit: `weir_w` (the running worker) and `weir_sp` (the
 * top of its frame stack); the macros WEIR_SPAWN / WEIR_SYNC / WEIR_CALL use
 * them. Syncs pair with spawns in LIFO order, and a task must sync every frame
 * it spawned before it returns. The task is `static`: define it in the file
 * that uses it.
 *
 * NAME_run(rt, args...) runs a task to completion from outside the runtime
 * (the calling thread blocks) or from a detached job's body (it runs inline).
 * Called from inside a fork-join task it cannot know the frame stack: it
 * returns a zeroed result and sets weir_last_error() (-EDEADLK); use WEIR_CALL.
 *
 * The frame path in brief (docs/design.md has the argument): a spawn writes
 * the frame at the top of the worker's *private* part, where no thief looks,
 * with plain stores only. A sync pops it back and calls the task inline unless
 * the frame was *published*: the owner publishes half of its private frames,
 * with one release read-modify-write, only when a thief or a parking worker
 * asked. So the spawn/sync of a frame that was never published contains no
 * atomic read-modify-write and no fence.
 *
 * Frames live on a per-worker stack that grows by segments, and a spawn has
 * no error channel: if the next segment cannot be allocated, weir prints
 * "weir: fatal: worker N cannot grow its frame deque to M frames: ..." and
 * calls abort(), the only abort in the library (tests/unit/test_fjgrow.c).
 * To rule it out, reserve the frames at create: weir_config.deque_initial
 * frames per worker are allocated by weir_runtime_create() (-ENOMEM if they
 * cannot be), and a worker whose stack stays within them never allocates.
 * The stack holds the frames spawned and not yet synced (WEIR_CALL uses
 * none), so with one worker it needs the most frames a run has outstanding
 * at once (fib(n): n/2 rounded down; a loop of w spawns, then w syncs: w). A
 * worker waiting in a sync for a stolen frame runs other stolen frames above
 * its own, so with several workers a stack can be deeper by the frames
 * those spawn: leave a margin, unless the frames thieves take spawn nothing.
 */
#ifndef WEIR_TASK_H
#define WEIR_TASK_H

#ifndef __cplusplus
#include <stdalign.h> /* alignas: a keyword in C++ */
#endif
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of arguments (or result) a frame carries inline. */
#define WEIR_FRAME_DATA 40

typedef struct weir_frame weir_frame;
typedef void (*weir__frame_fn)(weir_worker *w, weir_frame *sp, weir_frame *self);

/* One deque slot, one cache line: thieves write `thief` of the frames they
 * take, so frames must not share lines with each other. */
struct weir_frame {
    alignas(WEIR_CACHELINE) unsigned char data[WEIR_FRAME_DATA]; /* args in, result out */
    /* The weir__frame_fn that runs the task from the frame, set by spawn;
     * bit 0 (WEIR__PUB) is set by the owner when it publishes the frame. */
    uintptr_t run;
    /* 0, the thief's weir_worker*, or WEIR__DONE. Spawn does not write it:
     * it is 0 in a fresh segment, only a thief sets it, and the owner resets
     * it to 0 after it synced a stolen frame. */
    WEIR_ATOMIC(uintptr_t) thief;
    uintptr_t reserved;
};

#define WEIR__DONE ((uintptr_t)1)
#define WEIR__PUB  ((uintptr_t)1)

/* The owner-side head of every weir_worker (the full struct is private),
 * with the fields the inline fast path touches. Two cache lines: the first
 * is written by the owner only; the second holds what thieves write. */
struct weir__fj_head {
    alignas(WEIR_CACHELINE) weir_frame *seg_begin; /* owner: first frame of the current segment */
    weir_frame *seg_end;                           /* owner: one past its last frame */
    WEIR_ATOMIC(uint64_t) spawns;                  /* owner-written counter, see WEIR_COUNT_SPAWNS */
    /* `ts` packs the (top, split) frame indices, top in the low half:
     * thieves CAS it, the owner publishes / withdraws with RMWs on it. */
    alignas(WEIR_CACHELINE) WEIR_ATOMIC(uint64_t) ts;
    /* `limit`: a spawn at sp >= limit takes the slow path. The owner keeps
     * it at seg_end (so the check doubles as the segment bound); a thief that
     * found nothing public, or a worker about to park, stores 0 to ask the
     * owner to publish. One compare on the fast path serves both. */
    WEIR_ATOMIC(uintptr_t) limit;
};

/* Slow paths (runtime/fjdeque.c). */
WEIR_API weir_frame *weir__fj_spawn_slow(weir_worker *w, weir_frame *sp);
WEIR_API weir_frame *weir__fj_shrink(weir_worker *w, weir_frame *sp);
WEIR_API int weir__fj_sync_public(weir_worker *w, weir_frame *t);
WEIR_API int weir__fj_run_root(weir_runtime *rt, weir_frame *root);

/* Define WEIR_COUNT_SPAWNS to 1 before including weir.h to count spawns in
 * weir_worker_stats.spawns. Off by default: the counter is a load-add-store
 * chained through memory across the recursion, which measured ~20 % of
 * fib's time on this machine (docs/benchmarks.md). */
#ifndef WEIR_COUNT_SPAWNS
#define WEIR_COUNT_SPAWNS 0
#endif

static inline weir_frame *weir__fj_push(weir_worker *w, weir_frame *sp, weir__frame_fn run)
{
    struct weir__fj_head *h = (struct weir__fj_head *)(void *)w;
    /* relaxed: `limit` is a hint (see above); the frame itself is published
     * by the release RMW on `ts` in the slow path. */
    if (WEIR_UNLIKELY((uintptr_t)sp >= WEIR__LOAD(&h->limit, relaxed)))
        sp = weir__fj_spawn_slow(w, sp);
    /* A plain store: see the release RMW in weir__fj_spawn_slow(). */
    sp->run = (uintptr_t)run;
    return sp;
}

static inline weir_frame *weir__fj_pushed(weir_worker *w, weir_frame *t)
{
#if WEIR_COUNT_SPAWNS
    struct weir__fj_head *h = (struct weir__fj_head *)(void *)w;
    /* owner-only counter: a relaxed load and store, no RMW */
    WEIR__STORE(&h->spawns, WEIR__LOAD(&h->spawns, relaxed) + 1, relaxed);
#else
    (void)w;
#endif
    return t + 1;
}

/* The stack pointer is kept in one form: within (seg_begin, seg_end] of the
 * current segment (segment 0 also allows seg_begin), so that a caller whose
 * callee (WEIR_CALL, a stolen frame) grew and shrank the stack finds the
 * segment state it left. Hence a pop never crosses a segment (sp - 1 is in
 * the current one), and the stack pointer after the pop is the popped frame
 * unless that frame begins a segment: then the previous segment becomes
 * current and the stack pointer is its end (weir__fj_rest). */
static inline weir_frame *weir__fj_pop(weir_worker *w, weir_frame *sp)
{
    (void)w;
    return sp - 1;
}

static inline weir_frame *weir__fj_rest(weir_worker *w, weir_frame *t)
{
    struct weir__fj_head *h = (struct weir__fj_head *)(void *)w;
    if (WEIR_UNLIKELY(t == h->seg_begin))
        t = weir__fj_shrink(w, t);
    return t;
}

#define WEIR__X(...) __VA_ARGS__

/* Bit 0 of a frame's `run` is the publication mark (WEIR__PUB), so the
 * function it points to must start at an even address. Compilers align
 * functions only when optimizing (-falign-functions comes with -O2): at -O0
 * g++ placed a task's run function at an odd address, its spawned frames
 * looked published, and the deque's split went negative. */
#if defined(__GNUC__)
#define WEIR__RUN_ALIGN __attribute__((aligned(4)))
#else
#define WEIR__RUN_ALIGN
#endif

/* A zeroed root frame on the stack. C++ value-initializes it: memset on a
 * struct with a std::atomic member is what -Wclass-memaccess warns about. */
#ifdef __cplusplus
#define WEIR__ZEROED_FRAME(x) weir_frame x {}
#else
#define WEIR__ZEROED_FRAME(x)                                                                      \
    weir_frame x;                                                                                  \
    memset(&x, 0, sizeof x)
#endif

/* The common body of every WEIR_TASK_n: PD = parameter declarations (with a
 * leading comma), FL = argument fields, ST = stores into the frame,
 * FP = arguments read back from the frame (with a leading comma). */
#define WEIR__TASK(RT, NAME, PD, FL, ST, FP)                                                       \
    static RT NAME##_weir_impl(weir_worker *weir_w, weir_frame *weir_sp WEIR__X PD);              \
    typedef union {                                                                                \
        struct {                                                                                   \
            char weir__unused;                                                                     \
            WEIR__X FL                                                                             \
        } args;                                                                                    \
        RT res;                                                                                    \
    } NAME##_weir_frame;                                                                           \
    WEIR__STATIC_ASSERT(sizeof(NAME##_weir_frame) <= WEIR_FRAME_DATA,                              \
                        "arguments of task " #NAME " do not fit in a frame");                      \
    static WEIR__RUN_ALIGN void NAME##_weir_run(weir_worker *weir_w, weir_frame *weir_sp,          \
                                                weir_frame *weir_t)                                \
    {                                                                                              \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_t->data;                          \
        RT weir_r = NAME##_weir_impl(weir_w, weir_sp WEIR__X FP);                                  \
        f->res = weir_r;                                                                           \
    }                                                                                              \
    static inline __attribute__((unused)) weir_frame *NAME##_weir_spawn(                          \
        weir_worker *weir_w, weir_frame *weir_sp WEIR__X PD)                                       \
    {                                                                                              \
        weir_frame *weir_t = weir__fj_push(weir_w, weir_sp, NAME##_weir_run);                      \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_t->data;                          \
        (void)f;                                                                                   \
        WEIR__X ST return weir__fj_pushed(weir_w, weir_t);                                         \
    }                                                                                              \
    static inline __attribute__((unused)) RT NAME##_weir_sync(weir_worker *weir_w,               \
                                                              weir_frame **weir_spp)               \
    {                                                                                              \
        weir_frame *weir_t = weir__fj_pop(weir_w, *weir_spp);                                      \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_t->data;                          \
        if (WEIR_LIKELY(!(weir_t->run & WEIR__PUB)) || weir__fj_sync_public(weir_w, weir_t)) {   \
            *weir_spp = weir__fj_rest(weir_w, weir_t);                                             \
            return NAME##_weir_impl(weir_w, *weir_spp WEIR__X FP);                                 \
        }                                                                                          \
        *weir_spp = weir__fj_rest(weir_w, weir_t);                                                 \
        return f->res;                                                                             \
    }                                                                                              \
    static inline __attribute__((unused)) RT NAME##_run(weir_runtime *weir_rt WEIR__X PD)         \
    {                                                                                              \
        WEIR__ZEROED_FRAME(weir_root);                                                             \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_root.data;                        \
        (void)f;                                                                                   \
        WEIR__X ST weir_root.run = (uintptr_t)NAME##_weir_run;                                                \
        if (weir__fj_run_root(weir_rt, &weir_root) != 0)                                           \
            memset(f, 0, sizeof *f); /* refused: a zeroed result, error in weir_last_error() */  \
        return f->res;                                                                             \
    }                                                                                              \
    static RT NAME##_weir_impl(weir_worker *weir_w, weir_frame *weir_sp WEIR__X PD)

#define WEIR__VTASK(NAME, PD, FL, ST, FP)                                                          \
    static void NAME##_weir_impl(weir_worker *weir_w, weir_frame *weir_sp WEIR__X PD);            \
    typedef struct {                                                                               \
        struct {                                                                                   \
            char weir__unused;                                                                     \
            WEIR__X FL                                                                             \
        } args;                                                                                    \
    } NAME##_weir_frame;                                                                           \
    WEIR__STATIC_ASSERT(sizeof(NAME##_weir_frame) <= WEIR_FRAME_DATA,                              \
                        "arguments of task " #NAME " do not fit in a frame");                      \
    static WEIR__RUN_ALIGN void NAME##_weir_run(weir_worker *weir_w, weir_frame *weir_sp,          \
                                                weir_frame *weir_t)                                \
    {                                                                                              \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_t->data;                          \
        (void)f;                                                                                   \
        NAME##_weir_impl(weir_w, weir_sp WEIR__X FP);                                              \
    }                                                                                              \
    static inline __attribute__((unused)) weir_frame *NAME##_weir_spawn(                          \
        weir_worker *weir_w, weir_frame *weir_sp WEIR__X PD)                                       \
    {                                                                                              \
        weir_frame *weir_t = weir__fj_push(weir_w, weir_sp, NAME##_weir_run);                      \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_t->data;                          \
        (void)f;                                                                                   \
        WEIR__X ST return weir__fj_pushed(weir_w, weir_t);                                         \
    }                                                                                              \
    static inline __attribute__((unused)) void NAME##_weir_sync(weir_worker *weir_w,             \
                                                                weir_frame **weir_spp)             \
    {                                                                                              \
        weir_frame *weir_t = weir__fj_pop(weir_w, *weir_spp);                                      \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_t->data;                          \
        (void)f;                                                                                   \
        int weir_inline =                                                                          \
            WEIR_LIKELY(!(weir_t->run & WEIR__PUB)) || weir__fj_sync_public(weir_w, weir_t);       \
        *weir_spp = weir__fj_rest(weir_w, weir_t);                                                 \
        if (weir_inline)                                                                           \
            NAME##_weir_impl(weir_w, *weir_spp WEIR__X FP);                                        \
    }                                                                                              \
    static inline __attribute__((unused)) void NAME##_run(weir_runtime *weir_rt WEIR__X PD)       \
    {                                                                                              \
        WEIR__ZEROED_FRAME(weir_root);                                                             \
        NAME##_weir_frame *f = (NAME##_weir_frame *)(void *)weir_root.data;                        \
        (void)f;                                                                                   \
        WEIR__X ST weir_root.run = (uintptr_t)NAME##_weir_run;                                                \
        weir__fj_run_root(weir_rt, &weir_root);                                                    \
    }                                                                                              \
    static void NAME##_weir_impl(weir_worker *weir_w, weir_frame *weir_sp WEIR__X PD)

/* clang-format off */
#define WEIR_TASK_0(RT, NAME) \
    WEIR__TASK(RT, NAME, (), (), (), ())
#define WEIR_TASK_1(RT, NAME, T1, A1) \
    WEIR__TASK(RT, NAME, (, T1 A1), (T1 A1;), (f->args.A1 = A1;), (, f->args.A1))
#define WEIR_TASK_2(RT, NAME, T1, A1, T2, A2) \
    WEIR__TASK(RT, NAME, (, T1 A1, T2 A2), (T1 A1; T2 A2;), \
               (f->args.A1 = A1; f->args.A2 = A2;), (, f->args.A1, f->args.A2))
#define WEIR_TASK_3(RT, NAME, T1, A1, T2, A2, T3, A3) \
    WEIR__TASK(RT, NAME, (, T1 A1, T2 A2, T3 A3), (T1 A1; T2 A2; T3 A3;), \
               (f->args.A1 = A1; f->args.A2 = A2; f->args.A3 = A3;), \
               (, f->args.A1, f->args.A2, f->args.A3))
#define WEIR_TASK_4(RT, NAME, T1, A1, T2, A2, T3, A3, T4, A4) \
    WEIR__TASK(RT, NAME, (, T1 A1, T2 A2, T3 A3, T4 A4), (T1 A1; T2 A2; T3 A3; T4 A4;), \
               (f->args.A1 = A1; f->args.A2 = A2; f->args.A3 = A3; f->args.A4 = A4;), \
               (, f->args.A1, f->args.A2, f->args.A3, f->args.A4))
#define WEIR_VOID_TASK_0(NAME) \
    WEIR__VTASK(NAME, (), (), (), ())
#define WEIR_VOID_TASK_1(NAME, T1, A1) \
    WEIR__VTASK(NAME, (, T1 A1), (T1 A1;), (f->args.A1 = A1;), (, f->args.A1))
#define WEIR_VOID_TASK_2(NAME, T1, A1, T2, A2) \
    WEIR__VTASK(NAME, (, T1 A1, T2 A2), (T1 A1; T2 A2;), \
                (f->args.A1 = A1; f->args.A2 = A2;), (, f->args.A1, f->args.A2))
#define WEIR_VOID_TASK_3(NAME, T1, A1, T2, A2, T3, A3) \
    WEIR__VTASK(NAME, (, T1 A1, T2 A2, T3 A3), (T1 A1; T2 A2; T3 A3;), \
                (f->args.A1 = A1; f->args.A2 = A2; f->args.A3 = A3;), \
                (, f->args.A1, f->args.A2, f->args.A3))
#define WEIR_VOID_TASK_4(NAME, T1, A1, T2, A2, T3, A3, T4, A4) \
    WEIR__VTASK(NAME, (, T1 A1, T2 A2, T3 A3, T4 A4), (T1 A1; T2 A2; T3 A3; T4 A4;), \
                (f->args.A1 = A1; f->args.A2 = A2; f->args.A3 = A3; f->args.A4 = A4;), \
                (, f->args.A1, f->args.A2, f->args.A3, f->args.A4))
/* clang-format on */

/** Push a frame for NAME(args...) that a thief may take; pair with WEIR_SYNC. */
#define WEIR_SPAWN(NAME, ...) (weir_sp = NAME##_weir_spawn(weir_w, weir_sp, __VA_ARGS__))
#define WEIR_SPAWN0(NAME)     (weir_sp = NAME##_weir_spawn(weir_w, weir_sp))
/** Pop the most recent frame: run it inline, or wait for (and help) its thief. */
#define WEIR_SYNC(NAME)       NAME##_weir_sync(weir_w, &weir_sp)
/** Call NAME(args...) directly on this worker (no frame). */
#define WEIR_CALL(NAME, ...)  NAME##_weir_impl(weir_w, weir_sp, __VA_ARGS__)
#define WEIR_CALL0(NAME)      NAME##_weir_impl(weir_w, weir_sp)

#ifdef __cplusplus
}
#endif
#endif /* WEIR_TASK_H */
