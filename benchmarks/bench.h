/*
 * weir-bench — shared helpers: options, timing, statistics, output, and the
 * generic variant runner every subcommand uses.
 *
 * Layout of the driver (one concept a file):
 *   weir-bench.c      main(): the subcommand table, option parsing, --help
 *   bench.c           this header's helpers
 *   bench_runtime.c   the runtime subcommands (fib, nqueens, uts, skynet,
 *                     submit, idle) and their weir variants
 *   serial.c          serial / direct-call baselines (same flags as weir)
 *   peer_omp.c        OpenMP-tasks peers (-fopenmp), when built
 *   peer_tbb.cpp      oneTBB task_group peers (C++17), when built
 *   kernels.h         prototypes of the baseline and peer kernels and the
 *                     UTS tree definition shared by all of them
 *
 * Exit status of weir-bench and of every subcommand function:
 *   0 success, 1 a run failed (wrong result, runtime error), 2 usage error.
 *
 * ---------------------------------------------------------------------------
 * Hook for the term benchmarks (bench_terms.c, written separately)
 * ---------------------------------------------------------------------------
 * benchmarks/meson.build compiles benchmarks/bench_terms.c into weir-bench
 * only if that file exists, and then defines WEIR_BENCH_TERMS for every C file
 * of the driver. If benchmarks/bench_terms_tbb.cpp exists too (and oneTBB is
 * found), it is compiled as C++17 with the oneTBB peers and
 * WEIR_BENCH_TERMS_TBB is defined. bench_terms.c must define
 *
 *     int bench_fanout(const bench_opts *o, int argc, char **argv);
 *     int bench_chain(const bench_opts *o, int argc, char **argv);
 *
 * (declared below). The driver parses the common options (--n, --workers,
 * --runs, --warmup, --json, --variants, --seconds, --help) into `o`; whatever
 * it does not recognise is left in argv[1..argc-1] (argv[0] is the subcommand
 * name), so a term subcommand parses its own options there (use
 * bench_parse_u64() and friends) and returns 2 after a message on stderr for
 * anything it does not know; bench_no_extra_args() does that for a
 * subcommand with no options of its own. When `o->help` is set the function
 * prints its own options and variants to stdout and returns 0 without
 * running anything. It checks `o->variants` with bench_check_variants(), may
 * use bench_run() (the generic runner below) or time things itself, creates
 * its runtime with bench_runtime_create(), and prints each result with
 * bench_print_row() so the table / JSON format stays uniform (extras such as
 * "threads", "rss_kib" or "items_per_s" go in bench_row.extra). C++ files can
 * include this header: it has extern "C" guards and includes no weir header
 * that needs C11 atomics.
 */
#ifndef WEIR_BENCH_H
#define WEIR_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weir/config.h"
#include "weir/runtime.h"
#include "weir/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_EXIT_OK    0
#define BENCH_EXIT_FAIL  1
#define BENCH_EXIT_USAGE 2

#define BENCH_MAX_VARIANTS 16
#define BENCH_VARIANT_LEN  32

/** Common options, parsed by the driver before the subcommand runs. */
typedef struct bench_opts {
    const char *cmd;  /**< subcommand name */
    uint64_t n;       /**< --n: problem size (meaning per subcommand) */
    bool has_n;       /**< --n was given (else the subcommand's default) */
    unsigned workers; /**< --workers: 0 = default (all cores, or WEIR_WORKERS) */
    unsigned runs;    /**< --runs: timed runs per variant */
    bool has_runs;
    unsigned warmup; /**< --warmup: untimed runs per variant before timing (default 1) */
    double seconds;  /**< --seconds (idle, and term benchmarks that run for a time) */
    bool has_seconds;
    bool json;          /**< --json: one JSON object per line instead of the table */
    bool help;          /**< --help after the subcommand */
    unsigned nvariants; /**< --variants: 0 = every variant that is built in */
    char variants[BENCH_MAX_VARIANTS][BENCH_VARIANT_LEN];
} bench_opts;

/* ---- parsing -------------------------------------------------------------- */

/** Parse an unsigned decimal integer with an optional k/M/G suffix (x1000).
 *  Rejects signs, empty strings, trailing garbage and overflow.
 *  @return true on success. */
bool bench_parse_u64(const char *s, uint64_t *out);
/** Parse a finite, non-negative decimal number. @return true on success. */
bool bench_parse_double(const char *s, double *out);
/** If argv[*i] is `--name VALUE` or `--name=VALUE`, store VALUE in *val,
 *  advance *i past it and return 1; return 0 if it is another option; return
 *  -1 (after a message) if the value is missing. */
int bench_opt_value(int argc, char **argv, int *i, const char *name, const char **val);
/** Print "weir-bench: <message>" and a hint to use --help to stderr;
 *  returns BENCH_EXIT_USAGE. printf-style. */
int bench_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** For subcommands without options of their own: BENCH_EXIT_USAGE (with a
 *  message) if argc > 1, else 0. */
int bench_no_extra_args(int argc, char **argv);
/** Check that every name in o->variants is one of `known` (nknown names).
 *  @return 0, or BENCH_EXIT_USAGE after a message naming the bad variant and
 *  listing the known ones. */
int bench_check_variants(const bench_opts *o, const char *const *known, size_t nknown);
/** Was variant `name` selected (true for every name when --variants was not given)? */
bool bench_variant_selected(const bench_opts *o, const char *name);

/* ---- measurement ---------------------------------------------------------- */

/** CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/** User + system CPU time of the whole process (all threads), getrusage. */
uint64_t bench_cpu_ns(void);
/** Resident set size in KiB from /proc/self/statm; 0 if unavailable. */
uint64_t bench_rss_kib(void);
/** Live threads of the process from /proc/self/status (Threads:); 0 if unavailable. */
unsigned bench_threads(void);
/** Online CPUs (sysconf). */
unsigned bench_online_cpus(void);
/** Sleep `seconds` of CLOCK_MONOTONIC time (resumes after signals). */
void bench_sleep(double seconds);
/** Median of `n` values (sorts `v` in place; mean of the middle two when n is
 *  even). 0 for n == 0. */
uint64_t bench_median(uint64_t *v, size_t n);
/** Smallest of `n` values; 0 for n == 0. */
uint64_t bench_min(const uint64_t *v, size_t n);

/** Worker count for the peers: --workers, else WEIR_WORKERS (or the build's
 *  default_workers), else the online CPUs. */
unsigned bench_default_workers(const bench_opts *o);
/** Create the runtime of one bench invocation: weir_config_init(),
 *  weir_config_from_env(), then workers from --workers when given. Prints the
 *  error (weir_last_error()) on failure.
 *  @return 0 or the negative errno of the failing call. Pair: weir_runtime_destroy(). */
int bench_runtime_create(const bench_opts *o, weir_runtime **rt);

/* ---- output --------------------------------------------------------------- */

#define BENCH_MAX_EXTRA 8

/** A named extra value of a row (JSON key and table "key=value"). */
typedef struct bench_extra {
    const char *key;
    double value;
    bool integer; /**< print without decimals */
} bench_extra;

/** One result line: a variant of a benchmark at one size. */
typedef struct bench_row {
    const char *bench;
    const char *variant;
    unsigned workers;
    uint64_t n;
    unsigned runs;
    uint64_t median_ns;
    uint64_t min_ns;
    double ratio; /**< median / baseline median; NaN = no baseline */
    bool has_result;
    uint64_t result;         /**< the checked result (fib value, node count, ...) */
    bool has_stats;          /**< weir variants: the counters below are set */
    weir_worker_stats stats; /**< weir_runtime_stats_total over the timed runs */
    unsigned nextra;
    bench_extra extra[BENCH_MAX_EXTRA];
} bench_row;

/** Start a row with the given identity; everything else zero, ratio NaN. */
void bench_row_init(bench_row *r, const char *bench, const char *variant, unsigned workers,
                    uint64_t n);
/** Append an extra value (ignored beyond BENCH_MAX_EXTRA). */
void bench_row_extra(bench_row *r, const char *key, double value, bool integer);
/** Print a row: a table line (with the header before the first line of the
 *  process) or, with --json, one JSON object on one line. Flushes stdout. */
void bench_print_row(const bench_opts *o, const bench_row *r);
/** In table mode, print a "# ..." comment line (context, skipped variants);
 *  nothing with --json. printf-style. */
void bench_note(const bench_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** context.c: with --json, the first line: {"record":"context", weir_version,
 *  git_commit, compiler, cpu_model, online_cpus, pus_allowed, workers, date
 *  (UTC, ISO 8601), command}; rows have no "record" key. */
void bench_print_context(const bench_opts *o, int argc, char **argv);
/** context.c: --version: the same facts as text. */
void bench_print_version(void);

/* ---- the generic variant runner ------------------------------------------- */

/** What bench_run() hands to every variant. */
typedef struct bench_ctx {
    weir_runtime *rt; /**< the invocation's runtime (NULL if no weir variant runs) */
    unsigned workers; /**< worker count for the parallel variants */
    uint64_t n;       /**< problem size */
    void *user;       /**< subcommand data */
} bench_ctx;

/** Run the kernel once; returns its result (checked against the baseline). */
typedef uint64_t (*bench_run_fn)(bench_ctx *c);
/** Untimed preparation before every run (warm-up included); may be NULL. */
typedef void (*bench_prep_fn)(bench_ctx *c);

typedef enum bench_kind {
    BENCH_BASELINE, /**< serial / direct call: 1 worker, the ratio's denominator */
    BENCH_WEIR,     /**< needs the runtime; reports its counters */
    BENCH_PEER,     /**< OpenMP / oneTBB, run with `workers` threads */
} bench_kind;

typedef struct bench_variant {
    const char *name;
    bench_kind kind;
    bench_run_fn run; /**< NULL: not built in (see `missing`) */
    bench_prep_fn prepare;
    const char *missing; /**< why `run` is NULL, e.g. "OpenMP not found at configure time" */
    /** Before the variant's first run (e.g. build a oneTBB arena of c->workers
     *  threads); may be NULL. Nonzero = failed (message printed): the variant
     *  is skipped and the invocation fails. */
    int (*setup)(bench_ctx *c);
    /** After its last run; may be NULL. */
    void (*teardown)(bench_ctx *c);
} bench_variant;

typedef struct bench_spec {
    const char *bench;
    const bench_variant *variants; /**< the baseline first */
    size_t nvariants;
    const char *rate_name; /**< if set, rows get this extra = n / median seconds */
    bool rate_of_result;   /**< ... = result / median seconds instead */
} bench_spec;

/**
 * Run the selected variants of `s` in table order: check the variant names,
 * then for each variant `o->warmup` untimed runs and `o->runs` timed ones,
 * each result checked against the baseline's (the baseline is run once,
 * untimed, if it was not selected). The runtime is created (once per
 * invocation) just before the weir variant and destroyed right after it, so
 * that its workers never compete with the other variants; its counters are
 * reset after the warm-up and summed after the timed runs. Rows get the extra
 * "cpu_pct" (process CPU / wall time of the timed runs) when those took 10 ms
 * or more. `c->n` and `c->user` must be set; `c->rt` and `c->workers` are
 * filled in (workers: bench_default_workers(), then the runtime's count).
 * @return BENCH_EXIT_OK, BENCH_EXIT_FAIL (a wrong result or a runtime error)
 *         or BENCH_EXIT_USAGE (bad variant list).
 */
int bench_run(const bench_opts *o, const bench_spec *s, bench_ctx *c);

/* ---- term benchmarks (bench_terms.c, see the hook above) ------------------ */
#ifdef WEIR_BENCH_TERMS
int bench_fanout(const bench_opts *o, int argc, char **argv);
int bench_chain(const bench_opts *o, int argc, char **argv);
int bench_build(const bench_opts *o, int argc, char **argv);
int bench_farm(const bench_opts *o, int argc, char **argv);  /* bench_farm.c */
int bench_keyed(const bench_opts *o, int argc, char **argv); /* bench_farm.c */
int bench_lines(const bench_opts *o, int argc, char **argv); /* bench_lines.c */
int bench_spawn(const bench_opts *o, int argc, char **argv); /* bench_spawn.c */
int bench_delay(const bench_opts *o, int argc, char **argv); /* bench_time.c */
#endif

/* ---- Redis Streams (bench_redis.c, when weir has its Redis terms) ---------- */
#ifdef WEIR_BENCH_REDIS
int bench_redis(const bench_opts *o, int argc, char **argv);
#endif

/* ---- runtime benchmarks (bench_runtime.c) --------------------------------- */
int bench_fib(const bench_opts *o, int argc, char **argv);
int bench_nqueens(const bench_opts *o, int argc, char **argv);
int bench_uts(const bench_opts *o, int argc, char **argv);
/* uts.c: the UTS published trees (--tree T1|T3) on the SHA-1 generator */
int bench_uts_published(const bench_opts *o, int argc, char **argv);
/* nqueens_board.c: --shape bitmask|board, and the BOTS/Cilk board shape */
int bench_nqueens_shape(int argc, char **argv, bool *board);
int bench_nqueens_board(const bench_opts *o);
int bench_skynet(const bench_opts *o, int argc, char **argv);
int bench_submit(const bench_opts *o, int argc, char **argv);
int bench_idle(const bench_opts *o, int argc, char **argv);
/* bench_timers.c: arm + fire throughput, lateness, idle CPU with timers pending */
int bench_timers(const bench_opts *o, int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_BENCH_H */
