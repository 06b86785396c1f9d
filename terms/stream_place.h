/*
 * weir terms — placing streams in memory the caller owns (compile.c lays
 * out every stage and stream of a pipeline in one block; see "Memory" in
 * compile.c). Private to terms/, like internal.h.
 */
#ifndef WEIR_TERMS_STREAM_PLACE_H
#define WEIR_TERMS_STREAM_PLACE_H

#include "internal.h"

/* Bytes of the ring of `cap` records of `size` bytes, rounded up to whole
 * cache lines; 0 when that does not fit in a size_t. */
size_t weir__stream_ring_bytes(size_t size, uint64_t cap);

/* weir__stream_init() on memory the caller provides: `buf` (ring bytes,
 * cache-line aligned, need not be zeroed), `cursors` (ncons, cache-line
 * aligned), `consumers` and `slots` (ncons each). Cannot fail; the caller
 * frees the memory, never weir__stream_deinit(). */
void weir__stream_place(weir__stream *s, const char *name, size_t size, uint64_t cap,
                        unsigned ncons, char *buf, weir__cursor *cursors,
                        struct weir__stage **consumers, uint32_t *slots);

#endif /* WEIR_TERMS_STREAM_PLACE_H */
