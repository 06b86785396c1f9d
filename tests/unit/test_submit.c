/* Detached jobs: submission from foreign threads and from workers, exact
 * counting, dependency counters, successors, latches, errors. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "weir.h"

static weir_runtime *make_rt(unsigned workers)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    return rt;
}

typedef struct counter_job {
    weir_job job;
    _Atomic long *ran;   /* per-job run count */
    _Atomic long *total;
    long target;
    weir_latch *done;
} counter_job;

static void count_fn(weir_worker *w, weir_job *j)
{
    counter_job *c = (counter_job *)(void *)j;
    atomic_fetch_add_explicit(c->ran, 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(c->total, 1, memory_order_acq_rel) + 1 == c->target)
        weir_latch_set(c->done);
}

typedef struct submitter {
    weir_runtime *rt;
    counter_job *jobs;
    long n;
} submitter;

static void *submit_thread(void *arg)
{
    submitter *s = arg;
    for (long i = 0; i < s->n; i++)
        cr_assert_eq(weir_submit(s->rt, &s->jobs[i].job), 0);
    return NULL;
}

static void submit_from_threads(unsigned workers, unsigned threads, long per_thread)
{
    weir_runtime *rt = make_rt(workers);
    long n = threads * per_thread;
    counter_job *jobs = calloc((size_t)n, sizeof *jobs);
    _Atomic long *ran = calloc((size_t)n, sizeof *ran);
    _Atomic long total = 0;
    weir_latch done;
    weir_latch_init(&done);
    for (long i = 0; i < n; i++) {
        weir_job_init(&jobs[i].job, count_fn, NULL, 0);
        jobs[i].ran = &ran[i];
        jobs[i].total = &total;
        jobs[i].target = n;
        jobs[i].done = &done;
    }
    pthread_t th[8];
    submitter s[8];
    for (unsigned t = 0; t < threads; t++) {
        s[t] = (submitter){rt, jobs + t * per_thread, per_thread};
        pthread_create(&th[t], NULL, submit_thread, &s[t]);
    }
    for (unsigned t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    cr_assert(weir_latch_wait_for(&done, 30ull * 1000000000ull), "jobs lost: %ld of %ld ran",
              atomic_load(&total), n);
    for (long i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&ran[i]), 1, "job %ld ran %ld times", i, atomic_load(&ran[i]));
    weir_worker_stats st;
    weir_runtime_stats_total(rt, &st);
    cr_assert_geq(st.injected, 1);
    weir_runtime_destroy(rt);
    free(jobs);
    free(ran);
}

Test(submit, one_foreign_thread_every_job_runs_once) { submit_from_threads(2, 1, 100000); }
Test(submit, four_foreign_threads_every_job_runs_once) { submit_from_threads(2, 4, 50000); }
Test(submit, foreign_threads_with_one_worker) { submit_from_threads(1, 3, 20000); }
Test(submit, foreign_threads_with_four_workers) { submit_from_threads(4, 2, 20000); }

/* A job that fans out into children from a worker (local deque + stealing). */
typedef struct tree_job {
    weir_job job;
    int depth;
    _Atomic long *count;
    weir_latch *done;
    _Atomic long *pending;
} tree_job;

static void tree_fn(weir_worker *w, weir_job *j)
{
    tree_job *t = (tree_job *)(void *)j;
    atomic_fetch_add_explicit(t->count, 1, memory_order_relaxed);
    if (t->depth > 0) {
        atomic_fetch_add_explicit(t->pending, 2, memory_order_relaxed);
        for (int k = 0; k < 2; k++) {
            tree_job *c = malloc(sizeof *c);
            *c = *t;
            c->depth = t->depth - 1;
            weir_job_init(&c->job, tree_fn, NULL, 0);
            weir_worker_submit(w, &c->job);
        }
    }
    weir_latch *done = t->done;
    _Atomic long *pending = t->pending;
    free(t);
    if (atomic_fetch_sub_explicit(pending, 1, memory_order_acq_rel) == 1)
        weir_latch_set(done);
}

Test(submit, jobs_submitted_by_workers_all_run_once)
{
    for (unsigned workers = 1; workers <= 4; workers++) {
        weir_runtime *rt = make_rt(workers);
        _Atomic long count = 0, pending = 1;
        weir_latch done;
        weir_latch_init(&done);
        tree_job *root = malloc(sizeof *root);
        *root = (tree_job){.depth = 14, .count = &count, .done = &done, .pending = &pending};
        weir_job_init(&root->job, tree_fn, NULL, 0);
        cr_assert_eq(weir_submit(rt, &root->job), 0);
        cr_assert(weir_latch_wait_for(&done, 30ull * 1000000000ull));
        cr_assert_eq(atomic_load(&count), (1L << 15) - 1);
        weir_runtime_destroy(rt);
    }
}

/* "run C when A and B are done" */
typedef struct dep_ctx {
    _Atomic int a, b, c_saw_both;
    weir_latch done;
} dep_ctx;

static void fa(weir_worker *w, weir_job *j) { atomic_store(&((dep_ctx *)j->arg)->a, 1); }
static void fb(weir_worker *w, weir_job *j) { atomic_store(&((dep_ctx *)j->arg)->b, 1); }
static void fc(weir_worker *w, weir_job *j)
{
    dep_ctx *d = j->arg;
    atomic_store(&d->c_saw_both, atomic_load(&d->a) && atomic_load(&d->b));
    weir_latch_set(&d->done);
}

Test(submit, successor_runs_after_both_dependencies)
{
    weir_runtime *rt = make_rt(2);
    for (int round = 0; round < 2000; round++) {
        dep_ctx d = {0};
        weir_latch_init(&d.done);
        weir_job a, b, c;
        weir_job_init(&c, fc, &d, 2);
        weir_job_init(&a, fa, &d, 0);
        weir_job_then(&a, &c);
        weir_job_init(&b, fb, &d, 0);
        weir_job_then(&b, &c);
        cr_assert_eq(weir_submit(rt, &a), 0);
        cr_assert_eq(weir_submit(rt, &b), 0);
        cr_assert(weir_latch_wait_for(&d.done, 10ull * 1000000000ull));
        cr_assert(atomic_load(&d.c_saw_both), "C ran before A and B (round %d)", round);
    }
    weir_runtime_destroy(rt);
}

static void noop(weir_worker *w, weir_job *j) { weir_latch_set(j->arg); }

Test(submit, release_submits_exactly_at_zero_and_refuses_extra)
{
    weir_runtime *rt = make_rt(1);
    weir_latch l;
    weir_latch_init(&l);
    weir_job j;
    weir_job_init(&j, noop, &l, 3);
    cr_assert_eq(weir_job_release(rt, &j), 0);
    cr_assert_eq(weir_job_release(rt, &j), 0);
    cr_assert_not(weir_latch_is_set(&l));
    cr_assert_eq(weir_job_release(rt, &j), 1);
    weir_latch_wait(&l);
    cr_assert_eq(weir_job_release(rt, &j), -EINVAL);
    cr_assert_neq(weir_last_error()[0], '\0');
    weir_runtime_destroy(rt);
}

Test(submit, bad_arguments_are_errors_not_crashes)
{
    weir_runtime *rt = make_rt(1);
    weir_job j;
    weir_job_init(&j, NULL, NULL, 0);
    cr_assert_eq(weir_submit(NULL, &j), -EINVAL);
    cr_assert_eq(weir_submit(rt, NULL), -EINVAL);
    cr_assert_eq(weir_submit(rt, &j), -EINVAL); /* no function */
    cr_assert_eq(weir_job_release(NULL, &j), -EINVAL);
    weir_runtime_destroy(rt);
}

Test(submit, latch_times_out_when_never_set)
{
    weir_latch l;
    weir_latch_init(&l);
    cr_assert_not(weir_latch_wait_for(&l, 20 * 1000000ull));
    weir_latch_set(&l);
    cr_assert(weir_latch_wait_for(&l, 0));
}

WEIR_TASK_1(long, fibt, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fibt, n - 1);
    long b = WEIR_CALL(fibt, n - 2);
    return WEIR_SYNC(fibt) + b;
}

typedef struct fj_in_job {
    weir_job job;
    weir_runtime *rt;
    long result;
    weir_latch done;
} fj_in_job;

static void fj_job(weir_worker *w, weir_job *j)
{
    fj_in_job *c = (fj_in_job *)(void *)j;
    c->result = fibt_run(c->rt, 20); /* runs inline on this worker */
    weir_latch_set(&c->done);
}

Test(submit, fork_join_root_from_a_job_body_runs_inline)
{
    weir_runtime *rt = make_rt(2);
    fj_in_job c = {.rt = rt};
    weir_job_init(&c.job, fj_job, NULL, 0);
    weir_latch_init(&c.done);
    cr_assert_eq(weir_submit(rt, &c.job), 0);
    weir_latch_wait(&c.done);
    cr_assert_eq(c.result, 6765);
    weir_runtime_destroy(rt);
}

WEIR_TASK_1(long, nested_run, int, n)
{
    weir_runtime *rt = weir_worker_runtime(weir_w);
    weir_clear_error();
    long r = fibt_run(rt, n); /* misuse: from inside a fork-join task */
    return r;
}

Test(submit, fork_join_root_from_inside_a_task_is_refused_with_edeadlk)
{
    weir_runtime *rt = make_rt(1);
    cr_assert_eq(nested_run_run(rt, 10), 0); /* zeroed result, no hang */
    weir_runtime_destroy(rt);
}
