/*
 * weir-bench — oneTBB peers of the term benchmarks (C++17), called from
 * bench_terms.c through the extern "C" functions below (declared there too:
 * keep the two in sync).
 *
 * chain: src -> S stages (x + 1) -> sink, with the very callbacks the weir
 * variant uses (a weir_map_fn per stage, a weir_sink_fn), called through
 * pointers:
 *   tbb-pipeline  tbb::parallel_pipeline. A serial_in_order input filter
 *                 copies up to B records from the source array into a token
 *                 (as weir copies records into a stream), S parallel filters
 *                 apply one stage each to the whole token, a serial_in_order
 *                 output filter feeds every record to the sink.
 *   tbb-graph     tbb::flow::graph. An input_node emits one message per
 *                 record, one serial function_node per stage, a serial sink
 *                 node. Serial like a weir term (one activation at a time);
 *                 with unlimited concurrency every message would become a
 *                 pending task and the graph would hold n of them.
 *
 * Worker count: as in peer_tbb.cpp, a tbb::global_control caps the process
 * at `workers` threads and every run executes inside a task_arena of
 * `workers` slots, one of which is the calling thread.
 */
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/task_arena.h>

#include "weir/terms.h"

extern "C" {
int bench_tbb_terms_init(unsigned workers);
void bench_tbb_terms_fini(void);
int bench_tbb_chain_pipeline(const int64_t *src, size_t n, unsigned stages, size_t batch,
                             unsigned tokens, weir_map_fn map, weir_sink_fn sink, void *sink_state);
int bench_tbb_chain_graph(const int64_t *src, size_t n, unsigned stages, weir_map_fn map,
                          weir_sink_fn sink, void *sink_state);
}

namespace
{

std::unique_ptr<tbb::global_control> g_control;
std::unique_ptr<tbb::task_arena> g_arena;

struct token {
    std::vector<int64_t> v;
    size_t count = 0;
};

int fail(const char *what, const std::exception &e)
{
    std::fprintf(stderr, "weir-bench: %s: oneTBB: %s\n", what, e.what());
    return -1;
}

} // namespace

extern "C" int bench_tbb_terms_init(unsigned workers)
{
    try {
        g_control = std::make_unique<tbb::global_control>(
            tbb::global_control::max_allowed_parallelism, workers);
        g_arena = std::make_unique<tbb::task_arena>(static_cast<int>(workers));
        g_arena->initialize();
    } catch (const std::exception &e) {
        g_arena.reset();
        g_control.reset();
        return fail("init", e);
    }
    return 0;
}

extern "C" void bench_tbb_terms_fini(void)
{
    g_arena.reset();
    g_control.reset();
}

extern "C" int bench_tbb_chain_pipeline(const int64_t *src, size_t n, unsigned stages, size_t batch,
                                        unsigned tokens, weir_map_fn map, weir_sink_fn sink,
                                        void *sink_state)
{
    if (!g_arena || stages == 0 || batch == 0 || tokens == 0)
        return -1;
    try {
        /* A ring of `tokens` buffers. The output filter is serial_in_order,
         * so tokens retire in the order the input filter made them; with at
         * most `tokens` alive, the one made `tokens` tokens ago has retired
         * when the input filter reuses its buffer. */
        std::vector<token> ring(tokens);
        for (token &t : ring)
            t.v.resize(batch);
        size_t next = 0, made = 0;

        auto input = tbb::make_filter<void, token *>(
            tbb::filter_mode::serial_in_order, [&](tbb::flow_control &fc) -> token * {
                if (next >= n) {
                    fc.stop();
                    return nullptr;
                }
                token *t = &ring[made++ % ring.size()];
                t->count = std::min(batch, n - next);
                std::memcpy(t->v.data(), src + next, t->count * sizeof(int64_t));
                next += t->count;
                return t;
            });
        auto stage = [map](token *t) -> token * {
            for (size_t i = 0; i < t->count; i++) {
                int64_t y;
                map(nullptr, &t->v[i], &y);
                t->v[i] = y;
            }
            return t;
        };
        tbb::filter<token *, token *> middle =
            tbb::make_filter<token *, token *>(tbb::filter_mode::parallel, stage);
        for (unsigned s = 1; s < stages; s++)
            middle = middle & tbb::make_filter<token *, token *>(tbb::filter_mode::parallel, stage);
        auto output = tbb::make_filter<token *, void>(tbb::filter_mode::serial_in_order,
                                                      [sink, sink_state](token *t) {
                                                          for (size_t i = 0; i < t->count; i++)
                                                              sink(sink_state, &t->v[i]);
                                                      });
        tbb::filter<void, void> all = input & middle & output;
        g_arena->execute([&] { tbb::parallel_pipeline(tokens, all); });
    } catch (const std::exception &e) {
        return fail("chain/tbb-pipeline", e);
    }
    return 0;
}

extern "C" int bench_tbb_chain_graph(const int64_t *src, size_t n, unsigned stages, weir_map_fn map,
                                     weir_sink_fn sink, void *sink_state)
{
    if (!g_arena || stages == 0)
        return -1;
    try {
        g_arena->execute([&] {
            using namespace tbb::flow;
            graph g;
            size_t next = 0;
            input_node<int64_t> source(g, [&](tbb::flow_control &fc) -> int64_t {
                if (next >= n) {
                    fc.stop();
                    return 0;
                }
                return src[next++];
            });
            std::vector<std::unique_ptr<function_node<int64_t, int64_t>>> nodes;
            nodes.reserve(stages);
            for (unsigned s = 0; s < stages; s++)
                nodes.push_back(
                    std::make_unique<function_node<int64_t, int64_t>>(g, serial, [map](int64_t x) {
                        int64_t y;
                        map(nullptr, &x, &y);
                        return y;
                    }));
            function_node<int64_t> out(g, serial, [sink, sink_state](int64_t x) {
                sink(sink_state, &x);
                return continue_msg();
            });
            make_edge(source, *nodes[0]);
            for (unsigned s = 1; s < stages; s++)
                make_edge(*nodes[s - 1], *nodes[s]);
            make_edge(*nodes[stages - 1], out);
            source.activate();
            g.wait_for_all();
        });
    } catch (const std::exception &e) {
        return fail("chain/tbb-graph", e);
    }
    return 0;
}
