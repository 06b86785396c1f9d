/*
 * The description of a runtime (weir_runtime_describe, WEIR_DISPLAY_ENV),
 * the log sink (weir_set_log) and the version. Criterion runs every test in
 * a process of its own, so WEIR_DISPLAY_ENV's once-per-process report and the
 * process-wide sink start fresh in each.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

/* A sink that keeps everything it is given. */
typedef struct captured {
    pthread_mutex_t lock;
    char text[16384];
    size_t len;
    int count[4];
} captured;

static void capture(weir_log_level level, const char *msg, void *ctx)
{
    captured *c = ctx;
    pthread_mutex_lock(&c->lock);
    if ((int)level >= 0 && (int)level < 4)
        c->count[level]++;
    int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%s: %s\n",
                     weir_log_level_name(level), msg);
    if (n > 0)
        c->len += (size_t)n < sizeof c->text - c->len ? (size_t)n : sizeof c->text - c->len - 1;
    pthread_mutex_unlock(&c->lock);
}

static captured cap = {.lock = PTHREAD_MUTEX_INITIALIZER};

static weir_runtime *synthetic_runtime(unsigned workers)
{
    static weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.synthetic_topology = "pack:2 [numa] l3:1 core:2 pu:1";
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    if (err == -ENODEV)
        cr_skip_test("built without hwloc: no synthetic topologies");
    cr_assert_eq(err, 0, "%s", weir_last_error());
    return rt;
}

Test(version, header_and_library_agree)
{
    cr_expect_str_eq(weir_version(), WEIR_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", WEIR_VERSION_MAJOR, WEIR_VERSION_MINOR,
             WEIR_VERSION_PATCH);
    cr_expect_str_eq(WEIR_VERSION_STRING, want);
    cr_expect_eq(WEIR_VERSION_NUMBER,
                 WEIR_VERSION_MAJOR * 10000 + WEIR_VERSION_MINOR * 100 + WEIR_VERSION_PATCH);
}

Test(describe, names_version_sources_and_the_placement_table)
{
    setenv("WEIR_SPIN", "123", 1);
    weir_config cfg;
    weir_config_init(&cfg);
    cr_assert_eq(weir_config_from_env(&cfg), 0);
    cfg.workers = 4;
    cfg.affinity = WEIR_AFFINITY_SCATTER;
    cfg.synthetic_topology = "pack:2 [numa] l3:1 core:2 pu:1";
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    if (err == -ENODEV)
        cr_skip_test("built without hwloc: no synthetic topologies");
    cr_assert_eq(err, 0, "%s", weir_last_error());

    char buf[4096];
    int n = weir_runtime_describe(rt, buf, sizeof buf);
    cr_assert(n > 0 && (size_t)n < sizeof buf, "describe returned %d", n);
    cr_expect_eq(strlen(buf), (size_t)n);
    char want[64];
    snprintf(want, sizeof want, "version        %s\n", WEIR_VERSION_STRING);
    cr_expect(strstr(buf, want) != NULL, "%s", buf);
    cr_expect(strstr(buf, "WEIR DISPLAY ENVIRONMENT BEGIN\n") == buf, "%s", buf);
    cr_expect(strstr(buf, "topology       synthetic") != NULL, "%s", buf);
    cr_expect(strstr(buf, "workers        4           [config]\n") != NULL, "%s", buf);
    cr_expect(strstr(buf, "affinity       scatter     [config]\n") != NULL, "%s", buf);
    cr_expect(strstr(buf, "spin           123         [environment WEIR_SPIN]\n") != NULL, "%s",
              buf);
    cr_expect(strstr(buf, "numa           true        [default]\n") != NULL, "%s", buf);
    /* Scatter over 2 packages (one NUMA node and L3 each): workers 0 and 2
     * share package 0, 1 and 3 package 1. Worker 0's nearest victim is 2
     * (same L3), then the other node's 1 and 3. */
    cr_expect(strstr(buf, "       0     -     0    0       -  ") == NULL, "%s", buf);
    cr_expect(strstr(buf, "  2 | - | 1 3\n") != NULL, "worker 0's victims: %s", buf);
    cr_expect(strstr(buf, "WEIR DISPLAY ENVIRONMENT END\n") != NULL, "%s", buf);

    /* snprintf semantics: a short buffer gets a NUL-terminated prefix and the
     * full length. */
    char small[16];
    cr_expect_eq(weir_runtime_describe(rt, small, sizeof small), n);
    cr_expect_eq(strlen(small), sizeof small - 1);
    cr_expect_eq(strncmp(small, buf, sizeof small - 1), 0);
    cr_expect_eq(weir_runtime_describe(rt, NULL, 0), n);
    cr_expect_eq(weir_runtime_describe(rt, NULL, 8), -EINVAL);
    cr_expect_eq(weir_runtime_describe(NULL, buf, sizeof buf), -EINVAL);

    /* The FILE form writes the same text. */
    FILE *f = tmpfile();
    cr_assert(f != NULL);
    cr_expect_eq(weir_runtime_print_description(rt, f), 0);
    rewind(f);
    char back[4096];
    size_t got = fread(back, 1, sizeof back - 1, f);
    back[got] = '\0';
    fclose(f);
    cr_expect_str_eq(back, buf);
    weir_runtime_destroy(rt);
    unsetenv("WEIR_SPIN");
}

Test(describe, environment_defaults_are_labelled)
{
    setenv("WEIR_WORKERS", "3", 1);
    setenv("WEIR_PLACES", "0", 1);
    weir_config cfg;
    weir_config_init(&cfg);
    cr_assert_eq(weir_config_from_env(&cfg), 0);
    cfg.synthetic_topology = "pack:1 core:2 pu:1";
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    if (err == -ENODEV)
        cr_skip_test("built without hwloc: no synthetic topologies");
    cr_assert_eq(err, 0, "%s", weir_last_error());
    char buf[4096];
    cr_assert(weir_runtime_describe(rt, buf, sizeof buf) > 0);
    cr_expect(strstr(buf, "workers        3           [environment WEIR_WORKERS]\n") != NULL, "%s",
              buf);
    cr_expect(strstr(buf, "affinity       explicit    [environment WEIR_PLACES]\n") != NULL, "%s",
              buf);
    cr_expect(strstr(buf, "places         0           [environment WEIR_PLACES]\n") != NULL, "%s",
              buf);
    cr_expect(strstr(buf, "spin           4096        [default]\n") != NULL, "%s", buf);
    weir_runtime_destroy(rt);
    unsetenv("WEIR_WORKERS");
    unsetenv("WEIR_PLACES");
}

Test(display_env, reports_once_through_the_log_sink)
{
    weir_set_log(capture, &cap);
    setenv("WEIR_DISPLAY_ENV", "1", 1);
    weir_runtime *a = synthetic_runtime(2);
    weir_runtime *b = synthetic_runtime(3);
    cr_expect_eq(cap.count[WEIR_LOG_INFO], 1, "one report per process, got %d:\n%s",
                 cap.count[WEIR_LOG_INFO], cap.text);
    cr_expect(strstr(cap.text, "info: WEIR DISPLAY ENVIRONMENT BEGIN\n") != NULL, "%s", cap.text);
    cr_expect(strstr(cap.text, "workers        2") != NULL, "the first runtime's: %s", cap.text);
    weir_runtime_destroy(b);
    weir_runtime_destroy(a);
    unsetenv("WEIR_DISPLAY_ENV");
    weir_set_log(NULL, NULL);
}

Test(display_env, verbose_lists_every_victim)
{
    weir_set_log(capture, &cap);
    setenv("WEIR_DISPLAY_ENV", "verbose", 1);
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 12;
    cfg.synthetic_topology = "pack:1 core:12 pu:1";
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    if (err == -ENODEV)
        cr_skip_test("built without hwloc: no synthetic topologies");
    cr_assert_eq(err, 0, "%s", weir_last_error());
    cr_expect_eq(cap.count[WEIR_LOG_INFO], 1);
    cr_expect(strstr(cap.text, "more)") == NULL, "verbose cuts no victim list: %s", cap.text);
    weir_runtime_destroy(rt);
    unsetenv("WEIR_DISPLAY_ENV");
    weir_set_log(NULL, NULL);
}

Test(display_env, short_form_cuts_long_victim_lists)
{
    weir_set_log(capture, &cap);
    setenv("WEIR_DISPLAY_ENV", "true", 1);
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 12;
    cfg.synthetic_topology = "pack:1 core:12 pu:1";
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    if (err == -ENODEV)
        cr_skip_test("built without hwloc: no synthetic topologies");
    cr_assert_eq(err, 0, "%s", weir_last_error());
    cr_expect(strstr(cap.text, "... (3 more)") != NULL, "%s", cap.text);
    weir_runtime_destroy(rt);
    unsetenv("WEIR_DISPLAY_ENV");
    weir_set_log(NULL, NULL);
}

Test(display_env, bad_value_is_a_warning_and_create_succeeds)
{
    weir_set_log(capture, &cap);
    setenv("WEIR_DISPLAY_ENV", "loud", 1);
    weir_clear_error();
    weir_runtime *rt = synthetic_runtime(1);
    cr_expect_eq(cap.count[WEIR_LOG_INFO], 0);
    cr_expect_eq(cap.count[WEIR_LOG_WARNING], 1, "%s", cap.text);
    cr_expect(strstr(cap.text, "warning: WEIR_DISPLAY_ENV: invalid value 'loud'") != NULL, "%s",
              cap.text);
    cr_expect_str_eq(weir_last_error(), "", "a successful create leaves the last error alone");
    weir_runtime_destroy(rt);
    unsetenv("WEIR_DISPLAY_ENV");
    weir_set_log(NULL, NULL);
}

Test(log, misuse_warnings_go_to_the_sink_not_stderr)
{
    weir_set_log(capture, &cap);
    weir_runtime *rt = synthetic_runtime(1);
    weir_runtime_detach(rt); /* no matching attach: refused, a warning */
    cr_expect_eq(cap.count[WEIR_LOG_WARNING], 1, "%s", cap.text);
    cr_expect(strstr(cap.text,
                     "warning: weir_runtime_detach without a matching attach; ignored\n") != NULL,
              "%s", cap.text);
    weir_runtime_destroy(rt);
    weir_set_log(NULL, NULL);
    cr_expect_str_eq(weir_log_level_name(WEIR_LOG_FATAL), "fatal");
    cr_expect_str_eq(weir_log_level_name(WEIR_LOG_INFO), "info");
}

Test(log, default_sink_writes_prefixed_lines_to_stderr, .init = cr_redirect_stderr)
{
    weir_runtime *rt = synthetic_runtime(1);
    weir_runtime_detach(rt);
    weir_runtime_destroy(rt);
    fflush(stderr);
    cr_expect_stderr_eq_str("weir: warning: weir_runtime_detach without a matching attach; "
                            "ignored\n");
}
