/*
 * weir-bench — the benchmark driver: `weir-bench SUBCOMMAND [options]`.
 * This file holds the subcommand table, the common option parser and --help;
 * the subcommands live in bench_runtime.c (and bench_terms.c when present,
 * see the hook described in bench.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/config.h"

#include "bench.h"

typedef int (*bench_cmd_fn)(const bench_opts *o, int argc, char **argv);

typedef struct bench_cmd {
    const char *name;
    bench_cmd_fn fn;
    const char *summary; /* one line for the overview */
    const char *help;    /* size, variants and output of the subcommand */
} bench_cmd;

#ifdef WEIR_BENCH_HAVE_OMP
#define PEERS_OMP ",omp"
#else
#define PEERS_OMP ""
#endif
#ifdef WEIR_BENCH_HAVE_TBB
#define PEERS_TBB ",tbb"
#else
#define PEERS_TBB ""
#endif
#define PEERS "serial,weir" PEERS_OMP PEERS_TBB

static const bench_cmd commands[] = {
    {"fib", bench_fib, "fork-join fib(n): the cost of spawn/sync",
     "  --n N        fib argument, 0..92 (default 30)\n"
     "  variants     " PEERS "\n"
     "  weir spawns fib(n-1), calls fib(n-2), syncs; omp uses '#pragma omp task' +\n"
     "  taskwait; tbb a task_group. Every result is checked against serial.\n"},
    {"nqueens", bench_nqueens, "count the solutions of n queens, one task per placement",
     "  --n N        board size, 1..20 (default 10)\n"
     "  variants     " PEERS "\n"
     "  Every level spawns one task per legal column and syncs them all.\n"
     "  --shape S    bitmask (default: three words a task) or board: the BOTS/Cilk\n"
     "               shape, one task per column, each copies its parent's board and\n"
     "               checks it with ok() (bench nqueens-board; variants serial,weir)\n"},
    {"uts", bench_uts, "count the nodes of an unbalanced tree (UTS-style, binomial)",
     "  --n N        children of the root (default 20000: 2714769 nodes); every\n"
     "               other node has 8 children with probability 0.124 (hash-based,\n"
     "               deterministic); about 125 nodes per root child on average\n"
     "  variants     " PEERS "\n"
     "  The children of a node are split in halves, one spawn per split.\n"
     "  Extra: nodes_per_s (= node count / median). The result is the node count.\n"
     "  --tree T     T1 or T3: the published UTS trees on the SHA-1 generator (bench\n"
     "               uts-T1 / uts-T3; variants serial,weir), one task per node:\n"
     "               T1 geometric, depth 10, b 4, seed 19: 4130071 nodes;\n"
     "               T3 binomial, b0 2000, q 0.124875, m 8, seed 42: 4112897 nodes.\n"
     "               The count is checked against the published one. With --tree,\n"
     "               --n scales the tree (T1: depth, T3: root branching) and the\n"
     "               count is checked against serial only.\n"},
    {"skynet", bench_skynet, "skynet: a 10-ary tree of tasks, sum of the leaf ids",
     "  --n N        leaves, a power of 10 (default 1M)\n"
     "  variants     " PEERS "\n"
     "  Every node spawns 9 children, runs the 10th inline and syncs.\n"
     "  Extra: leaves_per_s.\n"},
    {"submit", bench_submit, "detached jobs injected from a thread outside the runtime",
     "  --n N        jobs per run (default 1M), preallocated; each increments a counter\n"
     "               and the last one sets a weir_latch the main thread waits on\n"
     "  variants     direct,weir (direct: the same job function called in a loop)\n"
     "  Extra: tasks_per_s.\n"},
    {"idle", bench_idle, "CPU burnt by an idle runtime",
     "  --seconds S  sleep per run (default 2); --runs defaults to 1 here\n"
     "  variants     none,weir,weir_after\n"
     "               none: no runtime (the floor); weir: right after creating the\n"
     "               runtime; weir_after: after a burst of fork-join work (fib 27).\n"
     "               Each run creates and destroys its own runtime.\n"
     "  Columns: median_ms is the wall time of the sleep, n is the sleep in ms.\n"
     "  Extra: cpu_s (user+sys of the process during the sleep, getrusage),\n"
     "  wall_s, cpu_pct = 100 * cpu_s / wall_s, threads (live threads).\n"},
    {"timers", bench_timers, "runtime timers: arm + fire throughput, lateness, idle CPU",
     "  --n N        timers per run (default 1M); --runs defaults to 3 here\n"
     "  --spread-ms M  spread of the deadlines of variant spread (default 2000)\n"
     "  --seconds S  sleep of variant idle (default 2)\n"
     "  variants     heap,burst,spread,idle\n"
     "               heap: the serial baseline, a binary heap of the same n\n"
     "               deadlines on one thread, each pop calling the job directly;\n"
     "               burst: n timers armed from the workers (a seeding job per\n"
     "               worker), random deadlines all due at once (in the ms before\n"
     "               the start): arm + fire + run throughput;\n"
     "               spread: deadlines uniform over M ms after a 500 ms lead:\n"
     "               lateness under a steady load; idle: 10000 timers an hour\n"
     "               away, CPU of the process over S seconds.\n"
     "  Extra: timers_per_s, arm_ms (arming done, from the start), lat_med_us,\n"
     "  lat_p99_us, lat_max_us (run time - deadline, median over runs), early\n"
     "  (jobs run before their deadline: must be 0); idle: cpu_s, wall_s, cpu_pct.\n"},
#ifdef WEIR_BENCH_TERMS
    {"fanout", bench_fanout,
     "term layer: a source broadcast to N branches multiply -> sink (throughput, threads, RSS)",
     NULL},
    {"chain", bench_chain, "term layer: per-item cost of a fused chain vs a direct-call loop",
     NULL},
    {"farm", bench_farm,
     "term layer: one stage of W ns per record, weir_parallel vs serial, pthreads, oneTBB", NULL},
    {"keyed", bench_keyed,
     "term layer: count and mean per key, weir_keyed vs serial and key-owning pthreads", NULL},
    {"spawn", bench_spawn,
     "term layer: per-key sub-pipelines made at run time (weir_spawn): items/s, creation, memory",
     NULL},
    {"lines", bench_lines,
     "term layer: lines read, split into words, counted: weir_file_lines vs a read(2) loop", NULL},
    {"delay", bench_delay,
     "term layer: a pipeline timed alone and beside a weir_delay (no worker held); lateness", NULL},
    {"build", bench_build,
     "term layer: build, compile, run and destroy of N parallel branches, phase by phase", NULL},
#endif
#ifdef WEIR_BENCH_REDIS
    {"redis", bench_redis,
     "Redis Streams: source -> map -> sink in 1..N processes of one group vs a hiredis loop", NULL},
#endif
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_common_options(FILE *f)
{
    fprintf(f,
            "Common options (--opt V and --opt=V both work; sizes accept k/M/G = 1e3/1e6/1e9):\n"
            "  --n N            problem size (meaning and default per subcommand)\n"
            "  --workers W      worker threads of weir and of the peers, 1..%u\n"
            "                   (default: WEIR_WORKERS, else one per core)\n"
            "  --runs R         timed runs per variant (default 5); the table shows the\n"
            "                   median and the minimum\n"
            "  --warmup K       untimed runs per variant before timing (default 1)\n"
            "  --variants LIST  comma-separated subset of the variants (default: all built)\n"
            "  --seconds S      duration, for subcommands that run for a time (idle)\n"
            "  --json           one JSON object per line instead of the table\n"
            "  --help           this text (after a subcommand: only that subcommand)\n",
            WEIR_MAX_WORKERS);
}

static void print_output_help(FILE *f)
{
    fputs("Output: a table (bench, variant, workers, n, median_ms, min_ms, vs_serial =\n"
          "median / baseline median taken in the same process, steals, extras), or with\n"
          "--json first a context record ({\"record\":\"context\", weir_version, git_commit,\n"
          "compiler, cpu_model, online_cpus, pus_allowed, workers, date, command}), then\n"
          "one object per line: bench, variant, workers, n, runs, median_ns, min_ns,\n"
          "ratio_vs_serial (null without a baseline), result, and for weir variants the\n"
          "counters of weir_runtime_stats_total() over the timed runs (reset after the\n"
          "warm-up): steal_attempts, steals, tasks_stolen, steal_empty, steal_contended,\n"
          "leapfrogs, publishes, parks, wakeups, tasks_run, injected, spawns (null unless\n"
          "built with -Dc_args=-DWEIR_COUNT_SPAWNS=1, which costs fib about 20 %).\n"
          "Every row also has cpu_pct = process CPU / wall time of the timed runs (when\n"
          "they took >= 10 ms in total): about 100 x workers if every worker computes.\n"
          "The runtime is configured by weir_config_init() + the WEIR_* environment\n"
          "(WEIR_WORKERS, WEIR_AFFINITY, WEIR_PLACES, WEIR_SPIN, WEIR_STATS=1 prints the\n"
          "per-worker table at exit) + --workers.\n"
          "Exit status: 0 ok, 1 a run failed (wrong result, runtime error), 2 usage error.\n",
          f);
}

static void print_usage(FILE *f)
{
    fputs("Usage: weir-bench SUBCOMMAND [options]\n"
          "       weir-bench SUBCOMMAND --help\n"
          "       weir-bench --version\n\nSubcommands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
#ifndef WEIR_BENCH_TERMS
    fputs("  (fanout, chain: term benchmarks, not built in: benchmarks/bench_terms.c absent)\n", f);
#endif
    fputc('\n', f);
    print_common_options(f);
    fputc('\n', f);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (commands[i].help == NULL)
            continue;
        fprintf(f, "%s:\n%s\n", commands[i].name, commands[i].help);
    }
    print_output_help(f);
#ifdef WEIR_BENCH_HAVE_OMP
    fputs("Peers built in: OpenMP tasks (libgomp)", f);
#else
    fputs("Peers built in: (no OpenMP)", f);
#endif
#ifdef WEIR_BENCH_HAVE_TBB
    fputs(", oneTBB task_group.\n", f);
#else
    fputs(", (no oneTBB).\n", f);
#endif
    fputs("Run 'weir-bench SUBCOMMAND --help' for the options of term subcommands.\n", f);
}

static int parse_variants(bench_opts *o, const char *list)
{
    o->nvariants = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return bench_usage_error("--variants '%s': empty variant name", list);
        if (len >= BENCH_VARIANT_LEN)
            return bench_usage_error("--variants '%s': unknown variant '%.*s'", list, (int)len, p);
        if (o->nvariants >= BENCH_MAX_VARIANTS)
            return bench_usage_error("--variants '%s': more than %d variants", list,
                                     BENCH_MAX_VARIANTS);
        memcpy(o->variants[o->nvariants], p, len);
        o->variants[o->nvariants][len] = '\0';
        o->nvariants++;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int parse_uint_opt(const char *name, const char *val, uint64_t lo, uint64_t hi,
                          uint64_t *out)
{
    if (!bench_parse_u64(val, out))
        return bench_usage_error("%s '%s': not a non-negative integer", name, val);
    if (*out < lo || *out > hi)
        return bench_usage_error("%s %s: out of range [%" PRIu64 ", %" PRIu64 "]", name, val, lo,
                                 hi);
    return 0;
}

/* Parse the common options of argv[2..]; whatever is not one of them goes to
 * rest[1..] (rest[0] = the subcommand) for the subcommand to parse. */
static int parse_options(bench_opts *o, int argc, char **argv, int *nrest, char **rest)
{
    *nrest = 1;
    rest[0] = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        uint64_t u;
        int m;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
        } else if ((m = bench_opt_value(argc, argv, &i, "--n", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_u64(val, &o->n))
                return bench_usage_error("--n '%s': not a non-negative integer", val);
            o->has_n = true;
        } else if ((m = bench_opt_value(argc, argv, &i, "--workers", &val)) != 0) {
            if (m > 0 && strchr(val, ',')) {
                /* a list (farm, keyed): the subcommand parses it */
                static char list[256];
                snprintf(list, sizeof list, "--workers=%s", val);
                rest[(*nrest)++] = list;
                continue;
            }
            if (m < 0 || parse_uint_opt("--workers", val, 0, WEIR_MAX_WORKERS, &u) != 0)
                return BENCH_EXIT_USAGE;
            o->workers = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--runs", &val)) != 0) {
            if (m < 0 || parse_uint_opt("--runs", val, 1, 100000, &u) != 0)
                return BENCH_EXIT_USAGE;
            o->runs = (unsigned)u;
            o->has_runs = true;
        } else if ((m = bench_opt_value(argc, argv, &i, "--warmup", &val)) != 0) {
            if (m < 0 || parse_uint_opt("--warmup", val, 0, 1000, &u) != 0)
                return BENCH_EXIT_USAGE;
            o->warmup = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--seconds", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            if (!bench_parse_double(val, &o->seconds))
                return bench_usage_error("--seconds '%s': not a non-negative number", val);
            o->has_seconds = true;
        } else if ((m = bench_opt_value(argc, argv, &i, "--variants", &val)) != 0) {
            if (m < 0 || parse_variants(o, val) != 0)
                return BENCH_EXIT_USAGE;
        } else {
            rest[(*nrest)++] = argv[i];
        }
    }
    rest[*nrest] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return BENCH_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return BENCH_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        bench_print_version();
        return BENCH_EXIT_OK;
    }
    const bench_cmd *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS && cmd == NULL; i++)
        if (strcmp(name, commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL)
        return bench_usage_error("unknown subcommand '%s'", name);

    bench_opts o;
    memset(&o, 0, sizeof o);
    o.cmd = cmd->name;
    o.runs = 5;
    o.warmup = 1;

    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (rest == NULL) {
        fprintf(stderr, "weir-bench: out of memory\n");
        return BENCH_EXIT_FAIL;
    }
    int nrest = 0;
    int rc = parse_options(&o, argc, argv, &nrest, rest);
    if (rc == 0 && o.help) {
        printf("Usage: weir-bench %s [options]\n\n", cmd->name);
        if (cmd->help != NULL)
            printf("%s\n", cmd->help);
        print_common_options(stdout);
        if (cmd->help == NULL) {
            /* A term subcommand prints its own options (see the hook in bench.h). */
            putchar('\n');
            fflush(stdout);
            rc = cmd->fn(&o, nrest, rest);
        }
    } else if (rc == 0) {
        if (o.json)
            bench_print_context(&o, argc, argv);
        rc = cmd->fn(&o, nrest, rest);
    }
    free(rest);
    return rc;
}
