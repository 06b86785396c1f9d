/*
 * Stress test of the term layer (plain main(), runnable under TSan).
 *
 * For --seconds, builds random pipelines — a source broadcast to 1..24
 * branches of id / map / filter / flat-map / batch sinks, plus zip and merge
 * pipelines — with random batch sizes and capacities, in a random execution
 * mode, and either runs them to the end, stops them, or cancels them at a
 * random moment. Every run ends with an exact accounting check:
 *   run to the end:  every branch received exactly what its terms imply;
 *   stop:            every branch received every record the source produced,
 *                    in order, once;
 *   cancel:          join returns -ECANCELED, nothing hangs or leaks.
 * Prints one summary line; exits 1 on a broken invariant.
 *
 *   stress_terms [--seconds S] [--workers W] [--seed X]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weir.h"

enum { MAXB = 24 };

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct branch {
    int kind;     /* 0 id, 1 twice, 2 even filter, 3 flat-map, 4 batch sink,
                     5 twice + id into a broadcast (a batched run writing a stream) */
    int64_t next; /* expected next value (kinds 0, 1, 2, 4) */
    uint64_t count;
    uint64_t bad;
} branch;

static int check_fn(void *state, const void *in)
{
    branch *b = state;
    int64_t v;
    memcpy(&v, in, sizeof v);
    switch (b->kind) {
    case 0:
    case 4:
        if (v != b->next)
            b->bad++;
        b->next = v + 1;
        break;
    case 1:
    case 5:
        if (v != 2 * b->next)
            b->bad++;
        b->next++;
        break;
    case 2:
        if (v % 2 != 0 || v < b->next)
            b->bad++;
        b->next = v + 2;
        break;
    default:
        break;
    }
    b->count++;
    return 0;
}

static int check_batch(void *state, const void *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_fn(state, (const char *)recs + i * 8);
    return 0;
}

static void twice(void *s, const void *in, void *out)
{
    (void)s;
    int64_t v;
    memcpy(&v, in, 8);
    v *= 2;
    memcpy(out, &v, 8);
}

static bool even(void *s, const void *in)
{
    (void)s;
    int64_t v;
    memcpy(&v, in, 8);
    return v % 2 == 0;
}

static int copies(void *s, const void *in, weir_emit *e)
{
    (void)s;
    int64_t v;
    memcpy(&v, in, 8);
    for (int64_t i = 0; i < v % 7; i++) {
        int r = weir_emit_record(e, &v);
        if (r < 0)
            return r;
    }
    return 0;
}

static int zip_check(void *state, const void *const *in, size_t n, weir_emit *e)
{
    (void)e;
    branch *b = state;
    int64_t a, c;
    memcpy(&a, in[0], 8);
    memcpy(&c, in[1], 8);
    if (n != 2 || a != b->next || c != -b->next)
        b->bad++;
    b->next++;
    b->count++;
    return 0;
}

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "stress_terms: " __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static weir_runtime *rt;

static void one_fanout(uint64_t *records)
{
    weir_exec_mode mode = (weir_exec_mode)(rnd() % 3);
    int nb = 1 + (int)(rnd() % MAXB);
    int64_t n = (int64_t)(rnd() % 6000);
    int action = (int)(rnd() % 4); /* 0, 1: run; 2: stop; 3: cancel */
    bool endless = action >= 2;
    branch br[MAXB];
    weir_term *terms[MAXB];
    for (int i = 0; i < nb; i++) {
        memset(&br[i], 0, sizeof br[i]);
        br[i].kind = (int)(rnd() % 6);
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        weir_term *sink = br[i].kind == 4 ? weir_batch_sink(NULL, 8, check_batch, &br[i])
                                          : weir_sink(NULL, 8, check_fn, &br[i]);
        switch (br[i].kind) {
        case 1:
            terms[i] = weir_seq2(weir_map(name, 8, 8, twice, NULL), sink);
            break;
        case 2:
            terms[i] = weir_seq2(weir_filter(name, 8, even, NULL), sink);
            break;
        case 3:
            terms[i] = weir_seq2(weir_function(name, 8, 8, copies, NULL), sink);
            break;
        case 5:
            terms[i] = WEIR_SEQ(weir_map(name, 8, 8, twice, NULL), weir_id(NULL, 8),
                                weir_par2(sink, weir_seq2(weir_id(NULL, 8), weir_stop())));
            break;
        default:
            terms[i] = rnd() % 2 ? weir_seq2(weir_id(name, 8), sink) : sink;
            break;
        }
    }
    weir_term *src = endless ? weir_counter_source("src", 0) : weir_range_source("src", 0, n, 1);
    weir_term *t = weir_seq2(src, weir_par((size_t)nb, terms));
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = mode;
    c.batch = 1 + (unsigned)(rnd() % 64);
    c.capacity = 1 + (unsigned)(rnd() % 128);
    c.print_stats = false;
    weir_pipeline *p;
    int r = weir_pipeline_create(rt, t, &c, &p);
    CHECK(r == 0, "create: %s", weir_terms_last_error());
    if (r)
        return;
    r = weir_pipeline_start(p);
    CHECK(r == 0, "start: %d", r);
    if (action >= 2) {
        usleep((useconds_t)(rnd() % 3000));
        r = action == 2 ? weir_pipeline_stop(p) : weir_pipeline_cancel(p);
        CHECK(r == 0, "stop/cancel: %d", r);
    }
    r = weir_pipeline_join_for(p, 60ull * 1000 * 1000 * 1000);
    CHECK(r != -ETIMEDOUT, "join timed out (mode %s, %d branches, action %d)",
          weir_exec_mode_name(mode), nb, action);
    if (r == -ETIMEDOUT) {
        /* Leave it: destroying would hang too. */
        return;
    }
    if (action == 3) {
        CHECK(r == -ECANCELED, "cancel: join returned %d", r);
    } else {
        CHECK(r == 0, "join: %d %s", r, weir_pipeline_error(p));
        weir_term_stats ts;
        weir_pipeline_term_stats(p, (unsigned)weir_pipeline_find_term(p, "src"), &ts);
        int64_t produced = (int64_t)ts.records_out;
        if (action < 2)
            CHECK(produced == n, "source produced %lld of %lld", (long long)produced, (long long)n);
        for (int i = 0; i < nb; i++) {
            uint64_t want = 0;
            switch (br[i].kind) {
            case 2:
                want = (uint64_t)(produced + 1) / 2;
                break;
            case 3:
                for (int64_t v = 0; v < produced; v++)
                    want += (uint64_t)(v % 7);
                break;
            default:
                want = (uint64_t)produced;
                break;
            }
            CHECK(br[i].count == want && br[i].bad == 0,
                  "mode %s action %d branch %d kind %d: got %llu want %llu, %llu out of order",
                  weir_exec_mode_name(mode), action, i, br[i].kind, (unsigned long long)br[i].count,
                  (unsigned long long)want, (unsigned long long)br[i].bad);
            *records += br[i].count;
        }
    }
    weir_pipeline_destroy(p);
}

static void one_zip_merge(uint64_t *records)
{
    weir_exec_mode mode = (weir_exec_mode)(rnd() % 3);
    int64_t n1 = (int64_t)(rnd() % 3000), n2 = (int64_t)(rnd() % 3000);
    weir_pipeline_config c;
    weir_pipeline_config_init(&c);
    c.mode = mode;
    c.batch = 1 + (unsigned)(rnd() % 32);
    c.capacity = 1 + (unsigned)(rnd() % 64);
    c.print_stats = false;
    /* zip: a = 0..n1, b = 0..-n2 -> min(n1, n2) tuples (i, -i). */
    branch z = {0};
    weir_term *t =
        WEIR_SEQ(weir_par2(weir_range_source("a", 0, n1, 1), weir_range_source("b", 0, -n2, -1)),
                 weir_zip("z", 8, zip_check, &z), weir_stop());
    weir_pipeline *p;
    CHECK(weir_pipeline_create(rt, t, &c, &p) == 0, "zip create: %s", weir_terms_last_error());
    CHECK(weir_pipeline_run(p) == 0, "zip run: %s", weir_pipeline_error(p));
    int64_t want = n1 < n2 ? n1 : n2;
    CHECK((int64_t)z.count == want && z.bad == 0, "zip (%s): %llu tuples, want %lld, %llu bad",
          weir_exec_mode_name(mode), (unsigned long long)z.count, (long long)want,
          (unsigned long long)z.bad);
    weir_pipeline_destroy(p);
    *records += z.count;
    /* merge: all of both. */
    weir_collector out;
    weir_collector_init(&out, 8);
    t = WEIR_SEQ(weir_par2(weir_range_source("a", 0, n1, 1),
                           weir_range_source("b", 1000000, 1000000 + n2, 1)),
                 weir_merge("m"), weir_collect("out", &out));
    CHECK(weir_pipeline_create(rt, t, &c, &p) == 0, "merge create: %s", weir_terms_last_error());
    CHECK(weir_pipeline_run(p) == 0, "merge run: %s", weir_pipeline_error(p));
    int64_t na = 0, nb = 1000000;
    uint64_t bad = 0;
    for (size_t i = 0; i < out.count; i++) {
        int64_t v = ((int64_t *)out.data)[i];
        if (v < 1000000)
            bad += v != na++;
        else
            bad += v != nb++;
    }
    CHECK(out.count == (size_t)(n1 + n2) && bad == 0,
          "merge (%s): %zu records, want %lld, %llu out of order", weir_exec_mode_name(mode),
          out.count, (long long)(n1 + n2), (unsigned long long)bad);
    *records += out.count;
    weir_collector_deinit(&out);
    weir_pipeline_destroy(p);
}

int main(int argc, char **argv)
{
    double seconds = 2;
    unsigned workers = 2;
    rng_state = (uint64_t)time(NULL) | 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--workers") == 0)
            workers = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            rng_state = strtoull(argv[i + 1], NULL, 0) | 1;
    }
    uint64_t seed = rng_state;
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    if (weir_runtime_create(&cfg, &rt) != 0) {
        fprintf(stderr, "stress_terms: runtime: %s\n", weir_last_error());
        return 1;
    }
    double end = now_s() + seconds;
    uint64_t runs = 0, records = 0;
    while (now_s() < end && failures == 0) {
        if (rnd() % 4 == 0)
            one_zip_merge(&records);
        else
            one_fanout(&records);
        runs++;
    }
    weir_runtime_destroy(rt);
    printf(
        "stress_terms: %llu pipelines, %llu records checked, %d failures (seed %llu, %u workers)\n",
        (unsigned long long)runs, (unsigned long long)records, failures, (unsigned long long)seed,
        workers);
    return failures ? 1 : 0;
}
