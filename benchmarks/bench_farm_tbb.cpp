/*
 * weir-bench farm: the oneTBB peer. parallel_pipeline with a serial_in_order
 * source, a parallel filter doing the work and a serial_in_order sink that
 * checks the order and sums, `per_token` records per token (1 = the classic
 * one-record token). The same kernel as the C variants (farm_kernel.h).
 */
#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include "farm_kernel.h"

namespace
{
struct token {
    uint64_t first = 0;
    uint64_t count = 0;
    std::vector<farm_rec> recs;
};
} // namespace

extern "C" int bench_tbb_farm(uint64_t n, uint64_t iters, unsigned workers, uint64_t per_token,
                              uint64_t *sum, int *ordered)
{
    try {
        tbb::task_arena arena((int)workers);
        const size_t ntokens = 4 * (size_t)workers;
        /* A ring of tokens: at most ntokens are alive and the sink retires
         * them in input order, so the one made ntokens ago is free again. */
        std::vector<token> ring(ntokens);
        for (token &t : ring)
            t.recs.resize(per_token);
        uint64_t next = 0, made = 0, expect = 0, s = 0;
        bool inorder = true;
        auto input = tbb::make_filter<void, token *>(
            tbb::filter_mode::serial_in_order, [&](tbb::flow_control &fc) -> token * {
                if (next >= n) {
                    fc.stop();
                    return nullptr;
                }
                token *t = &ring[made++ % ntokens];
                t->first = next;
                t->count = n - next < per_token ? n - next : per_token;
                next += t->count;
                return t;
            });
        auto work = tbb::make_filter<token *, token *>(
            tbb::filter_mode::parallel, [iters](token *t) -> token * {
                for (uint64_t i = 0; i < t->count; i++) {
                    uint64_t id = t->first + i;
                    t->recs[i].id = id;
                    t->recs[i].val = farm_work(id, iters);
                }
                return t;
            });
        auto output =
            tbb::make_filter<token *, void>(tbb::filter_mode::serial_in_order, [&](token *t) {
                for (uint64_t i = 0; i < t->count; i++) {
                    if (t->recs[i].id != expect)
                        inorder = false;
                    expect = t->recs[i].id + 1;
                    s += t->recs[i].val;
                }
            });
        arena.execute([&] { tbb::parallel_pipeline(ntokens, input & work & output); });
        *sum = s;
        *ordered = inorder ? 1 : 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "weir-bench: farm/tbb: %s\n", e.what());
        return -1;
    }
    return 0;
}
