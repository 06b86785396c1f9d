/*
 * weir terms — running statistics (sum, mean, sample and population
 * standard deviation) with Welford's update, which stays accurate where the
 * textbook sum-of-squares formula cancels catastrophically.
 *
 * Both deviations come from the same sum of squared deviations m2: the
 * sample one divides it by n - 1 (an unbiased variance estimate from a
 * sample), the population one by n (numpy.std's default, and what
 * LogicSponge's Std computes). weir_std was the sample one before the two
 * explicit names existed and stays so.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

typedef enum {
    WEIR__RUN_ALL,
    WEIR__RUN_SUM,
    WEIR__RUN_MEAN,
    WEIR__RUN_STD_SAMPLE,
    WEIR__RUN_STD_POPULATION,
} weir__run_kind;

typedef struct weir__welford {
    weir__run_kind kind;
    uint64_t n;
    double sum, mean, m2;
} weir__welford;

static void weir__welford_step(weir__welford *w, double x)
{
    w->n++;
    w->sum += x;
    double d = x - w->mean;
    w->mean += d / (double)w->n;
    w->m2 += d * (x - w->mean);
}

/* Divisor n - 1; 0 while n < 2 (one value says nothing about the spread). */
static double weir__welford_std(const weir__welford *w)
{
    return w->n < 2 ? 0.0 : sqrt(w->m2 / (double)(w->n - 1));
}

/* Divisor n; m2 is 0 for n = 1, so one value gives 0. */
static double weir__welford_std_population(const weir__welford *w)
{
    return w->n == 0 ? 0.0 : sqrt(w->m2 / (double)w->n);
}

static void weir__running_all(void *state, const void *in, void *out)
{
    weir__welford *w = state;
    double x;
    memcpy(&x, in, sizeof x);
    weir__welford_step(w, x);
    weir_running r = {w->n, x, w->sum, w->mean, weir__welford_std(w)};
    memcpy(out, &r, sizeof r);
}

static void weir__running_one(void *state, const void *in, void *out)
{
    weir__welford *w = state;
    double x, y;
    memcpy(&x, in, sizeof x);
    weir__welford_step(w, x);
    switch (w->kind) {
    case WEIR__RUN_SUM:
        y = w->sum;
        break;
    case WEIR__RUN_MEAN:
        y = w->mean;
        break;
    case WEIR__RUN_STD_POPULATION:
        y = weir__welford_std_population(w);
        break;
    default:
        y = weir__welford_std(w);
        break;
    }
    memcpy(out, &y, sizeof y);
}

static weir_term *weir__running(const char *name, weir__run_kind kind, const char *kind_name)
{
    weir__welford *w = weir_calloc(1, sizeof *w);
    if (!w) {
        weir__terms_error(-ENOMEM, "%s: out of memory", kind_name);
        return NULL;
    }
    w->kind = kind;
    weir_term *t = kind == WEIR__RUN_ALL
                       ? weir_map(name, sizeof(double), sizeof(weir_running), weir__running_all, w)
                       : weir_map(name, sizeof(double), sizeof(double), weir__running_one, w);
    if (!t) {
        weir_free(w);
        return NULL;
    }
    weir__term_set_kind(t, name, kind_name);
    return weir_term_on_free(t, weir_free);
}

WEIR_API weir_term *weir_running_stats(const char *name)
{
    return weir__running(name, WEIR__RUN_ALL, "running stats");
}

WEIR_API weir_term *weir_sum(const char *name)
{
    return weir__running(name, WEIR__RUN_SUM, "sum");
}

WEIR_API weir_term *weir_mean(const char *name)
{
    return weir__running(name, WEIR__RUN_MEAN, "mean");
}

WEIR_API weir_term *weir_std_sample(const char *name)
{
    return weir__running(name, WEIR__RUN_STD_SAMPLE, "std sample");
}

WEIR_API weir_term *weir_std_population(const char *name)
{
    return weir__running(name, WEIR__RUN_STD_POPULATION, "std population");
}

/* The compatibility name keeps its kind, "std", in statistics and in the
 * names it generates ("std#3"), as before. */
WEIR_API weir_term *weir_std(const char *name)
{
    return weir__running(name, WEIR__RUN_STD_SAMPLE, "std");
}
