/*
 * The per-record work of the farm and keyed benchmarks, shared by the C
 * variants and the oneTBB peer so that every variant does exactly the same
 * computation: a dependent chain of multiply-adds (an LCG step), `iters`
 * long, calibrated at start to take the requested nanoseconds. Dependent, so
 * neither the compiler nor the core can overlap two records' work.
 */
#ifndef WEIR_BENCH_FARM_KERNEL_H
#define WEIR_BENCH_FARM_KERNEL_H

#include <stdint.h>

static inline uint64_t farm_work(uint64_t x, uint64_t iters)
{
    for (uint64_t i = 0; i < iters; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        __asm__ volatile("" : "+r"(x)); /* keep the loop: no closed form */
    }
    return x;
}

/* The record of the farm: its index and the work's result. */
typedef struct farm_rec {
    uint64_t id;
    uint64_t val;
} farm_rec;

#endif
