/*
 * weir-bench — OpenMP-tasks peers (gcc libgomp), compiled with -fopenmp in a
 * library of their own. Each kernel opens a parallel region of `workers`
 * threads; one thread (single) starts the task tree, the team runs the tasks.
 * The task structure mirrors the weir variants in bench_runtime.c: one task
 * per spawn, a taskwait where weir syncs.
 */
#include <omp.h>

#include "kernels.h"

/* ---- fib ------------------------------------------------------------------ */

static long fib_task(int n)
{
    if (n < 2)
        return n;
    long x;
#pragma omp task shared(x)
    x = fib_task(n - 1);
    long y = fib_task(n - 2);
#pragma omp taskwait
    return x + y;
}

long omp_fib(unsigned workers, int n)
{
    long r = 0;
#pragma omp parallel num_threads(workers) shared(r)
#pragma omp single
    r = fib_task(n);
    return r;
}

/* ---- nqueens: one task per queen placement, a taskwait for all ----------- */

static uint64_t nqueens_task(uint32_t all, uint32_t cols, uint32_t ld, uint32_t rd)
{
    if (cols == all)
        return 1;
    uint64_t res[32];
    unsigned k = 0;
    uint32_t avail = all & ~(cols | ld | rd);
    while (avail) {
        uint32_t bit = avail & -avail;
        avail ^= bit;
        unsigned slot = k++;
#pragma omp task shared(res) firstprivate(slot, bit)
        res[slot] = nqueens_task(all, cols | bit, ((ld | bit) << 1) & all, (rd | bit) >> 1);
    }
#pragma omp taskwait
    uint64_t count = 0;
    for (unsigned i = 0; i < k; i++)
        count += res[i];
    return count;
}

uint64_t omp_nqueens(unsigned workers, int n)
{
    uint32_t all = (n >= 32) ? UINT32_MAX : ((UINT32_C(1) << n) - 1);
    uint64_t r = 0;
#pragma omp parallel num_threads(workers) shared(r)
#pragma omp single
    r = nqueens_task(all, 0, 0, 0);
    return r;
}

/* ---- uts: children [lo, hi) of a node, split in halves -------------------- */

static uint64_t uts_range(uint64_t parent, uint32_t lo, uint32_t hi)
{
    if (hi - lo == 1) {
        uint64_t child = uts_child(parent, lo);
        uint32_t k = uts_nchildren(child);
        return 1 + (k ? uts_range(child, 0, k) : 0);
    }
    uint32_t mid = lo + (hi - lo) / 2;
    uint64_t a;
#pragma omp task shared(a)
    a = uts_range(parent, mid, hi);
    uint64_t b = uts_range(parent, lo, mid);
#pragma omp taskwait
    return a + b;
}

uint64_t omp_uts(unsigned workers, uint32_t root_children)
{
    uint64_t r = 0;
#pragma omp parallel num_threads(workers) shared(r)
#pragma omp single
    r = 1 + (root_children ? uts_range(UTS_ROOT_ID, 0, root_children) : 0);
    return r;
}

/* ---- skynet: nine tasks a level, the tenth child runs inline -------------- */

static uint64_t skynet_task(uint64_t num, uint64_t size)
{
    if (size == 1)
        return num;
    uint64_t res[10];
    uint64_t sub = size / 10;
    for (uint64_t i = 1; i < 10; i++) {
#pragma omp task shared(res) firstprivate(i)
        res[i] = skynet_task(num + i * sub, sub);
    }
    res[0] = skynet_task(num, sub);
#pragma omp taskwait
    uint64_t sum = 0;
    for (int i = 0; i < 10; i++)
        sum += res[i];
    return sum;
}

uint64_t omp_skynet(unsigned workers, uint64_t leaves)
{
    uint64_t r = 0;
#pragma omp parallel num_threads(workers) shared(r)
#pragma omp single
    r = skynet_task(0, leaves);
    return r;
}
