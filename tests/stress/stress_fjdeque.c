/*
 * Frame deque stress: an owner spawns and syncs random batch sizes (growth
 * from capacity 2 included) while 1..4 thieves steal, for --seconds.
 * Invariant: every frame runs exactly once. One summary line; exit 1 if broken.
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
    unsigned long rounds = 0, frames = 0, by_thieves = 0, bad = 0;
    while (stress_now() < end) {
        unsigned thieves = o.workers ? o.workers : 1 + (unsigned)(rand() % 4);
        long sizes[16];
        long total = 0;
        for (int i = 0; i < 16; i++) {
            int shape = rand() % 4;
            sizes[i] = shape == 0 ? 1 + rand() % 4 : shape == 1 ? 1 + rand() % 300 : 1 + rand() % 20000;
            total += sizes[i];
        }
        harness h;
        if (harness_init(&h, thieves, (size_t)total, 2)) {
            fprintf(stderr, "stress_fjdeque: cannot set up the harness\n");
            return 1;
        }
        bad += fj_run(&h, sizes, 16, rand() % 3 ? 0 : 1 + rand() % 5);
        frames += (unsigned long)total;
        by_thieves += h.by_thieves;
        harness_fini(&h);
        rounds++;
    }
    printf("stress_fjdeque: seed %lu rounds %lu frames %lu stolen %lu not-exactly-once %lu: %s\n",
           o.seed, rounds, frames, by_thieves, bad, bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}
