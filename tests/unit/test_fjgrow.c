/*
 * Fork-join deque growth when the allocator fails.
 *
 * A spawn that reaches the end of a worker's last segment allocates the next
 * one (runtime/fjdeque.c). A spawn has no error channel, so when that
 * allocation fails weir prints one line naming the worker and aborts: the
 * only abort() in the library. These tests pin both sides of it:
 *   - the abort, its signal and its message, in a child process (fork +
 *     waitpid + a pipe on the child's stderr: the test sees the signal and
 *     the text, and Criterion's own child survives to report);
 *   - the way to avoid it: frames reserved up front with
 *     weir_config.deque_initial (segment 0, allocated by
 *     weir_runtime_create) mean a run that stays within them allocates
 *     nothing, so it completes under an allocator that fails every call.
 *
 * The task spawns `width` leaves and then syncs them all: with one worker it
 * holds exactly `width` frames at its deepest, so deque_initial = width fits
 * and width + 1 needs segment 1. Leaves spawn nothing, so a worker that runs
 * stolen leaves on top of its own frames (while it waits in a sync) does not
 * go deeper either: the bound holds for any number of workers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weir.h"

/* runtime/internal.h: weir's own count of live blocks. */
long weir__alloc_live(void);

/* ------------------------------------------------------- test allocator */

/* Allocations from the worker threads too: sequentially consistent atomics
 * (a test, not a hot path). */
static struct {
    _Atomic size_t fail_from; /* calls for this many bytes or more fail */
    _Atomic long calls;       /* malloc_fn + realloc_fn calls since arm() */
    _Atomic long live;        /* blocks returned and not yet freed */
} T = {SIZE_MAX, 0, 0};

static bool t_fail_now(size_t size)
{
    atomic_fetch_add(&T.calls, 1);
    return size >= atomic_load(&T.fail_from);
}

static void *t_malloc(size_t size, void *ctx)
{
    (void)ctx;
    if (t_fail_now(size))
        return NULL;
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&T.live, 1);
    return p;
}

static void *t_realloc(void *p, size_t size, void *ctx)
{
    (void)ctx;
    if (t_fail_now(size))
        return NULL;
    void *q = realloc(p, size);
    if (q && !p)
        atomic_fetch_add(&T.live, 1);
    return q;
}

static void t_free(void *p, void *ctx)
{
    (void)ctx;
    if (p) {
        atomic_fetch_sub(&T.live, 1);
        free(p);
    }
}

static const weir_allocator failing_allocator = {t_malloc, t_realloc, t_free, NULL};

/* From now on every allocation of `min_size` bytes or more fails (0: all). */
static void arm(size_t min_size)
{
    atomic_store(&T.calls, 0);
    atomic_store(&T.fail_from, min_size);
}

static void disarm(void)
{
    atomic_store(&T.fail_from, SIZE_MAX);
}

/* ------------------------------------------------------------ the task */

WEIR_TASK_1(long, leaf, long, i)
{
    return i;
}

/* Spawn `width` leaves, then sync them: `width` frames at the deepest. */
WEIR_TASK_1(long, wide, long, width)
{
    for (long i = 0; i < width; i++)
        WEIR_SPAWN(leaf, i);
    long s = 0;
    for (long i = 0; i < width; i++)
        s += WEIR_SYNC(leaf);
    return s;
}

static weir_runtime *make_rt(unsigned workers, unsigned initial)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    cfg.deque_initial = initial;
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    return err == 0 ? rt : NULL;
}

/* ------------------------------------------------------------ the abort */

/* What the child that must abort reports through its exit status when it
 * does not get that far. */
enum { CHILD_SETUP_FAILED = 3, CHILD_RETURNED = 4 };

/* In the child: stderr to `err_fd`, a runtime of one worker with
 * `initial` frames reserved, then a spawn one frame past them with every
 * allocation failing. Never returns: abort() from weir, or _exit() (no
 * Criterion or sanitizer exit handlers in a child that must not report). */
static _Noreturn void grow_with_failing_allocator(int err_fd, unsigned initial)
{
    alarm(60); /* a hang ends as SIGALRM, which the parent reports */
    if (dup2(err_fd, STDERR_FILENO) < 0 || weir_set_allocator(&failing_allocator) != 0)
        _exit(CHILD_SETUP_FAILED);
    weir_runtime *rt = make_rt(1, initial);
    if (rt == NULL)
        _exit(CHILD_SETUP_FAILED);
    arm(0);
    long s = wide_run(rt, (long)initial + 1);
    (void)s;
    _exit(CHILD_RETURNED);
}

Test(fjgrow, spawn_that_cannot_grow_the_deque_aborts_naming_the_worker)
{
    const unsigned initial = 4;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        grow_with_failing_allocator(fds[1], initial);
    }
    close(fds[1]);
    /* Read everything the child writes to stderr (sanitizer reports
     * included) until it dies and the pipe closes. */
    char out[8192];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fds[0], out + n, sizeof out - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof out - 1)
            break;
    }
    out[n] = '\0';
    close(fds[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);

    cr_assert(WIFSIGNALED(status),
              "the child exited with status %d instead of aborting; stderr: %s",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    cr_assert_eq(WTERMSIG(status), SIGABRT, "the child died of signal %d, not SIGABRT; stderr: %s",
                 WTERMSIG(status), out);
    /* Segment 1 of a deque that starts with 4 frames: 4 + 8 = 12 frames. */
    const char *want = "weir: fatal: worker 0 cannot grow its frame deque to 12 frames: out of "
                       "memory (weir_config.deque_initial reserves frames at create)\n";
    cr_assert(strstr(out, want) != NULL, "stderr of the child:\n%s\nexpected a line:\n%s", out,
              want);
}

/* --------------------------------------------------- frames reserved up front */

static void reserved_run(unsigned workers, unsigned initial)
{
    cr_assert_eq(weir_set_allocator(&failing_allocator), 0, "%s", weir_last_error());
    weir_runtime *rt = make_rt(workers, initial);
    cr_assert_not_null(rt, "create: %s", weir_last_error());
    for (int round = 0; round < 3; round++) {
        arm(0);
        long s = wide_run(rt, (long)initial);
        long calls = atomic_load(&T.calls);
        disarm();
        const long want = (long)initial * ((long)initial - 1) / 2;
        cr_assert_eq(s, want, "%u workers, %u frames reserved, round %d: sum %ld, want %ld",
                     workers, initial, round, s, want);
        cr_assert_eq(calls, 0,
                     "%u workers, %u frames reserved, round %d: the run made %ld allocations",
                     workers, initial, round, calls);
    }
    weir_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&T.live), 0, "%ld blocks leaked", atomic_load(&T.live));
    cr_assert_eq(weir__alloc_live(), 0);
    cr_assert_eq(weir_set_allocator(NULL), 0, "%s", weir_last_error());
}

Test(fjgrow, deque_initial_reserves_frames_so_a_run_within_them_never_allocates)
{
    reserved_run(1, 4);
    reserved_run(1, 4096);
    reserved_run(2, 4096);
}

/* The reservation is allocated by create, so a reservation the allocator
 * cannot provide is an error the caller gets, not an abort later. */
Test(fjgrow, a_reservation_that_cannot_be_allocated_fails_create_with_enomem)
{
    cr_assert_eq(weir_set_allocator(&failing_allocator), 0, "%s", weir_last_error());
    const unsigned initial = 1u << 20;         /* the largest: 64 MiB of frames */
    arm((size_t)initial * sizeof(weir_frame)); /* only the segment fails */
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 1;
    cfg.affinity = WEIR_AFFINITY_NONE;
    cfg.print_stats = false;
    cfg.deque_initial = initial;
    weir_runtime *rt = NULL;
    int err = weir_runtime_create(&cfg, &rt);
    disarm();
    cr_assert_eq(err, -ENOMEM, "create gave %d (%s)", err, weir_last_error());
    cr_assert(strstr(weir_last_error(), "deques of worker 0"), "message: %s", weir_last_error());
    cr_assert_null(rt);
    cr_assert_eq(atomic_load(&T.live), 0, "%ld blocks leaked", atomic_load(&T.live));
    /* The same reservation, once it can be had: create succeeds. */
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    cr_assert_eq(wide_run(rt, 1000), 1000L * 999 / 2);
    weir_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&T.live), 0);
}
