/*
 * weir-bench — oneTBB peers (tbb::task_group), C++17, exposed to the C driver
 * through the extern "C" functions declared in kernels.h. The task structure
 * mirrors the weir variants: one task_group::run per spawn, wait() where weir
 * syncs.
 *
 * Worker count: tbb::global_control caps the whole process at `workers`
 * threads (it also lifts TBB's default cap of one thread per core when
 * workers > cores), and every kernel runs inside a task_arena of `workers`
 * slots, one of which is the calling thread, like a weir runtime of `workers`
 * workers called from outside.
 */
#include <cstdio>
#include <exception>
#include <memory>
#include <utility>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include "kernels.h"

namespace
{

std::unique_ptr<tbb::global_control> g_control;
std::unique_ptr<tbb::task_arena> g_arena;

long fib(int n)
{
    if (n < 2)
        return n;
    long x = 0;
    tbb::task_group g;
    g.run([&] { x = fib(n - 1); });
    long y = fib(n - 2);
    g.wait();
    return x + y;
}

uint64_t nqueens(uint32_t all, uint32_t cols, uint32_t ld, uint32_t rd)
{
    if (cols == all)
        return 1;
    uint64_t res[32];
    unsigned k = 0;
    uint32_t avail = all & ~(cols | ld | rd);
    tbb::task_group g;
    while (avail) {
        uint32_t bit = avail & -avail;
        avail ^= bit;
        uint64_t *slot = &res[k++];
        g.run([=] { *slot = nqueens(all, cols | bit, ((ld | bit) << 1) & all, (rd | bit) >> 1); });
    }
    g.wait();
    uint64_t count = 0;
    for (unsigned i = 0; i < k; i++)
        count += res[i];
    return count;
}

uint64_t uts_range(uint64_t parent, uint32_t lo, uint32_t hi)
{
    if (hi - lo == 1) {
        uint64_t child = uts_child(parent, lo);
        uint32_t k = uts_nchildren(child);
        return 1 + (k ? uts_range(child, 0, k) : 0);
    }
    uint32_t mid = lo + (hi - lo) / 2;
    uint64_t a = 0;
    tbb::task_group g;
    g.run([&] { a = uts_range(parent, mid, hi); });
    uint64_t b = uts_range(parent, lo, mid);
    g.wait();
    return a + b;
}

uint64_t skynet(uint64_t num, uint64_t size)
{
    if (size == 1)
        return num;
    uint64_t res[10];
    uint64_t sub = size / 10;
    tbb::task_group g;
    for (uint64_t i = 1; i < 10; i++) {
        uint64_t *slot = &res[i];
        g.run([=] { *slot = skynet(num + i * sub, sub); });
    }
    res[0] = skynet(num, sub);
    g.wait();
    uint64_t sum = 0;
    for (int i = 0; i < 10; i++)
        sum += res[i];
    return sum;
}

template <typename F> auto in_arena(F &&f) -> decltype(f())
{
    return g_arena->execute(std::forward<F>(f));
}

} // namespace

extern "C" int tbb_peer_init(unsigned workers)
{
    try {
        g_control = std::make_unique<tbb::global_control>(
            tbb::global_control::max_allowed_parallelism, workers);
        g_arena = std::make_unique<tbb::task_arena>(static_cast<int>(workers));
        g_arena->initialize();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "weir-bench: oneTBB: %s\n", e.what());
        g_arena.reset();
        g_control.reset();
        return -1;
    }
    return 0;
}

extern "C" void tbb_peer_fini(void)
{
    g_arena.reset();
    g_control.reset();
}

extern "C" long tbb_fib(int n)
{
    return in_arena([n] { return fib(n); });
}

extern "C" uint64_t tbb_nqueens(int n)
{
    uint32_t all = (n >= 32) ? UINT32_MAX : ((UINT32_C(1) << n) - 1);
    return in_arena([all] { return nqueens(all, 0, 0, 0); });
}

extern "C" uint64_t tbb_uts(uint32_t root_children)
{
    return in_arena([root_children] {
        return 1 + (root_children ? uts_range(UTS_ROOT_ID, 0, root_children) : 0);
    });
}

extern "C" uint64_t tbb_skynet(uint64_t leaves)
{
    return in_arena([leaves] { return skynet(0, leaves); });
}
