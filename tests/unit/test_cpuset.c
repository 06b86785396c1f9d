/*
 * Placement respects the CPUs the process may run on: under a restricted
 * affinity mask (taskset -c 1, a launcher's binding, a cgroup cpuset) the
 * default worker count and every policy use only the PUs in the mask, and an
 * explicit place outside it is -EINVAL naming the PU.
 *
 * Each check runs in a forked child that first narrows its own mask with
 * sched_setaffinity(), so the test process and the other tests keep theirs.
 * The child checks what the runtime reports (worker count, worker_info) and
 * what the kernel says about every thread of the process
 * (/proc/self/task/<tid>/status, Cpus_allowed_list), and exits non-zero with
 * a line on stderr when something is wrong.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weir.h"

/* The CPUs this (parent) process may run on, in increasing order. */
static int allowed_cpus(int *out, int max)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            out[n++] = c;
    return n;
}

#define CHILD_FAIL(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "child: " __VA_ARGS__);                                                    \
        fputc('\n', stderr);                                                                       \
        _exit(1);                                                                                  \
    } while (0)

static bool in_mask(int cpu, const int *mask, int n)
{
    for (int i = 0; i < n; i++)
        if (mask[i] == cpu)
            return true;
    return false;
}

/* Every thread of the process: its Cpus_allowed_list must lie within the
 * mask. @return the number of threads. */
static int check_threads(const int *mask, int nmask)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        CHILD_FAIL("cannot open /proc/self/task");
    int nthreads = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[320];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* the thread exited meanwhile */
        char line[512];
        bool seen = false;
        while (fgets(line, sizeof line, f) != NULL) {
            if (strncmp(line, "Cpus_allowed_list:", 18) != 0)
                continue;
            line[strcspn(line, "\n")] = '\0';
            unsigned cpus[256];
            int n = weir_parse_places(line + 18, cpus, 256);
            if (n <= 0)
                CHILD_FAIL("thread %s: cannot parse '%s'", e->d_name, line);
            for (int i = 0; i < n; i++)
                if (!in_mask((int)cpus[i], mask, nmask))
                    CHILD_FAIL("thread %s may run on CPU %u, outside the mask (%s)", e->d_name,
                               cpus[i], line);
            seen = true;
        }
        fclose(f);
        if (!seen)
            CHILD_FAIL("thread %s: no Cpus_allowed_list", e->d_name);
        nthreads++;
    }
    closedir(d);
    return nthreads;
}

/* In a child: restrict to `mask`, create a runtime with `affinity`, check
 * the worker count is within [min_workers, max_workers], each worker's PU
 * and each thread's mask; exit 0 when all holds. */
static int run_child(const int *mask, int nmask, weir_affinity affinity, unsigned min_workers,
                     unsigned max_workers)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int i = 0; i < nmask; i++)
            CPU_SET(mask[i], &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            CHILD_FAIL("sched_setaffinity failed");
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.workers = 0; /* the default count: what the mask allows */
        cfg.affinity = affinity;
        weir_runtime *rt;
        int err = weir_runtime_create(&cfg, &rt);
        if (err != 0)
            CHILD_FAIL("create: %s", weir_last_error());
        unsigned nw = weir_runtime_workers(rt);
        if (nw < min_workers || nw > max_workers)
            CHILD_FAIL("%u workers, expected %u..%u", nw, min_workers, max_workers);
        for (unsigned w = 0; w < nw; w++) {
            weir_worker_info info;
            if (weir_runtime_worker_info(rt, w, &info) != 0)
                CHILD_FAIL("worker_info %u: %s", w, weir_last_error());
            if (affinity == WEIR_AFFINITY_NONE) {
                if (info.pu != -1)
                    CHILD_FAIL("worker %u pinned to %d with affinity none", w, info.pu);
            } else {
                if (!in_mask(info.pu, mask, nmask))
                    CHILD_FAIL("worker %u placed on PU %d, outside the mask", w, info.pu);
                if (!info.pinned)
                    CHILD_FAIL("worker %u: pin to PU %d failed", w, info.pu);
            }
        }
        if (weir_runtime_failed_pins(rt) != 0)
            CHILD_FAIL("%u failed pins", weir_runtime_failed_pins(rt));
        int nthreads = check_threads(mask, nmask);
        if (nthreads != (int)nw + 1)
            CHILD_FAIL("%d threads, expected %u workers + the main thread", nthreads, nw);
        weir_runtime_destroy(rt);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Test(cpuset, one_pu_gives_one_worker_pinned_inside_the_mask)
{
    int cpus[CPU_SETSIZE];
    int n = allowed_cpus(cpus, CPU_SETSIZE);
    cr_assert(n >= 1);
    /* The last allowed CPU: on a 2-PU machine that is CPU 1, the case of
     * the bug (taskset -c 1 started 2 workers, one pinned to CPU 0). */
    int one[1] = {cpus[n - 1]};
    cr_expect_eq(run_child(one, 1, WEIR_AFFINITY_COMPACT, 1, 1), 0, "compact, mask {%d}", one[0]);
    cr_expect_eq(run_child(one, 1, WEIR_AFFINITY_SCATTER, 1, 1), 0, "scatter, mask {%d}", one[0]);
    cr_expect_eq(run_child(one, 1, WEIR_AFFINITY_NONE, 1, 1), 0, "none, mask {%d}", one[0]);
}

Test(cpuset, two_pus_give_at_most_two_workers_inside_the_mask)
{
    int cpus[CPU_SETSIZE];
    int n = allowed_cpus(cpus, CPU_SETSIZE);
    if (n < 2)
        cr_skip_test("needs 2 allowed CPUs, have %d", n);
    /* Two PUs are one or two cores (SMT siblings or not): one worker per
     * core, each inside the mask. */
    int two[2] = {cpus[n - 2], cpus[n - 1]};
    cr_expect_eq(run_child(two, 2, WEIR_AFFINITY_COMPACT, 1, 2), 0, "compact, mask {%d,%d}", two[0],
                 two[1]);
    cr_expect_eq(run_child(two, 2, WEIR_AFFINITY_SCATTER, 1, 2), 0, "scatter, mask {%d,%d}", two[0],
                 two[1]);
}

Test(cpuset, explicit_place_outside_the_mask_is_einval_naming_the_pu)
{
    int cpus[CPU_SETSIZE];
    int n = allowed_cpus(cpus, CPU_SETSIZE);
    if (n < 2)
        cr_skip_test("needs 2 allowed CPUs, have %d", n);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[n - 1], &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            CHILD_FAIL("sched_setaffinity failed");
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.affinity = WEIR_AFFINITY_EXPLICIT;
        cfg.places[0] = (unsigned)cpus[0];
        cfg.nplaces = 1;
        weir_runtime *rt = NULL;
        int err = weir_runtime_create(&cfg, &rt);
        if (err != -EINVAL)
            CHILD_FAIL("create returned %d, expected -EINVAL", err);
        char want[96];
        snprintf(want, sizeof want, "PU %d is outside the CPUs this process may run on", cpus[0]);
        if (strstr(weir_last_error(), want) == NULL)
            CHILD_FAIL("message '%s' lacks '%s'", weir_last_error(), want);
        /* The PU inside the mask is accepted. */
        cfg.places[0] = (unsigned)cpus[n - 1];
        err = weir_runtime_create(&cfg, &rt);
        if (err != 0)
            CHILD_FAIL("create with the allowed PU: %s", weir_last_error());
        weir_worker_info info;
        weir_runtime_worker_info(rt, 0, &info);
        if (info.pu != cpus[n - 1] || !info.pinned)
            CHILD_FAIL("worker 0 on PU %d (pinned %d), expected %d", info.pu, info.pinned,
                       cpus[n - 1]);
        weir_runtime_destroy(rt);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (see its stderr)");
}

Test(cpuset, synthetic_topology_ignores_the_mask)
{
    /* A synthetic topology describes another machine: the caller's mask says
     * nothing about its PUs, so the planner still sees all of them. */
    int cpus[CPU_SETSIZE];
    int n = allowed_cpus(cpus, CPU_SETSIZE);
    cr_assert(n >= 1);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[n - 1], &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            CHILD_FAIL("sched_setaffinity failed");
        weir_config cfg;
        weir_config_init(&cfg);
        cfg.synthetic_topology = "pack:2 core:2 pu:1";
        weir_runtime *rt = NULL;
        int err = weir_runtime_create(&cfg, &rt);
        if (err == -ENODEV)
            _exit(0); /* built without hwloc: synthetic topologies are refused */
        if (err != 0)
            CHILD_FAIL("create: %s", weir_last_error());
        if (weir_runtime_workers(rt) != 4)
            CHILD_FAIL("%u workers on a synthetic 4-core machine", weir_runtime_workers(rt));
        weir_runtime_destroy(rt);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (see its stderr)");
}
