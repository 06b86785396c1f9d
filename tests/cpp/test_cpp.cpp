// weir from C++: the umbrella header compiles as C++17/C++20 (g++ and
// clang++), the fork-join macros define and run tasks, WEIR_SEQ / WEIR_PAR
// build a small pipeline, and the atomics of the public structs have the
// layout the C library was built with. Exits 1 with a line on stderr when a
// result is wrong.
#include <weir.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

// Fork-join fib, as in include/weir/task.h.
WEIR_TASK_1(long, fib, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fib, n - 1);
    long b = WEIR_CALL(fib, n - 2);
    long a = WEIR_SYNC(fib);
    return a + b;
}

// A void task with two arguments: sums a range by halves into *out.
WEIR_VOID_TASK_3(range_sum, long, lo, long, hi, long *, out)
{
    if (hi - lo <= 64) {
        long s = 0;
        for (long i = lo; i < hi; i++)
            s += i;
        *out = s;
        return;
    }
    long mid = lo + (hi - lo) / 2;
    long left = 0, right = 0;
    WEIR_SPAWN(range_sum, lo, mid, &left);
    WEIR_CALL(range_sum, mid, hi, &right);
    WEIR_SYNC(range_sum);
    *out = left + right;
}

static long fib_serial(int n)
{
    return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2);
}

static void square(void *, const void *in, void *out)
{
    long v = *static_cast<const long *>(in);
    *static_cast<long *>(out) = v * v;
}

static bool is_even(void *, const void *in)
{
    return *static_cast<const long *>(in) % 2 == 0;
}

static int fail(const char *what)
{
    std::fprintf(stderr, "test_cpp: %s (%s)\n", what, weir_last_error());
    return 1;
}

int main()
{
    static_assert(sizeof(weir_latch) == sizeof(uint32_t), "latch layout");
    static_assert(sizeof(weir_frame) == WEIR_CACHELINE, "one frame, one cache line");
    static_assert(WEIR_VERSION_NUMBER >= 0, "version header");
    if (std::strcmp(weir_version(), WEIR_VERSION_STRING) != 0)
        return fail("weir_version() differs from WEIR_VERSION_STRING");

    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 2;
    cfg.affinity = WEIR_AFFINITY_NONE;
    weir_runtime *rt = nullptr;
    if (weir_runtime_create(&cfg, &rt) != 0)
        return fail("weir_runtime_create");

    for (int n : {0, 1, 2, 10, 20, 25}) {
        long got = fib_run(rt, n);
        if (got != fib_serial(n)) {
            std::fprintf(stderr, "test_cpp: fib(%d) = %ld, expected %ld\n", n, got, fib_serial(n));
            return 1;
        }
    }
    long sum = 0;
    range_sum_run(rt, 0, 100000, &sum);
    if (sum != 100000L * 99999L / 2)
        return fail("range_sum");

    // A pipeline: source 1..N, then WEIR_PAR of two branches (even squares,
    // and every value), each collected; WEIR_SEQ chains them.
    const long N = 1000;
    std::vector<long> items(N);
    for (long i = 0; i < N; i++)
        items[i] = i + 1;
    weir_collector squares, all;
    if (weir_collector_init(&squares, sizeof(long)) != 0 ||
        weir_collector_init(&all, sizeof(long)) != 0)
        return fail("weir_collector_init");
    weir_term *t =
        WEIR_SEQ(weir_array_source("items", items.data(), items.size(), sizeof(long)),
                 WEIR_PAR(WEIR_SEQ(weir_filter("even", sizeof(long), is_even, nullptr),
                                   weir_map("square", sizeof(long), sizeof(long), square, nullptr),
                                   weir_collect("squares", &squares)),
                          weir_collect("all", &all)));
    if (t == nullptr)
        return fail("building the pipeline");
    weir_pipeline *p = nullptr;
    int err = weir_pipeline_create(rt, t, nullptr, &p);
    if (err != 0) {
        weir_term_destroy(t);
        return fail("weir_pipeline_create");
    }
    err = weir_pipeline_run(p);
    if (err != 0)
        return fail("weir_pipeline_run");
    weir_pipeline_destroy(p);

    long want_sq = 0;
    for (long i = 2; i <= N; i += 2)
        want_sq += i * i;
    long got_sq = 0, got_all = 0;
    for (size_t i = 0; i < squares.count; i++)
        got_sq += static_cast<const long *>(squares.data)[i];
    for (size_t i = 0; i < all.count; i++)
        got_all += static_cast<const long *>(all.data)[i];
    if (squares.count != static_cast<size_t>(N / 2) || got_sq != want_sq)
        return fail("the squares branch");
    if (all.count != static_cast<size_t>(N) || got_all != N * (N + 1) / 2)
        return fail("the all branch");
    weir_collector_deinit(&squares);
    weir_collector_deinit(&all);

    char text[2048];
    if (weir_runtime_describe(rt, text, sizeof text) <= 0)
        return fail("weir_runtime_describe");
    weir_runtime_destroy(rt);
    std::printf("test_cpp: ok (%s, C++%ld)\n", weir_version(), static_cast<long>(__cplusplus));
    return 0;
}
