/*
 * weir — runtime configuration.
 *
 * A weir_config is a caller-owned struct: weir_config_init() fills it with
 * the build's defaults (meson_options.txt), weir_config_from_env() overlays
 * the WEIR_* environment variables, and the caller may then set fields by
 * hand. weir_runtime_create() validates it (weir_config_validate()).
 *
 * Environment variables (modelled on OpenMP's OMP_NUM_THREADS,
 * OMP_PROC_BIND and OMP_PLACES):
 *   WEIR_WORKERS   worker count, 1..WEIR_MAX_WORKERS ("0" = one per core)
 *   WEIR_AFFINITY  none | compact | scatter  (also: false=none, true/close=compact, spread=scatter)
 *   WEIR_PLACES    explicit PU list such as "0-3,8" (OS indices); implies
 *                  affinity "explicit"
 *   WEIR_STATS     0 | 1 — print a per-worker table when the runtime is destroyed
 *   WEIR_NUMA      0 | 1 — NUMA-aware placement of worker memory
 *   WEIR_SPIN      failed steal rounds before a worker parks (0..1000000)
 *
 * Values are trimmed of surrounding white space; an unset or empty variable
 * changes nothing. Booleans accept 0/1, true/false, yes/no, on/off (any case).
 * WEIR_PLACES alone selects WEIR_AFFINITY_EXPLICIT; with WEIR_AFFINITY=none the
 * list is kept but workers stay unpinned (as OMP_PROC_BIND=false); with
 * compact or scatter it is an error naming both variables. A place list too
 * long for the config is -EINVAL here (weir_parse_places itself says -E2BIG).
 * weir_config_validate() checks `places` only under EXPLICIT (duplicates and
 * indices above 2^20 are errors) and rejects an empty synthetic_topology "".
 */
#ifndef WEIR_CONFIG_H
#define WEIR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Upper bound on the number of workers of one runtime. */
#define WEIR_MAX_WORKERS 4096
/** Upper bound on the entries of an explicit place list. */
#define WEIR_MAX_PLACES 4096

/** How workers are pinned to processing units (PUs). */
typedef enum weir_affinity {
    WEIR_AFFINITY_NONE = 0,  /**< not pinned; the OS schedules them */
    WEIR_AFFINITY_COMPACT,   /**< one worker per core, filling the topology in order */
    WEIR_AFFINITY_SCATTER,   /**< spread round-robin across packages / NUMA nodes / L3s */
    WEIR_AFFINITY_EXPLICIT,  /**< the PUs listed in `places`, in order */
} weir_affinity;

/**
 * Runtime configuration. Initialise with weir_config_init(); owned by the
 * caller; read (not kept) by weir_runtime_create(). Pair: weir_config_deinit().
 */
typedef struct weir_config {
    /** Worker threads; 0 = one per core that the topology reports. */
    unsigned workers;
    /** Pinning policy. */
    weir_affinity affinity;
    /** With WEIR_AFFINITY_EXPLICIT: OS indices of the PUs, worker i gets
     *  places[i % nplaces]. */
    unsigned places[WEIR_MAX_PLACES];
    unsigned nplaces;
    /** Allocate each worker's deque, frames and counters on its NUMA node. */
    bool numa;
    /** Failed steal rounds a worker spins through before it parks. */
    unsigned spin;
    /** Print the per-worker statistics table to stderr at destroy. */
    bool print_stats;
    /** Frames in a worker's first fork-join deque segment (a power of two,
     *  2..2^20, 64 bytes a frame); later segments double. Default 1024.
     *  Also the reserve that rules out weir's one abort(): segment 0 is
     *  allocated by weir_runtime_create() (-ENOMEM if it cannot be), later
     *  segments by the spawn that needs them, and a spawn cannot report a
     *  failed allocation, so it aborts. A worker whose frame stack stays
     *  within deque_initial frames never allocates; include/weir/task.h says
     *  how deep a run's stack gets. */
    unsigned deque_initial;
    /** Stack size of each worker thread in bytes (0 = 8 MiB). */
    size_t stack_size;
    /** For tests: an hwloc synthetic topology description (such as
     *  "pack:2 [numa] l3:2 core:8 pu:2") used instead of the machine's.
     *  Pinning to PUs that do not exist is counted as a failed pin, not an
     *  error. NULL = the real machine. Not copied: must outlive create(). */
    const char *synthetic_topology;
} weir_config;

/** Fill `cfg` with the build defaults. Never fails. Pair: weir_config_deinit(). */
WEIR_API void weir_config_init(weir_config *cfg);

/** Release what weir_config_init() acquired (currently nothing). */
WEIR_API void weir_config_deinit(weir_config *cfg);

/**
 * Overlay the WEIR_* environment variables onto `cfg`.
 * @return 0, or -EINVAL when a variable holds an invalid value; `cfg` is then
 *         unchanged and weir_last_error() names the variable and the value.
 */
WEIR_API int weir_config_from_env(weir_config *cfg);

/**
 * Check every field of `cfg`.
 * @return 0, or -EINVAL naming the field and its value in weir_last_error().
 */
WEIR_API int weir_config_validate(const weir_config *cfg);

/**
 * Parse a PU list such as "0-3,8,10-11" into `out` (at most `max` entries).
 * Ranges are inclusive; whitespace around items is allowed; duplicates are
 * an error.
 * @return the number of entries (>= 1), -EINVAL for a malformed list or
 *         -E2BIG when it has more than `max` entries.
 */
WEIR_API int weir_parse_places(const char *text, unsigned *out, unsigned max);

/** Parse an affinity name. @return 0 or -EINVAL. */
WEIR_API int weir_parse_affinity(const char *text, weir_affinity *out);

/** The name of an affinity policy ("none", "compact", ...). */
WEIR_API const char *weir_affinity_name(weir_affinity a);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_CONFIG_H */
