/* Option parsing shared by the stress programs: --seconds S --workers W --seed N. */
#ifndef WEIR_STRESS_COMMON_H
#define WEIR_STRESS_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct stress_opts {
    double seconds;
    unsigned workers; /* 0 = program's default sweep */
    unsigned long seed;
} stress_opts;

static int stress_parse(int argc, char **argv, stress_opts *o, const char *usage)
{
    o->seconds = 2;
    o->workers = 0;
    o->seed = (unsigned long)time(NULL);
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            o->seconds = strtod(argv[++i], &end);
            if (*end || o->seconds <= 0)
                goto bad;
        } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            long w = strtol(argv[++i], &end, 10);
            if (*end || w < 1 || w > 256)
                goto bad;
            o->workers = (unsigned)w;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            o->seed = strtoul(argv[++i], &end, 10);
            if (*end)
                goto bad;
        } else {
            goto bad;
        }
    }
    return 0;
bad:
    fprintf(stderr, "usage: %s %s\n", argv[0], usage);
    return 2;
}

static double stress_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
