/*
 * weir — per-worker statistics.
 *
 * Every counter is written only by its worker (relaxed atomics, no
 * read-modify-write), so they are always on. A reader on another thread sees
 * each counter at some recent value; the counters of one snapshot are not
 * taken at one instant.
 *
 * Definitions (an *operation* is one attempt; a *task* is one unit of work):
 *   tasks_run        tasks this worker started from its scheduler: detached
 *                    jobs, stolen frames and fork-join roots. A frame its own
 *                    worker syncs inline is not counted here (that would put
 *                    a counter on the sync fast path): it is a spawn that
 *                    nobody stole, spawns - (frames stolen from the worker).
 *   spawns           fork-join frames this worker pushed (WEIR_SPAWN)
 *   jobs_submitted   detached jobs pushed to this worker's job deque
 *   steal_attempts   steal operations on another worker (one victim, one try)
 *   steals           steal operations that obtained work (successful steals)
 *   tasks_stolen     tasks obtained by those operations (one per successful
 *                    steal in this version: a steal takes one frame or job)
 *   steal_empty      attempts that found the victim with nothing public
 *   steal_contended  attempts that lost a race (CAS failed) with another thief
 *                    or with the owner; steal_attempts == steals + steal_empty
 *                    + steal_contended
 *   leapfrogs        frames stolen back from the thief of a frame this worker
 *                    was waiting on in a sync (included in steals too)
 *   publishes        times this worker moved private frames to the public part
 *                    of its deque because a thief or a sleeper asked
 *   parks            times this worker went to sleep on the runtime's futex
 *   wakeups          wake-ups this worker sent to sleeping workers
 *   injected         jobs this worker took from the injection queue (work
 *                    submitted by threads that are not workers)
 *   busy_ns          time outside the idle loop (running or looking for work
 *                    inside a sync)
 *   idle_ns          time in the idle loop (spinning for work or parked)
 */
#ifndef WEIR_STATS_H
#define WEIR_STATS_H

#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weir_worker_stats {
    uint64_t tasks_run;
    uint64_t spawns;
    uint64_t jobs_submitted;
    uint64_t steal_attempts;
    uint64_t steals;
    uint64_t tasks_stolen;
    uint64_t steal_empty;
    uint64_t steal_contended;
    uint64_t leapfrogs;
    uint64_t publishes;
    uint64_t parks;
    uint64_t wakeups;
    uint64_t injected;
    uint64_t busy_ns;
    uint64_t idle_ns;
} weir_worker_stats;

#ifdef __cplusplus
}
#endif
#endif /* WEIR_STATS_H */
