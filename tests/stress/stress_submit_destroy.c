/*
 * weir_submit() from outside threads racing weir_runtime_destroy() (plain
 * main(), runnable under TSan). Each round: a runtime of 1..W workers, held
 * by an attachment (so the handle outlives destroy, as a pipeline holds
 * it); 2 threads submit jobs from outside as fast as they can until
 * weir_submit() refuses with -ESHUTDOWN; the main thread destroys the
 * runtime after a random delay. Invariant: every submit that returned 0 ran
 * exactly once by the time destroy returned (a submit that read the runtime
 * as running just before destroy began must be run by the drain, not
 * stranded in the injection queue), and every refusal is -ESHUTDOWN.
 *
 *   stress_submit_destroy [--seconds S] [--workers W] [--seed N]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "stress_common.h"
#include "weir.h"

#define JOBS_PER_THREAD 50000
#define SUBMITTERS      2

typedef struct submitter {
    pthread_t tid;
    weir_runtime *rt;
    weir_job *jobs;
    uint8_t *ran; /* per job: times run (written by workers, read after destroy) */
    uint64_t ok, refused, other;
} submitter;

static void job_fn(weir_worker *w, weir_job *j)
{
    (void)w;
    uint8_t *slot = j->arg;
    (*slot)++; /* one job object, one run: no two workers touch a slot */
}

static void *submit_loop(void *arg)
{
    submitter *s = arg;
    for (unsigned i = 0; i < JOBS_PER_THREAD; i++) {
        weir_job_init(&s->jobs[i], job_fn, &s->ran[i], 0);
        int r = weir_submit(s->rt, &s->jobs[i]);
        if (r == 0) {
            s->ok++;
        } else {
            if (r == -ESHUTDOWN)
                s->refused++;
            else
                s->other++;
            break;
        }
    }
    return NULL;
}

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    stress_opts o;
    int pr = stress_parse(argc, argv, &o, "[--seconds S] [--workers W] [--seed N]");
    if (pr)
        return pr;
    rng = (uint64_t)o.seed * 0x9E3779B97F4A7C15ull + 1;
    unsigned wmin = o.workers ? o.workers : 1, wmax = o.workers ? o.workers : 4;
    submitter sub[SUBMITTERS];
    for (int k = 0; k < SUBMITTERS; k++) {
        sub[k].jobs = calloc(JOBS_PER_THREAD, sizeof(weir_job));
        sub[k].ran = calloc(JOBS_PER_THREAD, 1);
        if (!sub[k].jobs || !sub[k].ran)
            return 2;
    }
    uint64_t rounds = 0, accepted = 0, refused = 0, failures = 0, raced = 0;
    double end = stress_now() + o.seconds;
    while (stress_now() < end && failures == 0) {
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.workers = wmin + (unsigned)(rnd() % (wmax - wmin + 1));
        cfg.affinity = WEIR_AFFINITY_NONE;
        cfg.print_stats = false;
        weir_runtime *rt;
        if (weir_runtime_create(&cfg, &rt) != 0 || weir_runtime_attach(rt) != 0) {
            fprintf(stderr, "stress_submit_destroy: %s\n", weir_last_error());
            return 2;
        }
        for (int k = 0; k < SUBMITTERS; k++) {
            sub[k].rt = rt;
            sub[k].ok = sub[k].refused = sub[k].other = 0;
            memset(sub[k].ran, 0, JOBS_PER_THREAD);
            if (pthread_create(&sub[k].tid, NULL, submit_loop, &sub[k]) != 0)
                return 2;
        }
        usleep((useconds_t)(rnd() % 3000));
        weir_runtime_destroy(rt); /* the attachment keeps the handle */
        for (int k = 0; k < SUBMITTERS; k++) {
            pthread_join(sub[k].tid, NULL);
            /* after destroy returned and the submitter stopped: every
             * accepted job ran once, nothing else ran */
            for (unsigned i = 0; i < JOBS_PER_THREAD; i++) {
                unsigned want = i < sub[k].ok ? 1 : 0;
                if (sub[k].ran[i] != want) {
                    fprintf(stderr,
                            "stress_submit_destroy: round %" PRIu64 ", submitter %d: job %u "
                            "(of %" PRIu64 " accepted) ran %u times, want %u\n",
                            rounds, k, i, sub[k].ok, sub[k].ran[i], want);
                    failures++;
                    break;
                }
            }
            if (sub[k].other) {
                fprintf(stderr, "stress_submit_destroy: a refusal other than -ESHUTDOWN: %s\n",
                        weir_last_error());
                failures++;
            }
            if (sub[k].refused && sub[k].ok < JOBS_PER_THREAD)
                raced++;
            accepted += sub[k].ok;
            refused += sub[k].refused;
        }
        weir_runtime_detach(rt); /* frees the handle */
        rounds++;
    }
    for (int k = 0; k < SUBMITTERS; k++) {
        free(sub[k].jobs);
        free(sub[k].ran);
    }
    printf("stress_submit_destroy: %" PRIu64 " rounds, %" PRIu64 " jobs accepted and run once, "
           "%" PRIu64 " submitters refused by the destroy (%" PRIu64 " raced it), %" PRIu64
           " failures (seed %lu, workers %u..%u)\n",
           rounds, accepted, refused, raced, failures, o.seed, wmin, wmax);
    return failures ? 1 : 0;
}
