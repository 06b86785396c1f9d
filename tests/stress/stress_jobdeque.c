/*
 * Job deque stress: owner push/take against 1..4 thieves, random sizes,
 * growth from capacity 2, for --seconds. Invariant: every id claimed exactly
 * once. One summary line; exit 1 if broken.
 */
#include "../common/deque_harness.h"
#include "stress_common.h"

int main(int argc, char **argv)
{
    stress_opts o;
    if (stress_parse(argc, argv, &o, "[--seconds S] [--workers THIEVES] [--seed N]"))
        return 2;
    srand((unsigned)o.seed);
    double end = stress_now() + o.seconds;
    unsigned long rounds = 0, jobs_total = 0, stolen = 0, bad = 0;
    while (stress_now() < end) {
        unsigned thieves = o.workers ? o.workers : 1 + (unsigned)(rand() % 4);
        long sizes[16];
        long total = 0;
        for (int i = 0; i < 16; i++) {
            sizes[i] = rand() % 2 ? 1 + rand() % 8 : 1 + rand() % 30000;
            total += sizes[i];
        }
        id_job *jobs = calloc((size_t)total, sizeof *jobs);
        harness h;
        if (!jobs || harness_init(&h, thieves, (size_t)total, 2)) {
            fprintf(stderr, "stress_jobdeque: cannot set up the harness\n");
            return 1;
        }
        size_t b = jd_run(&h, jobs, sizes, 16, rand() % 3 ? 0 : 1 + rand() % 4);
        bad += b == (size_t)-1 ? 1 : b;
        jobs_total += (unsigned long)total;
        stolen += h.by_thieves;
        harness_fini(&h);
        free(jobs);
        rounds++;
    }
    printf("stress_jobdeque: seed %lu rounds %lu jobs %lu stolen %lu not-exactly-once %lu: %s\n",
           o.seed, rounds, jobs_total, stolen, bad, bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}
