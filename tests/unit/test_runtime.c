/* Runtime lifecycle, placement reporting, statistics and error paths. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir.h"
/* The attachment count and the lifecycle state (rt->refs, rt->stopping) and
 * weir__alloc_live(): white-box checks of the runtime's lifetime. */
#include "scheduler.h"

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

/* ------------------------------------------------ lifetime: attach/detach
 *
 * Rows R12-R14 of the "Bad input" table in docs/reliability.md (the comment
 * above each check names its row), and the attachment count itself. */

static weir_runtime *small_runtime(unsigned workers)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    weir_runtime *r = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &r), 0, "%s", weir_last_error());
    return r;
}

static unsigned long refs_of(weir_runtime *r)
{
    return atomic_load(&r->refs);
}

Test(runtime_lifetime, destroy_without_attachments_frees_everything_at_once)
{
    const long base = weir__alloc_live();
    weir_runtime *rt = small_runtime(2);
    cr_assert_gt(weir__alloc_live(), base);
    cr_assert_eq(refs_of(rt), 1, "the owner's reference only");
    weir_runtime_destroy(rt);
    cr_assert_eq(weir__alloc_live(), base, "%ld blocks left", weir__alloc_live() - base);
}

Test(runtime_lifetime, attach_counts_and_the_handle_outlives_destroy_until_the_last_detach)
{
    const long base = weir__alloc_live();
    weir_runtime *rt = small_runtime(2);
    cr_assert_eq(weir_runtime_attach(rt), 0, "%s", weir_last_error());
    cr_assert_eq(weir_runtime_attach(rt), 0);
    cr_assert_eq(weir_runtime_attach(rt), 0);
    cr_assert_eq(refs_of(rt), 4, "owner + 3 attachments");
    weir_runtime_detach(rt);
    cr_assert_eq(refs_of(rt), 3);
    cr_assert_eq(fibr_run(rt, 15), 610, "an attached runtime works as before");
    weir_runtime_destroy(rt);
    /* Workers, deques, plan and topology are gone; only the struct is left,
     * held by the two attachments. */
    cr_assert_eq(weir__alloc_live() - base, 1, "only the handle may remain");
    cr_assert_eq(refs_of(rt), 2);
    cr_assert_eq(atomic_load(&rt->stopping), WEIR__RT_DESTROYED);
    weir_runtime_detach(rt);
    cr_assert_eq(refs_of(rt), 1);
    cr_assert_eq(weir__alloc_live() - base, 1);
    weir_runtime_detach(rt); /* the last: frees the handle (ASan checks) */
    cr_assert_eq(weir__alloc_live(), base);
}

static void never_run(weir_worker *w, weir_job *j)
{
    (void)w;
    (void)j;
    cr_assert_fail("a job ran on a destroyed runtime");
}

Test(runtime_lifetime, calls_on_a_destroyed_attached_runtime_return_eshutdown_or_a_neutral_value)
{
    weir_runtime *rt = small_runtime(2);
    cr_assert_eq(weir_runtime_attach(rt), 0);
    weir_runtime_destroy(rt);

    /* R12: every call on the destroyed handle. */
    cr_assert(weir_runtime_stopping(rt));
    cr_assert_eq(weir_runtime_workers(rt), 0);
    cr_assert_eq(weir_runtime_failed_pins(rt), 0);
    cr_assert_null(weir_runtime_self(rt));

    weir_worker_info info;
    weir_clear_error();
    cr_assert_eq(weir_runtime_worker_info(rt, 0, &info), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "destroyed"), "message: %s", weir_last_error());

    weir_worker_stats s;
    weir_clear_error();
    cr_assert_eq(weir_runtime_stats(rt, 0, &s), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "weir_runtime_stats: the runtime was destroyed"),
              "message: %s", weir_last_error());
    memset(&s, 0xff, sizeof s);
    weir_runtime_stats_total(rt, &s);
    weir_worker_stats zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(memcmp(&s, &zero, sizeof s), 0, "totals of a destroyed runtime are zeros");
    weir_runtime_stats_reset(rt); /* a no-op */

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weir_runtime_print_stats(rt, f);
    fclose(f);
    cr_assert(strstr(buf, "runtime destroyed"), "table: %s", buf);
    free(buf);

    weir_job job;
    weir_job_init(&job, never_run, NULL, 0);
    weir_clear_error();
    cr_assert_eq(weir_submit(rt, &job), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "weir_submit: the runtime was destroyed"), "message: %s",
              weir_last_error());
    weir_job_init(&job, never_run, NULL, 1);
    cr_assert_eq(weir_job_release(rt, &job), -ESHUTDOWN);

    /* A fork-join root: refused, a zeroed result and the message. */
    weir_clear_error();
    cr_assert_eq(fibr_run(rt, 20), 0);
    cr_assert(strstr(weir_last_error(), "was destroyed"), "message: %s", weir_last_error());

    /* A new attachment is refused and leaves the count as it was. */
    weir_clear_error();
    cr_assert_eq(weir_runtime_attach(rt), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "weir_runtime_attach: the runtime was destroyed"),
              "message: %s", weir_last_error());
    cr_assert_eq(refs_of(rt), 1);

    /* R14: destroying twice is a misuse; while attached it is refused. */
    weir_clear_error();
    weir_runtime_destroy(rt);
    cr_assert(strstr(weir_last_error(), "already destroyed"), "message: %s", weir_last_error());
    cr_assert_eq(refs_of(rt), 1);

    weir_runtime_detach(rt);
}

Test(runtime_lifetime, attach_and_detach_refuse_misuse)
{
    /* R13: NULL. */
    weir_clear_error();
    cr_assert_eq(weir_runtime_attach(NULL), -EINVAL);
    cr_assert(strstr(weir_last_error(), "NULL"), "message: %s", weir_last_error());
    weir_runtime_detach(NULL); /* ignored */

    weir_runtime *rt = small_runtime(1);
    /* R14: more detaches than attaches would free a running runtime: refused. */
    weir_clear_error();
    weir_runtime_detach(rt);
    cr_assert(strstr(weir_last_error(), "no attachment left"), "message: %s", weir_last_error());
    cr_assert_eq(refs_of(rt), 1);
    cr_assert_eq(fibr_run(rt, 15), 610, "the runtime still works");
    cr_assert_eq(weir_runtime_attach(rt), 0);
    weir_runtime_detach(rt);
    weir_runtime_detach(rt); /* again one too many */
    cr_assert_eq(refs_of(rt), 1);
    weir_runtime_destroy(rt);
}

/* A runtime whose only worker is held by a job, so that a destroy begun on
 * another thread waits (stopping set) until the test releases it. */
typedef struct held {
    weir_runtime *rt;
    weir_job job;
    weir_latch started, release;
} held;

static void hold_fn(weir_worker *w, weir_job *j)
{
    held *h = (held *)(void *)((char *)j - offsetof(held, job));
    (void)w;
    weir_latch_set(&h->started);
    weir_latch_wait(&h->release);
}

static void *destroy_thread(void *arg)
{
    weir_runtime_destroy(arg);
    return NULL;
}

Test(runtime_lifetime, attach_while_destroy_runs_fails_with_eshutdown)
{
    const long base = weir__alloc_live();
    held h;
    h.rt = small_runtime(1);
    weir_job_init(&h.job, hold_fn, NULL, 0);
    weir_latch_init(&h.started);
    weir_latch_init(&h.release);
    cr_assert_eq(weir_submit(h.rt, &h.job), 0);
    weir_latch_wait(&h.started);
    /* Attached before: this attachment keeps the handle after destroy. */
    cr_assert_eq(weir_runtime_attach(h.rt), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, destroy_thread, h.rt), 0);
    while (!weir_runtime_stopping(h.rt))
        sched_yield();
    /* R13: attach while destroy runs. */
    weir_clear_error();
    cr_assert_eq(weir_runtime_attach(h.rt), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "weir_runtime_attach: the runtime is being destroyed"),
              "message: %s", weir_last_error());
    weir_clear_error();
    cr_assert_eq(weir_submit(h.rt, &h.job), -ESHUTDOWN);
    cr_assert(strstr(weir_last_error(), "is being destroyed"), "message: %s", weir_last_error());
    /* R14: a second destroy while the first runs is refused too. */
    weir_clear_error();
    weir_runtime_destroy(h.rt);
    cr_assert(strstr(weir_last_error(), "already being destroyed"), "message: %s",
              weir_last_error());
    weir_latch_set(&h.release);
    pthread_join(t, NULL);
    cr_assert_eq(refs_of(h.rt), 1, "the test's attachment only");
    weir_runtime_detach(h.rt);
    cr_assert_eq(weir__alloc_live(), base);
}

/* The destroying thread and a detaching thread race to drop the last
 * reference: whichever is last frees the handle, exactly once (ASan reports
 * a use after free or a double free; the live count a leak). */
typedef struct racer {
    weir_runtime *rt;
    weir_latch go;
} racer;

static void *detach_thread(void *arg)
{
    racer *r = arg;
    weir_latch_wait(&r->go);
    weir_runtime_detach(r->rt);
    return NULL;
}

Test(runtime_lifetime, destroy_and_the_last_detach_may_race_on_two_threads)
{
    const long base = weir__alloc_live();
    for (int i = 0; i < 100; i++) {
        racer r;
        r.rt = small_runtime(1 + i % 2);
        weir_latch_init(&r.go);
        cr_assert_eq(weir_runtime_attach(r.rt), 0);
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, detach_thread, &r), 0);
        if (i % 2)
            weir_latch_set(&r.go); /* detach while destroy stops the workers */
        weir_runtime_destroy(r.rt);
        if (!(i % 2))
            weir_latch_set(&r.go); /* detach after destroy: it frees */
        pthread_join(t, NULL);
        cr_assert_eq(weir__alloc_live(), base, "round %d: %ld blocks left", i,
                     weir__alloc_live() - base);
    }
}
