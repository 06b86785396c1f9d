/*
 * weir-bench — SHA-1 (FIPS 180-4, section 6.1), written from the standard for
 * the UTS splittable random number generator (benchmarks/uts.c). Not for
 * security: UTS needs SHA-1 only because its published trees are defined by it.
 */
#ifndef WEIR_BENCH_SHA1_H
#define WEIR_BENCH_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_DIGEST 20

typedef struct sha1_ctx {
    uint32_t h[5];
    uint64_t bytes;          /**< message length so far */
    unsigned char block[64]; /**< the partial block */
    size_t fill;             /**< bytes in `block` */
} sha1_ctx;

void sha1_init(sha1_ctx *c);
void sha1_update(sha1_ctx *c, const void *data, size_t len);
/** Pad, process the last block(s) and write the 20-byte digest (big-endian words). */
void sha1_final(sha1_ctx *c, unsigned char out[SHA1_DIGEST]);
/** One-shot digest of `len` bytes. */
void sha1(const void *data, size_t len, unsigned char out[SHA1_DIGEST]);
/** Check the FIPS 180-2 appendix A/B test vectors; 0 if they all match, else
 *  -1 after a message on stderr. */
int sha1_selftest(void);

#endif /* WEIR_BENCH_SHA1_H */
