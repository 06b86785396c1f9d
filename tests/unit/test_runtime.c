/* Runtime lifecycle, placement reporting, statistics and error paths. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"

Test(runtime, create_with_null_config_uses_defaults_and_env)
{
    unsetenv("WEIR_WORKERS");
    setenv("WEIR_WORKERS", "3", 1);
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(NULL, &rt), 0, "%s", weir_last_error());
    cr_assert_eq(weir_runtime_workers(rt), 3);
    weir_runtime_destroy(rt);
    unsetenv("WEIR_WORKERS");
}

Test(runtime, garbage_in_environment_fails_create_with_einval_naming_it)
{
    setenv("WEIR_WORKERS", "lots", 1);
    weir_runtime *rt = (weir_runtime *)0x1;
    cr_assert_eq(weir_runtime_create(NULL, &rt), -EINVAL);
    cr_assert_eq(rt, (weir_runtime *)0x1, "out must be untouched on failure");
    cr_assert(strstr(weir_last_error(), "WEIR_WORKERS") && strstr(weir_last_error(), "lots"),
              "message: %s", weir_last_error());
    unsetenv("WEIR_WORKERS");
}

Test(runtime, invalid_config_field_fails_create)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.deque_initial = 3;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), -EINVAL);
    cr_assert(strstr(weir_last_error(), "deque_initial"), "message: %s", weir_last_error());
    cr_assert_eq(weir_runtime_create(&cfg, NULL), -EINVAL);
}

Test(runtime, default_worker_count_is_one_per_core)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 0;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq((long)weir_runtime_workers(rt), cores);
    for (unsigned i = 0; i < weir_runtime_workers(rt); i++) {
        weir_worker_info info;
        cr_assert_eq(weir_runtime_worker_info(rt, i, &info), 0);
        cr_assert_geq(info.pu, 0);
        cr_assert_eq(info.pinned, 1, "worker %u not pinned on the real machine", i);
    }
    weir_worker_info info;
    cr_assert_eq(weir_runtime_worker_info(rt, 99, &info), -EINVAL);
    cr_assert_eq(weir_runtime_failed_pins(rt), 0);
    weir_runtime_destroy(rt);
}

WEIR_TASK_1(long, fibr, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fibr, n - 1);
    long b = WEIR_CALL(fibr, n - 2);
    return WEIR_SYNC(fibr) + b;
}

Test(runtime, synthetic_two_socket_topology_places_workers_and_counts_failed_pins)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.synthetic_topology = "pack:2 [numa] l3:2 core:8 pu:2";
    cfg.workers = 4;
    cfg.affinity = WEIR_AFFINITY_SCATTER;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    int nodes[2] = {0, 0};
    for (unsigned i = 0; i < 4; i++) {
        weir_worker_info info;
        cr_assert_eq(weir_runtime_worker_info(rt, i, &info), 0);
        cr_assert(info.numa_node == 0 || info.numa_node == 1);
        nodes[info.numa_node]++;
        cr_assert_eq(info.pinned, 0); /* synthetic PUs cannot be pinned */
    }
    cr_assert_eq(nodes[0], 2);
    cr_assert_eq(nodes[1], 2);
    cr_assert_eq(weir_runtime_failed_pins(rt), 4);
    /* and it still computes */
    cr_assert_eq(fibr_run(rt, 20), 6765);
    weir_runtime_destroy(rt);
}

Test(runtime, bad_synthetic_topology_is_an_error)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.synthetic_topology = "this is not a topology";
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    cr_assert(err == -ENODEV || err == -EINVAL, "err %d", err);
    cr_assert_neq(weir_last_error()[0], '\0');
}

Test(runtime, stats_table_lists_every_worker)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 2;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0);
    cr_assert_eq(fibr_run(rt, 20), 6765);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weir_runtime_print_stats(rt, f);
    fclose(f);
    cr_assert(strstr(buf, "steal_att") && strstr(buf, "\n   0 ") && strstr(buf, "\n   1 "),
              "table:\n%s", buf);
    free(buf);
    weir_worker_stats s;
    cr_assert_eq(weir_runtime_stats(rt, 0, &s), 0);
    cr_assert_eq(weir_runtime_stats(rt, 2, &s), -EINVAL);
    weir_runtime_stats_reset(rt);
    weir_worker_stats t;
    weir_runtime_stats_total(rt, &t);
    cr_assert_eq(t.tasks_run, 0);
    weir_runtime_destroy(rt);
}

Test(runtime, destroy_null_is_harmless_and_strerror_covers_codes)
{
    weir_runtime_destroy(NULL);
    cr_assert_str_eq(weir_strerror(0), weir_strerror(0));
    cr_assert_not_null(weir_strerror(-EINVAL));
    cr_assert_not_null(weir_strerror(-123456));
}

Test(runtime, many_create_destroy_cycles_leave_nothing_running)
{
    for (int i = 0; i < 50; i++) {
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.workers = 1 + i % 4;
        weir_runtime *rt = NULL;
        cr_assert_eq(weir_runtime_create(&cfg, &rt), 0);
        if (i % 2)
            cr_assert_eq(fibr_run(rt, 15), 610);
        weir_runtime_destroy(rt);
    }
}
