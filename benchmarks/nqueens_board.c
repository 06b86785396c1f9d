/*
 * weir-bench nqueens --shape board — n queens in the shape of the BOTS and
 * Cilk benchmark (bots/omp-tasks/nqueens, cilk-5.4.6/examples/nqueens.cilk):
 * the partial solution is an array of columns, one a row; every level spawns
 * one task per column of the next row, and each task copies its parent's
 * board, places its queen and checks the whole board with the O(j^2) ok()
 * loop before it recurses. Far more work and memory traffic per task than
 * the bitmask version (bench_runtime.c), which keeps three words a task; the
 * two bracket what "nqueens" means in papers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "weir.h"

#include "bench.h"

#define NQB_MAX 20

/* BOTS's ok(): no two of the first n queens share a column or a diagonal. */
static int nqb_ok(int n, const char *a)
{
    for (int i = 0; i < n; i++) {
        char p = a[i];
        for (int j = i + 1; j < n; j++) {
            char q = a[j];
            if (q == p || q == p - (j - i) || q == p + (j - i))
                return 0;
        }
    }
    return 1;
}

static uint64_t nqb_serial_rec(int n, int j, const char *a, int col)
{
    char b[NQB_MAX];
    memcpy(b, a, (size_t)j);
    b[j] = (char)col;
    if (!nqb_ok(j + 1, b))
        return 0;
    if (j + 1 == n)
        return 1;
    uint64_t count = 0;
    for (int i = 0; i < n; i++)
        count += nqb_serial_rec(n, j + 1, b, i);
    return count;
}

/* Queen `col` in row `j` on a copy of the first j rows of `a`. `a` lives in
 * the parent task's frame until the parent's syncs, which come after ours. */
WEIR_TASK_4(uint64_t, nqb, int, n, int, j, const char *, a, int, col)
{
    char b[NQB_MAX];
    memcpy(b, a, (size_t)j);
    b[j] = (char)col;
    if (!nqb_ok(j + 1, b))
        return 0;
    if (j + 1 == n)
        return 1;
    for (int i = 0; i < n; i++)
        WEIR_SPAWN(nqb, n, j + 1, b, i);
    uint64_t count = 0;
    for (int i = 0; i < n; i++)
        count += WEIR_SYNC(nqb);
    return count;
}

WEIR_TASK_1(uint64_t, nqb_top, int, n)
{
    static const char empty[NQB_MAX];
    for (int i = 0; i < n; i++)
        WEIR_SPAWN(nqb, n, 0, empty, i);
    uint64_t count = 0;
    for (int i = 0; i < n; i++)
        count += WEIR_SYNC(nqb);
    return count;
}

static uint64_t nqb_serial_v(bench_ctx *c)
{
    static const char empty[NQB_MAX];
    uint64_t count = 0;
    for (int i = 0; i < (int)c->n; i++)
        count += nqb_serial_rec((int)c->n, 0, empty, i);
    return count;
}

static uint64_t nqb_weir_v(bench_ctx *c)
{
    return nqb_top_run(c->rt, (int)c->n);
}

int bench_nqueens_shape(int argc, char **argv, bool *board)
{
    *board = false;
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int m = bench_opt_value(argc, argv, &i, "--shape", &val);
        if (m < 0)
            return BENCH_EXIT_USAGE;
        if (m == 0)
            return bench_usage_error("nqueens: unknown option '%s'", argv[i]);
        if (strcmp(val, "board") == 0)
            *board = true;
        else if (strcmp(val, "bitmask") == 0)
            *board = false;
        else
            return bench_usage_error("nqueens: --shape '%s': expected bitmask or board", val);
    }
    return 0;
}

int bench_nqueens_board(const bench_opts *o)
{
    static const bench_variant variants[] = {
        {"serial", BENCH_BASELINE, nqb_serial_v, NULL, NULL, NULL, NULL},
        {"weir", BENCH_WEIR, nqb_weir_v, NULL, NULL, NULL, NULL},
    };
    static const bench_spec spec = {"nqueens-board", variants, sizeof variants / sizeof variants[0],
                                    NULL, false};
    bench_ctx c = {0};
    c.n = o->has_n ? o->n : 10;
    if (c.n < 1 || c.n > NQB_MAX)
        return bench_usage_error("nqueens: --n %" PRIu64 " out of range [1, %d]", c.n, NQB_MAX);
    return bench_run(o, &spec, &c);
}
