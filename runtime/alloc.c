/*
 * weir runtime — the allocator hook (weir_set_allocator), the allocation
 * functions built on it, the failure-injection hook for tests, and the
 * monotonic clock.
 *
 * Every allocation of the runtime and of the term layer goes through
 * weir_malloc() and friends, so that a user allocator sees all of them and a
 * test can make the k-th one fail (weir__alloc_fail_after, or its own
 * allocator) and check that each error path cleans up and returns -ENOMEM
 * instead of crashing.
 *
 * Every block carries a small header just before it: the pointer the hook
 * returned and the size asked for. That is what lets one weir_free() release
 * plain and over-aligned blocks alike (an aligned block is an ordinary hook
 * allocation with the block placed at an aligned offset inside it), and lets
 * weir_realloc() copy the right number of bytes when the hook has no realloc
 * or the block was over-aligned.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

typedef struct weir__hdr {
    void *raw;   /* what the hook's malloc_fn / realloc_fn returned */
    size_t size; /* bytes the caller asked for */
} weir__hdr;

/* The hook returns memory aligned for max_align_t. A plain block starts this
 * far into it: room for the header, rounded up so that the block keeps that
 * alignment. */
#define WEIR__MAXALIGN  alignof(max_align_t)
#define WEIR__PLAIN_OFF ((sizeof(weir__hdr) + WEIR__MAXALIGN - 1) / WEIR__MAXALIGN * WEIR__MAXALIGN)

static void *weir__libc_malloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void *weir__libc_realloc(void *p, size_t size, void *ctx)
{
    (void)ctx;
    return realloc(p, size);
}

static void weir__libc_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

static const weir_allocator weir__libc = {weir__libc_malloc, weir__libc_realloc, weir__libc_free,
                                          NULL};
/* The user's allocator, copied so that the caller's struct need not outlive
 * the call. */
static weir_allocator weir__user;
/* The allocator in use. Switched only while no block is live (checked) and,
 * by contract, while no other weir call runs. */
static _Atomic(const weir_allocator *) weir__current = &weir__libc;
/* Blocks handed out and not yet freed: makes weir_set_allocator() refuse a
 * switch that would free live blocks through the wrong allocator. Relaxed:
 * a count that orders nothing. */
static _Atomic long weir__live;

/* Allocations left before the injected failure: 0 = disarmed, k > 0 = the
 * k-th allocation from now fails. Relaxed ordering throughout: the counter
 * orders nothing but itself, and the test that arms it does so before it
 * starts the code under test. */
static _Atomic long weir__fail_countdown;

void weir__alloc_fail_after(long k)
{
    atomic_store_explicit(&weir__fail_countdown, k > 0 ? k : 0, memory_order_relaxed);
}

long weir__alloc_live(void)
{
    return atomic_load_explicit(&weir__live, memory_order_relaxed);
}

/* True when this allocation is the one chosen to fail. A CAS loop rather
 * than fetch_sub keeps the counter from going below zero, so exactly one
 * allocation fails even when several threads allocate at once, and the hook
 * disarms itself afterwards. The common (disarmed) case is one relaxed load. */
static bool weir__inject_failure(void)
{
    long c = atomic_load_explicit(&weir__fail_countdown, memory_order_relaxed);
    while (c > 0) {
        if (atomic_compare_exchange_weak_explicit(&weir__fail_countdown, &c, c - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return c == 1;
    }
    return false;
}

static inline const weir_allocator *weir__hook(void)
{
    /* acquire: pairs with the release store in weir_set_allocator(), so the
     * copied struct is complete when its pointer is seen. */
    return atomic_load_explicit(&weir__current, memory_order_acquire);
}

static inline weir__hdr *weir__hdr_of(void *p)
{
    return (weir__hdr *)p - 1;
}

/* Put the header in front of the block at raw + off and count the block. */
static void *weir__place(void *raw, size_t off, size_t size)
{
    char *p = (char *)raw + off;
    weir__hdr *h = weir__hdr_of(p);
    h->raw = raw;
    h->size = size;
    atomic_fetch_add_explicit(&weir__live, 1, memory_order_relaxed);
    return p;
}

static void *weir__raw_malloc(size_t size)
{
    if (weir__inject_failure())
        return NULL;
    const weir_allocator *a = weir__hook();
    return a->malloc_fn(size, a->ctx);
}

int weir_set_allocator(const weir_allocator *a)
{
    if (a != NULL && (a->malloc_fn == NULL || a->free_fn == NULL))
        return weir__error(-EINVAL, "weir_set_allocator: malloc_fn and free_fn are required");
    long live = atomic_load_explicit(&weir__live, memory_order_relaxed);
    if (live != 0)
        return weir__error(-EBUSY,
                           "weir_set_allocator: %ld blocks allocated by weir are still live "
                           "(destroy every weir object first)",
                           live);
    /* Copied into a static: a second call overwrites it, which is safe only
     * because no weir call may run meanwhile (see the header). */
    if (a != NULL)
        weir__user = *a;
    /* release: pairs with the acquire in weir__hook(), so the copy is
     * complete before any allocation uses it. */
    atomic_store_explicit(&weir__current, a != NULL ? &weir__user : &weir__libc,
                          memory_order_release);
    return 0;
}

void *weir_malloc(size_t size)
{
    if (size > SIZE_MAX - WEIR__PLAIN_OFF)
        return NULL;
    void *raw = weir__raw_malloc(WEIR__PLAIN_OFF + size);
    return raw != NULL ? weir__place(raw, WEIR__PLAIN_OFF, size) : NULL;
}

void *weir_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = weir_malloc(n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *weir_aligned_alloc(size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1)) != 0)
        return NULL;
    if (align <= WEIR__MAXALIGN)
        return weir_malloc(size);
    /* Room for the header, then up to align - 1 bytes to reach the next
     * multiple of align. */
    size_t extra = sizeof(weir__hdr) + align - 1;
    if (size > SIZE_MAX - extra)
        return NULL;
    void *raw = weir__raw_malloc(size + extra);
    if (raw == NULL)
        return NULL;
    uintptr_t at = ((uintptr_t)raw + sizeof(weir__hdr) + align - 1) & ~(uintptr_t)(align - 1);
    return weir__place(raw, (size_t)(at - (uintptr_t)raw), size);
}

void *weir_realloc(void *p, size_t size)
{
    if (p == NULL)
        return weir_malloc(size);
    weir__hdr *h = weir__hdr_of(p);
    const weir_allocator *a = weir__hook();
    /* A block at the plain offset can be resized in place by the hook (the
     * offset is kept); an over-aligned one, or any block when the hook has
     * no realloc, is moved by hand. */
    if (a->realloc_fn != NULL && (char *)p - (char *)h->raw == (ptrdiff_t)WEIR__PLAIN_OFF) {
        if (size > SIZE_MAX - WEIR__PLAIN_OFF || weir__inject_failure())
            return NULL;
        void *raw = a->realloc_fn(h->raw, WEIR__PLAIN_OFF + size, a->ctx);
        if (raw == NULL)
            return NULL;
        char *np = (char *)raw + WEIR__PLAIN_OFF;
        /* The header moved with the block; only its fields change. */
        weir__hdr *nh = weir__hdr_of(np);
        nh->raw = raw;
        nh->size = size;
        return np;
    }
    void *np = weir_malloc(size);
    if (np == NULL)
        return NULL;
    memcpy(np, p, h->size < size ? h->size : size);
    weir_free(p);
    return np;
}

char *weir_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *c = weir_malloc(n);
    if (c != NULL)
        memcpy(c, s, n);
    return c;
}

void weir_free(void *p)
{
    if (p == NULL)
        return;
    void *raw = weir__hdr_of(p)->raw;
    atomic_fetch_sub_explicit(&weir__live, 1, memory_order_relaxed);
    const weir_allocator *a = weir__hook();
    a->free_fn(raw, a->ctx);
}

/* The runtime's historical names, kept for its call sites and tests. */

void *weir__malloc(size_t size)
{
    return weir_malloc(size);
}

void *weir__calloc(size_t n, size_t size)
{
    return weir_calloc(n, size);
}

void *weir__aligned_alloc(size_t align, size_t size)
{
    void *p = weir_aligned_alloc(align, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

void weir__free(void *p)
{
    weir_free(p);
}

uint64_t weir__now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC: durations must not jump when the wall clock is set. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
