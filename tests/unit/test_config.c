/*
 * Unit tests: configuration defaults, validation, the WEIR_* environment
 * variables, the place-list and affinity parsers, error texts and the
 * allocation failure hook.
 *
 * Criterion runs every test in its own process, so environment changes
 * cannot leak from one test into another; the tests restore them anyway so
 * that they stay correct under --no-fork (or a debugger).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "weir_build_config.h"

/* ---------------------------------------------------------------- helpers */

static const char *const env_names[] = {"WEIR_WORKERS", "WEIR_STATS",  "WEIR_AFFINITY",
                                        "WEIR_NUMA",    "WEIR_PLACES", "WEIR_SPIN"};
#define NENV (sizeof env_names / sizeof env_names[0])
static char *env_saved[NENV];

/* Start every environment test from a clean slate (meson sets WEIR_STATS=0
 * for the test run) and put the caller's values back afterwards. */
static void env_setup(void)
{
    for (size_t i = 0; i < NENV; i++) {
        const char *v = getenv(env_names[i]);
        env_saved[i] = v != NULL ? strdup(v) : NULL;
        unsetenv(env_names[i]);
    }
    weir_clear_error();
}

static void env_teardown(void)
{
    for (size_t i = 0; i < NENV; i++) {
        if (env_saved[i] != NULL)
            setenv(env_names[i], env_saved[i], 1);
        else
            unsetenv(env_names[i]);
        free(env_saved[i]);
        env_saved[i] = NULL;
    }
}

static bool contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

/* Apply one variable to a default config and check it is rejected: -EINVAL,
 * the config untouched, and a message naming the variable and the value. */
static void expect_env_rejected(const char *name, const char *value)
{
    weir_config cfg, before;
    weir_config_init(&cfg);
    before = cfg;
    setenv(name, value, 1);
    weir_clear_error();
    int err = weir_config_from_env(&cfg);
    cr_assert_eq(err, -EINVAL, "%s='%s' gave %d", name, value, err);
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0, "%s='%s' modified the config", name, value);
    char quoted[128];
    snprintf(quoted, sizeof quoted, "'%s'", value);
    cr_assert(contains(weir_last_error(), name), "message '%s' lacks %s", weir_last_error(), name);
    cr_assert(contains(weir_last_error(), quoted), "message '%s' lacks %s", weir_last_error(),
              quoted);
    unsetenv(name);
}

/* Apply one variable to a default config and return the result. */
static weir_config env_apply(const char *name, const char *value)
{
    weir_config cfg;
    weir_config_init(&cfg);
    setenv(name, value, 1);
    int err = weir_config_from_env(&cfg);
    cr_assert_eq(err, 0, "%s='%s' rejected: %s", name, value, weir_last_error());
    unsetenv(name);
    return cfg;
}

/* Validate a config that differs from the defaults by one field and check
 * the message names that field and its value. */
static void expect_invalid(const weir_config *cfg, const char *field, const char *value)
{
    weir_clear_error();
    cr_assert_eq(weir_config_validate(cfg), -EINVAL, "%s=%s accepted", field, value);
    cr_assert(contains(weir_last_error(), field), "message '%s' lacks %s", weir_last_error(),
              field);
    cr_assert(contains(weir_last_error(), value), "message '%s' lacks %s", weir_last_error(),
              value);
}

/* ---------------------------------------------------------------- defaults, validate */

Test(config, init_fills_build_defaults)
{
    weir_config cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    weir_config_init(&cfg);
    cr_assert_eq(cfg.workers, (unsigned)WEIR_DEFAULT_WORKERS);
    cr_assert_eq(cfg.affinity, WEIR_DEFAULT_AFFINITY);
    cr_assert_eq(cfg.spin, (unsigned)WEIR_DEFAULT_SPIN);
    cr_assert_eq(cfg.nplaces, 0u);
    cr_assert(cfg.numa);
    cr_assert(!cfg.print_stats);
    cr_assert_eq(cfg.deque_initial, 1024u);
    cr_assert_eq(cfg.stack_size, 0u);
    cr_assert_null(cfg.synthetic_topology);
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());
    weir_config_deinit(&cfg);
}

Test(config, validate_accepts_boundary_values)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = WEIR_MAX_WORKERS;
    cfg.spin = 1000000;
    cfg.deque_initial = 2;
    cfg.stack_size = 64 * 1024;
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());
    cfg.deque_initial = 1u << 20;
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.nplaces = WEIR_MAX_PLACES;
    for (unsigned i = 0; i < WEIR_MAX_PLACES; i++)
        cfg.places[i] = i;
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());
}

Test(config, validate_ignores_places_unless_affinity_is_explicit)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.nplaces = 2;
    cfg.places[0] = cfg.places[1] = 7; /* would be a duplicate if used */
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());
}

Test(config, validate_rejects_each_invalid_field_naming_it)
{
    weir_config cfg;

    weir_config_init(&cfg);
    cfg.workers = WEIR_MAX_WORKERS + 1;
    expect_invalid(&cfg, "config.workers", "4097");

    weir_config_init(&cfg);
    cfg.affinity = (weir_affinity)9;
    expect_invalid(&cfg, "config.affinity", "9");

    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.nplaces = 0;
    expect_invalid(&cfg, "config.nplaces", "0");

    weir_config_init(&cfg);
    cfg.nplaces = WEIR_MAX_PLACES + 1;
    expect_invalid(&cfg, "config.nplaces", "4097");

    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.nplaces = 2;
    cfg.places[0] = 1;
    cfg.places[1] = (1u << 20) + 1;
    expect_invalid(&cfg, "config.places[1]", "1048577");

    weir_config_init(&cfg);
    cfg.affinity = WEIR_AFFINITY_EXPLICIT;
    cfg.nplaces = 3;
    cfg.places[0] = 1;
    cfg.places[1] = 2;
    cfg.places[2] = 1;
    expect_invalid(&cfg, "config.places[2]", "duplicate PU 1");

    weir_config_init(&cfg);
    cfg.spin = 1000001;
    expect_invalid(&cfg, "config.spin", "1000001");

    unsigned bad_deque[] = {0, 1, 3, 1000, (1u << 20) + 2, 1u << 21};
    for (size_t i = 0; i < sizeof bad_deque / sizeof bad_deque[0]; i++) {
        char v[32];
        snprintf(v, sizeof v, "invalid value %u ", bad_deque[i]);
        weir_config_init(&cfg);
        cfg.deque_initial = bad_deque[i];
        expect_invalid(&cfg, "config.deque_initial", v);
    }
    cr_assert(contains(weir_last_error(), "power of two 2..1048576"), "%s", weir_last_error());

    weir_config_init(&cfg);
    cfg.stack_size = 65535;
    expect_invalid(&cfg, "config.stack_size", "65535");

    weir_config_init(&cfg);
    cfg.synthetic_topology = "";
    expect_invalid(&cfg, "config.synthetic_topology", "''");

    cr_assert_eq(weir_config_validate(NULL), -EINVAL);
}

/* ---------------------------------------------------------------- environment */

Test(config_env, unset_or_empty_variables_change_nothing, .init = env_setup, .fini = env_teardown)
{
    weir_config cfg, before;
    weir_config_init(&cfg);
    cfg.workers = 3; /* not a default, to see that it survives */
    before = cfg;
    cr_assert_eq(weir_config_from_env(&cfg), 0);
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0);
    for (size_t i = 0; i < NENV; i++)
        setenv(env_names[i], "", 1);
    cr_assert_eq(weir_config_from_env(&cfg), 0, "%s", weir_last_error());
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0);
    /* Whitespace only is an empty value after trimming. */
    for (size_t i = 0; i < NENV; i++)
        setenv(env_names[i], "  ", 1);
    cr_assert_eq(weir_config_from_env(&cfg), 0, "%s", weir_last_error());
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0);
}

Test(config_env, workers_accepts_integers_0_to_max, .init = env_setup, .fini = env_teardown)
{
    cr_assert_eq(env_apply("WEIR_WORKERS", "0").workers, 0u);
    cr_assert_eq(env_apply("WEIR_WORKERS", "8").workers, 8u);
    cr_assert_eq(env_apply("WEIR_WORKERS", "4096").workers, 4096u);
    cr_assert_eq(env_apply("WEIR_WORKERS", "007").workers, 7u);
    /* Surrounding whitespace is tolerated, as libgomp does for OMP_NUM_THREADS. */
    cr_assert_eq(env_apply("WEIR_WORKERS", " 3 ").workers, 3u);
    cr_assert_eq(env_apply("WEIR_WORKERS", "\t5\n").workers, 5u);
}

Test(config_env, workers_rejects_garbage_naming_variable_and_value, .init = env_setup,
     .fini = env_teardown)
{
    const char *bad[] = {"abc", "-1",  "99999999999999999999", "4x", "4097", "+3", "0x10", "3 4",
                         "1e3", "3.0", "18446744073709551617"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_env_rejected("WEIR_WORKERS", bad[i]);
    setenv("WEIR_WORKERS", "abc", 1);
    weir_config cfg;
    weir_config_init(&cfg);
    cr_assert_eq(weir_config_from_env(&cfg), -EINVAL);
    cr_assert_str_eq(weir_last_error(),
                     "WEIR_WORKERS: invalid value 'abc' (expected an integer 0..4096)");
}

Test(config_env, affinity_accepts_names_and_omp_synonyms, .init = env_setup, .fini = env_teardown)
{
    cr_assert_eq(env_apply("WEIR_AFFINITY", "none").affinity, WEIR_AFFINITY_NONE);
    cr_assert_eq(env_apply("WEIR_AFFINITY", "FALSE").affinity, WEIR_AFFINITY_NONE);
    cr_assert_eq(env_apply("WEIR_AFFINITY", "compact").affinity, WEIR_AFFINITY_COMPACT);
    cr_assert_eq(env_apply("WEIR_AFFINITY", "Close").affinity, WEIR_AFFINITY_COMPACT);
    cr_assert_eq(env_apply("WEIR_AFFINITY", "true").affinity, WEIR_AFFINITY_COMPACT);
    cr_assert_eq(env_apply("WEIR_AFFINITY", "SCATTER").affinity, WEIR_AFFINITY_SCATTER);
    cr_assert_eq(env_apply("WEIR_AFFINITY", " spread ").affinity, WEIR_AFFINITY_SCATTER);
    expect_env_rejected("WEIR_AFFINITY", "explicit");
    expect_env_rejected("WEIR_AFFINITY", "sideways");
    expect_env_rejected("WEIR_AFFINITY", "compact2");
    expect_env_rejected("WEIR_AFFINITY", "1");
}

Test(config_env, places_sets_explicit_affinity, .init = env_setup, .fini = env_teardown)
{
    weir_config cfg = env_apply("WEIR_PLACES", "0-3,8");
    cr_assert_eq(cfg.affinity, WEIR_AFFINITY_EXPLICIT);
    cr_assert_eq(cfg.nplaces, 5u);
    unsigned want[] = {0, 1, 2, 3, 8};
    for (unsigned i = 0; i < 5; i++)
        cr_assert_eq(cfg.places[i], want[i]);
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());

    expect_env_rejected("WEIR_PLACES", "0-3,,8");
    expect_env_rejected("WEIR_PLACES", "3-1");
    expect_env_rejected("WEIR_PLACES", "1,1");
    expect_env_rejected("WEIR_PLACES", "abc");
    expect_env_rejected("WEIR_PLACES", "0-4096"); /* 4097 places */
    cr_assert(contains(weir_last_error(), "more than 4096"), "%s", weir_last_error());
}

Test(config_env, places_with_affinity_none_stays_unpinned_and_conflicts_otherwise,
     .init = env_setup, .fini = env_teardown)
{
    weir_config cfg;
    weir_config_init(&cfg);
    setenv("WEIR_PLACES", "0,1", 1);
    setenv("WEIR_AFFINITY", "none", 1);
    cr_assert_eq(weir_config_from_env(&cfg), 0, "%s", weir_last_error());
    cr_assert_eq(cfg.affinity, WEIR_AFFINITY_NONE);
    cr_assert_eq(cfg.nplaces, 2u);
    cr_assert_eq(weir_config_validate(&cfg), 0, "%s", weir_last_error());

    weir_config_init(&cfg);
    weir_config before = cfg;
    setenv("WEIR_AFFINITY", "scatter", 1);
    cr_assert_eq(weir_config_from_env(&cfg), -EINVAL);
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0);
    cr_assert(contains(weir_last_error(), "WEIR_AFFINITY"), "%s", weir_last_error());
    cr_assert(contains(weir_last_error(), "'scatter'"), "%s", weir_last_error());
    cr_assert(contains(weir_last_error(), "WEIR_PLACES"), "%s", weir_last_error());
}

Test(config_env, stats_and_numa_take_booleans, .init = env_setup, .fini = env_teardown)
{
    cr_assert(env_apply("WEIR_STATS", "1").print_stats);
    cr_assert(!env_apply("WEIR_STATS", "0").print_stats);
    cr_assert(env_apply("WEIR_STATS", "yes").print_stats);
    cr_assert(!env_apply("WEIR_NUMA", "0").numa);
    cr_assert(!env_apply("WEIR_NUMA", "off").numa);
    cr_assert(env_apply("WEIR_NUMA", "1").numa);
    const char *bad[] = {"2", "-1", "abc", "1x", "01", "truee"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_env_rejected("WEIR_STATS", bad[i]);
        expect_env_rejected("WEIR_NUMA", bad[i]);
    }
}

Test(config_env, spin_accepts_0_to_1000000, .init = env_setup, .fini = env_teardown)
{
    cr_assert_eq(env_apply("WEIR_SPIN", "0").spin, 0u);
    cr_assert_eq(env_apply("WEIR_SPIN", "1000000").spin, 1000000u);
    const char *bad[] = {"1000001", "-5", "abc", "12k", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_env_rejected("WEIR_SPIN", bad[i]);
}

Test(config_env, failure_in_any_variable_leaves_config_unchanged, .init = env_setup,
     .fini = env_teardown)
{
    weir_config cfg, before;
    weir_config_init(&cfg);
    before = cfg;
    /* Valid values for everything parsed before the bad one. */
    setenv("WEIR_WORKERS", "2", 1);
    setenv("WEIR_PLACES", "0-1", 1);
    setenv("WEIR_STATS", "1", 1);
    setenv("WEIR_NUMA", "0", 1);
    setenv("WEIR_SPIN", "lots", 1);
    cr_assert_eq(weir_config_from_env(&cfg), -EINVAL);
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0);
    cr_assert_str_eq(weir_last_error(),
                     "WEIR_SPIN: invalid value 'lots' (expected an integer 0..1000000)");
    /* Fixed, every variable applies. */
    setenv("WEIR_SPIN", "10", 1);
    cr_assert_eq(weir_config_from_env(&cfg), 0, "%s", weir_last_error());
    cr_assert_eq(cfg.workers, 2u);
    cr_assert_eq(cfg.affinity, WEIR_AFFINITY_EXPLICIT);
    cr_assert_eq(cfg.nplaces, 2u);
    cr_assert(cfg.print_stats);
    cr_assert(!cfg.numa);
    cr_assert_eq(cfg.spin, 10u);
    cr_assert_eq(weir_config_from_env(NULL), -EINVAL);
}

/* ---------------------------------------------------------------- parsers */

Test(places, parses_ranges_singles_and_whitespace)
{
    unsigned out[16];
    cr_assert_eq(weir_parse_places("0-3,8", out, 16), 5);
    unsigned want[] = {0, 1, 2, 3, 8};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(out[i], want[i]);
    cr_assert_eq(weir_parse_places(" 7 ", out, 16), 1);
    cr_assert_eq(out[0], 7u);
    cr_assert_eq(weir_parse_places(" 1 , 2 - 4 ,\t9", out, 16), 5);
    cr_assert_eq(out[1], 2u);
    cr_assert_eq(out[3], 4u);
    cr_assert_eq(out[4], 9u);
    /* Order is the caller's: worker i gets places[i % n]. */
    cr_assert_eq(weir_parse_places("5,3,1", out, 16), 3);
    cr_assert_eq(out[0], 5u);
    cr_assert_eq(out[2], 1u);
    cr_assert_eq(weir_parse_places("1048576", out, 16), 1);
    cr_assert_eq(out[0], 1u << 20);
    cr_assert_eq(weir_parse_places("4-4", out, 16), 1);
}

Test(places, rejects_malformed_lists)
{
    const char *bad[] = {
        "",      " ",   ",",   "1,", ",1",       "1,,2",  "3-1",     "1,1",
        "0-3,2", "a",   "1-",  "-1", "1--2",     "1-2-3", "1048577", "99999999999999999999",
        "1 2",   "0x1", "1;2", "+1", "1-1048577"};
    unsigned out[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weir_clear_error();
        int n = weir_parse_places(bad[i], out, 64);
        cr_assert_eq(n, -EINVAL, "'%s' gave %d", bad[i], n);
        cr_assert(contains(weir_last_error(), "places"), "'%s': %s", bad[i], weir_last_error());
    }
    cr_assert_eq(weir_parse_places(NULL, out, 64), -EINVAL);
    weir_parse_places("3-1", out, 64);
    cr_assert(contains(weir_last_error(), "reversed range 3-1"), "%s", weir_last_error());
    weir_parse_places("0-3,2", out, 64);
    cr_assert(contains(weir_last_error(), "PU 2 listed twice"), "%s", weir_last_error());
}

Test(places, more_entries_than_max_is_e2big)
{
    unsigned out[4];
    cr_assert_eq(weir_parse_places("0-3", out, 4), 4);
    cr_assert_eq(weir_parse_places("0-4", out, 4), -E2BIG);
    cr_assert_eq(weir_parse_places("0,1,2,3,9", out, 4), -E2BIG);
    /* A huge range stops at max instead of expanding a million entries. */
    cr_assert_eq(weir_parse_places("0-1048576", out, 4), -E2BIG);
    cr_assert_eq(weir_parse_places("1", out, 0), -E2BIG);
}

Test(affinity, names_round_trip_and_explicit_is_not_a_name)
{
    weir_affinity a = WEIR_AFFINITY_EXPLICIT;
    weir_affinity named[] = {WEIR_AFFINITY_NONE, WEIR_AFFINITY_COMPACT, WEIR_AFFINITY_SCATTER};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(weir_parse_affinity(weir_affinity_name(named[i]), &a), 0);
        cr_assert_eq(a, named[i]);
    }
    cr_assert_str_eq(weir_affinity_name(WEIR_AFFINITY_EXPLICIT), "explicit");
    cr_assert_str_eq(weir_affinity_name((weir_affinity)42), "unknown");
    a = WEIR_AFFINITY_COMPACT;
    cr_assert_eq(weir_parse_affinity("explicit", &a), -EINVAL);
    cr_assert_eq(weir_parse_affinity("", &a), -EINVAL);
    cr_assert_eq(weir_parse_affinity(NULL, &a), -EINVAL);
    cr_assert_eq(a, WEIR_AFFINITY_COMPACT);
    cr_assert_eq(weir_parse_affinity("NoNe", &a), 0);
    cr_assert_eq(a, WEIR_AFFINITY_NONE);
}

/* ---------------------------------------------------------------- errors, alloc, clock */

Test(error, strerror_is_distinct_for_every_weir_code)
{
    const int codes[] = {0,          -EINVAL,    -ENOMEM, -EAGAIN,    -ENODEV,   -EBUSY,
                         -ESHUTDOWN, -EDEADLK,   -E2BIG,  -ENOENT,    -EALREADY, -ECANCELED,
                         -EPIPE,     -EOVERFLOW, -ENOSPC, -ETIMEDOUT, -EPERM,    -ENOTSUP};
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = weir_strerror(codes[i]);
        cr_assert_not_null(s);
        cr_assert(s[0] != '\0');
        cr_assert_str_neq(s, "unknown error", "code %d", codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s, weir_strerror(codes[j]), "codes %d and %d share '%s'", codes[i],
                              codes[j], s);
    }
    /* Other errno values fall back to the C library's text. */
    cr_assert_str_eq(weir_strerror(-EIO), strerror(EIO));
    cr_assert_str_eq(weir_strerror(1), "unknown error");
    cr_assert_str_eq(weir_strerror(-4000), "unknown error");
    cr_assert_str_eq(weir_strerror(INT_MIN), "unknown error");
}

Test(error, last_error_is_set_cleared_and_bounded)
{
    weir_clear_error();
    cr_assert_str_eq(weir_last_error(), "");
    cr_assert_eq(weir__error(-EBUSY, "thing %d is %s", 4, "busy"), -EBUSY);
    cr_assert_str_eq(weir_last_error(), "thing 4 is busy");
    /* Wrapping the previous message in a new one is safe. */
    weir__error(-EINVAL, "outer: %s", weir_last_error());
    cr_assert_str_eq(weir_last_error(), "outer: thing 4 is busy");
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    weir__error(-EINVAL, "%s", big);
    cr_assert_eq(strlen(weir_last_error()), 255u);
    weir_clear_error();
    cr_assert_str_eq(weir_last_error(), "");
}

Test(alloc, fail_after_fails_exactly_the_kth_allocation)
{
    weir__alloc_fail_after(3);
    void *a = weir__malloc(16);
    void *b = weir__calloc(2, 8);
    void *c = weir__aligned_alloc(64, 100);
    void *d = weir__malloc(16);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_null(c);
    cr_assert_not_null(d, "the hook must disarm after one failure");
    weir__free(a);
    weir__free(b);
    weir__free(d);

    weir__alloc_fail_after(1);
    weir__alloc_fail_after(0); /* disarm before it fires */
    a = weir__malloc(1);
    cr_assert_not_null(a);
    weir__free(a);
}

Test(alloc, aligned_alloc_is_zeroed_and_aligned)
{
    unsigned char *p = weir__aligned_alloc(64, 1000);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 64, 0u);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(p[i], 0);
    weir__free(p);
    cr_assert_null(weir__aligned_alloc(48, 16), "alignment must be a power of two");
}

Test(clock, now_ns_is_monotonic)
{
    uint64_t a = weir__now_ns();
    uint64_t b = weir__now_ns();
    cr_assert(a > 0);
    cr_assert(b >= a);
}
