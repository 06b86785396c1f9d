/*
 * weir-bench — serial baselines. Compiled with exactly the flags of the weir
 * variants (bench_runtime.c), in a file of their own as Lace keeps fib-seq.c
 * beside fib-lace.c, so the ratio weir / serial measures the runtime and not
 * the compiler.
 */
#include "kernels.h"

long serial_fib(int n)
{
    if (n < 2)
        return n;
    return serial_fib(n - 1) + serial_fib(n - 2);
}

static uint64_t nqueens_rec(uint32_t all, uint32_t cols, uint32_t ld, uint32_t rd)
{
    if (cols == all)
        return 1;
    uint64_t count = 0;
    uint32_t avail = all & ~(cols | ld | rd);
    while (avail) {
        uint32_t bit = avail & -avail;
        avail ^= bit;
        count += nqueens_rec(all, cols | bit, ((ld | bit) << 1) & all, (rd | bit) >> 1);
    }
    return count;
}

uint64_t serial_nqueens(int n)
{
    uint32_t all = (n >= 32) ? UINT32_MAX : ((UINT32_C(1) << n) - 1);
    return nqueens_rec(all, 0, 0, 0);
}

static uint64_t uts_rec(uint64_t id, uint32_t nchildren)
{
    uint64_t count = 1;
    for (uint32_t i = 0; i < nchildren; i++) {
        uint64_t child = uts_child(id, i);
        count += uts_rec(child, uts_nchildren(child));
    }
    return count;
}

uint64_t serial_uts(uint32_t root_children)
{
    return uts_rec(UTS_ROOT_ID, root_children);
}

static uint64_t skynet_rec(uint64_t num, uint64_t size)
{
    if (size == 1)
        return num;
    uint64_t sum = 0;
    uint64_t sub = size / 10;
    for (uint64_t i = 0; i < 10; i++)
        sum += skynet_rec(num + i * sub, sub);
    return sum;
}

uint64_t serial_skynet(uint64_t leaves)
{
    return skynet_rec(0, leaves);
}
