/*
 * weir-bench — the benchmark kernels that are not weir: serial baselines
 * (serial.c) and the OpenMP / oneTBB peers (peer_omp.c, peer_tbb.cpp), plus
 * the definition of the UTS tree, which every variant must walk identically.
 * Usable from C and C++.
 */
#ifndef WEIR_BENCH_KERNELS_H
#define WEIR_BENCH_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- UTS: an unbalanced tree (binomial, in the style of UTS "T3") ---------
 * The root has `n` children; every other node has UTS_M children with
 * probability UTS_Q, else none. The coin of a node is a hash of its id and
 * the id of child i is a hash of (parent id, i), so the tree is the same for
 * every variant and every run. UTS_M * UTS_Q = 0.992 < 1 keeps it finite:
 * a root child's subtree has 1 / (1 - 0.992) = 125 nodes on average, with a
 * heavy tail (that is the point: the work is unpredictable). */
#define UTS_M       8u
#define UTS_Q       0.124
#define UTS_ROOT_ID UINT64_C(0x5eed0f7ee5eed)
/* UTS_Q as a threshold on a 64-bit hash: 0.124 * 2^64 */
#define UTS_THRESHOLD UINT64_C(2287396265139984384)

/** splitmix64's finaliser: a bijective 64-bit mix. */
static inline uint64_t uts_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/** Id of child `i` of node `parent`. */
static inline uint64_t uts_child(uint64_t parent, uint32_t i)
{
    return uts_mix(parent + UINT64_C(0x9e3779b97f4a7c15) * ((uint64_t)i + 1));
}

/** Number of children of a non-root node. */
static inline uint32_t uts_nchildren(uint64_t id)
{
    return uts_mix(id ^ UINT64_C(0xd1b54a32d192ed03)) < UTS_THRESHOLD ? UTS_M : 0u;
}

/* ---- serial baselines (serial.c) ------------------------------------------ */
long serial_fib(int n);
/** Solutions of the n-queens problem (1 <= n <= 20). */
uint64_t serial_nqueens(int n);
/** Nodes of the UTS tree whose root has `root_children` children (root included). */
uint64_t serial_uts(uint32_t root_children);
/** Skynet: sum of the ids 0..leaves-1 over a 10-ary tree (leaves a power of 10). */
uint64_t serial_skynet(uint64_t leaves);

/* ---- OpenMP tasks (peer_omp.c; WEIR_BENCH_HAVE_OMP) ----------------------- */
long omp_fib(unsigned workers, int n);
uint64_t omp_nqueens(unsigned workers, int n);
uint64_t omp_uts(unsigned workers, uint32_t root_children);
uint64_t omp_skynet(unsigned workers, uint64_t leaves);

/* ---- oneTBB task_group (peer_tbb.cpp; WEIR_BENCH_HAVE_TBB) ----------------
 * tbb_peer_init() sets tbb::global_control max_allowed_parallelism and builds
 * a task_arena of `workers` slots; every kernel runs inside that arena.
 * Pair: tbb_peer_fini(). Returns 0, or -1 after a message on stderr. */
int tbb_peer_init(unsigned workers);
void tbb_peer_fini(void);
long tbb_fib(int n);
uint64_t tbb_nqueens(int n);
uint64_t tbb_uts(uint32_t root_children);
uint64_t tbb_skynet(uint64_t leaves);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_BENCH_KERNELS_H */
