/* Timers: nothing fires early, every armed timer fires exactly once unless
 * cancelled, firing follows deadline order, cancel and fire exclude each
 * other, a job re-arms its own timer, a sleeping runtime wakes for an earlier
 * deadline, destroy drops (and reports) what is still armed. The only timed
 * assertions are "not early" and coarse upper bounds in seconds. */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "scheduler.h"

#define MS UINT64_C(1000000)
#define S  UINT64_C(1000000000)

static weir_runtime *make_rt(unsigned workers)
{
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = workers;
    weir_runtime *rt = NULL;
    cr_assert_eq(weir_runtime_create(&cfg, &rt), 0, "%s", weir_last_error());
    return rt;
}

static bool all_parked(weir_runtime *rt, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (atomic_load(&rt->waiters) == rt->nworkers)
            return true;
        usleep(1000);
    }
    return false;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One timer and its job, with what the job saw when it ran. */
typedef struct tjob tjob;
typedef struct tctx {
    weir_runtime *rt;
    tjob *all;
    _Atomic long left; /* jobs still to run before `done` is set */
    weir_latch done;
    _Atomic long early, order_violations, runs;
} tctx;

struct tjob {
    weir_job job;
    weir_timer timer;
    tctx *c;
    long pred; /* the timer just before this one in (deadline, arm) order, or -1 */
    _Atomic int runs;
    uint64_t ran_at;
};

static void tjob_fn(weir_worker *w, weir_job *j)
{
    (void)w;
    tjob *t = (tjob *)(void *)j;
    tctx *c = t->c;
    uint64_t now = weir_now_ns();
    t->ran_at = now;
    if (now < t->timer.deadline_ns)
        atomic_fetch_add(&c->early, 1);
    /* the order promise: every timer due before ours has fired */
    if (t->pred >= 0 && weir_timer_status(&c->all[t->pred].timer) != WEIR_TIMER_FIRED)
        atomic_fetch_add(&c->order_violations, 1);
    atomic_fetch_add(&t->runs, 1);
    atomic_fetch_add(&c->runs, 1);
    if (atomic_fetch_sub(&c->left, 1) == 1)
        weir_latch_set(&c->done);
}

static tctx *ctx_new(weir_runtime *rt, long n)
{
    tctx *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->rt = rt;
    c->all = calloc((size_t)n, sizeof *c->all);
    cr_assert_not_null(c->all);
    atomic_init(&c->left, n);
    weir_latch_init(&c->done);
    for (long i = 0; i < n; i++) {
        weir_job_init(&c->all[i].job, tjob_fn, NULL, 0);
        weir_timer_init(&c->all[i].timer);
        c->all[i].c = c;
        c->all[i].pred = -1;
    }
    return c;
}

static void ctx_free(tctx *c)
{
    free(c->all);
    free(c);
}

static const uint64_t *sort_deadlines;
static int by_deadline_then_index(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    if (sort_deadlines[x] != sort_deadlines[y])
        return sort_deadlines[x] < sort_deadlines[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Arm n timers with random deadlines in [base, base + span) quantised to
 * 100 us (so that ties occur), in index order, from the calling thread; set
 * each one's predecessor in (deadline, index) order. */
static void arm_random(tctx *c, long n, uint64_t base, uint64_t span, uint64_t seed)
{
    uint64_t *d = malloc((size_t)n * sizeof *d);
    long *ord = malloc((size_t)n * sizeof *ord);
    cr_assert(d && ord);
    uint64_t s = seed | 1;
    for (long i = 0; i < n; i++) {
        d[i] = base + (rnd(&s) % span) / (100 * 1000) * (100 * 1000);
        ord[i] = i;
    }
    sort_deadlines = d;
    qsort(ord, (size_t)n, sizeof *ord, by_deadline_then_index);
    for (long k = 1; k < n; k++)
        c->all[ord[k]].pred = ord[k - 1];
    for (long i = 0; i < n; i++)
        cr_assert_eq(weir_submit_at(c->rt, &c->all[i].job, d[i], &c->all[i].timer), 0, "%s",
                     weir_last_error());
    free(ord);
    free(d);
}

static void expect_each_ran_once(tctx *c, long n)
{
    for (long i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&c->all[i].runs), 1, "timer %ld ran %d times", i,
                     atomic_load(&c->all[i].runs));
        cr_assert_eq(weir_timer_status(&c->all[i].timer), WEIR_TIMER_FIRED);
    }
}

Test(timers, fire_in_deadline_order_and_never_early)
{
    const long n = 5000;
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, n);
    /* the first deadline is 300 ms away, so that every timer is armed before
     * any fires: the order check compares with the whole set */
    uint64_t base = weir_now_ns() + 300 * MS;
    arm_random(c, n, base, 200 * MS, 42);
    cr_assert_lt(weir_now_ns(), base, "arming 5000 timers took more than 300 ms");
    cr_assert(weir_latch_wait_for(&c->done, 30 * S), "only %ld of %ld fired in 30 s",
              atomic_load(&c->runs), n);
    cr_expect_eq(atomic_load(&c->early), 0, "%ld jobs ran before their deadline",
                 atomic_load(&c->early));
    cr_expect_eq(atomic_load(&c->order_violations), 0,
                 "%ld jobs ran while an earlier timer had not fired",
                 atomic_load(&c->order_violations));
    weir_runtime_destroy(rt);
    expect_each_ran_once(c, n);
    ctx_free(c);
}

Test(timers, fire_in_deadline_order_on_one_worker)
{
    const long n = 3000;
    weir_runtime *rt = make_rt(1);
    tctx *c = ctx_new(rt, n);
    uint64_t base = weir_now_ns() + 300 * MS;
    arm_random(c, n, base, 50 * MS, 7);
    cr_assert_lt(weir_now_ns(), base, "arming took more than 300 ms");
    cr_assert(weir_latch_wait_for(&c->done, 30 * S));
    cr_expect_eq(atomic_load(&c->early), 0);
    cr_expect_eq(atomic_load(&c->order_violations), 0);
    weir_runtime_destroy(rt);
    expect_each_ran_once(c, n);
    ctx_free(c);
}

/* ---- many timers, armed from threads that are not workers ---------------- */

typedef struct armer {
    tctx *c;
    long from, to;
    uint64_t seed;
    int errors;
} armer;

static void *arm_range(void *p)
{
    armer *a = p;
    uint64_t s = a->seed | 1, now = weir_now_ns();
    for (long i = a->from; i < a->to; i++) {
        tjob *t = &a->c->all[i];
        if (weir_submit_at(a->c->rt, &t->job, now + rnd(&s) % (300 * MS), &t->timer) != 0)
            a->errors++;
    }
    return NULL;
}

Test(timers, hundred_thousand_timers_from_two_threads_fire_exactly_once)
{
    const long n = 100000;
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, n);
    armer a[2] = {{c, 0, n / 2, 1, 0}, {c, n / 2, n, 2, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, arm_range, &a[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(a[0].errors + a[1].errors, 0, "arms failed: %s", weir_last_error());
    cr_assert(weir_latch_wait_for(&c->done, 60 * S), "only %ld of %ld fired in 60 s",
              atomic_load(&c->runs), n);
    cr_expect_eq(atomic_load(&c->early), 0);
    weir_runtime_destroy(rt);
    expect_each_ran_once(c, n);
    ctx_free(c);
}

/* ---- cancel --------------------------------------------------------------- */

Test(timers, cancel_before_the_deadline_keeps_the_job_from_running)
{
    const long n = 1000;
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, n);
    for (long i = 0; i < n; i++)
        cr_assert_eq(weir_submit_after(rt, &c->all[i].job, 60 * S + (uint64_t)i, &c->all[i].timer),
                     0);
    /* cancel in an order unrelated to the heap's: odd ones first */
    for (long i = 1; i < n; i += 2)
        cr_assert_eq(weir_timer_cancel(rt, &c->all[i].timer), 0, "%s", weir_last_error());
    for (long i = 0; i < n; i += 2)
        cr_assert_eq(weir_timer_cancel(rt, &c->all[i].timer), 0, "%s", weir_last_error());
    for (long i = 0; i < n; i++) {
        cr_assert_eq(weir_timer_status(&c->all[i].timer), WEIR_TIMER_CANCELLED);
        cr_assert_eq(weir_timer_cancel(rt, &c->all[i].timer), -ENOENT, "a second cancel");
    }
    /* a cancelled timer can be armed again, and fires */
    atomic_store(&c->left, 1);
    cr_assert_eq(weir_submit_after(rt, &c->all[0].job, 1 * MS, &c->all[0].timer), 0);
    cr_assert(weir_latch_wait_for(&c->done, 10 * S));
    cr_assert_eq(weir_timer_cancel(rt, &c->all[0].timer), -EALREADY, "cancel after firing");
    weir_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&c->runs), 1, "cancelled jobs ran");
    ctx_free(c);
}

typedef struct canceller {
    tctx *c;
    long n;
    long cancelled, already;
    int *outcome; /* per timer: 1 cancelled, 2 fired */
} canceller;

static void *cancel_all(void *p)
{
    canceller *k = p;
    /* every timer once, in an order unrelated to the deadlines (7919 is a
     * prime that does not divide n), racing with their firing */
    for (long step = 0; step < k->n; step++) {
        long i = (long)((uint64_t)step * 7919u % (uint64_t)k->n);
        int r = weir_timer_cancel(k->c->rt, &k->c->all[i].timer);
        if (r == 0) {
            k->cancelled++;
            k->outcome[i] = 1;
        } else if (r == -EALREADY) {
            k->already++;
            k->outcome[i] = 2;
        } else {
            k->outcome[i] = -1;
        }
    }
    return NULL;
}

Test(timers, cancel_from_another_thread_races_firing_exactly_one_outcome)
{
    const long n = 20000;
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, n);
    atomic_store(&c->left, LONG_MAX); /* the latch is not used here */
    uint64_t s = 5, now = weir_now_ns();
    for (long i = 0; i < n; i++)
        cr_assert_eq(
            weir_submit_at(rt, &c->all[i].job, now + rnd(&s) % (20 * MS), &c->all[i].timer), 0);
    canceller k = {c, n, 0, 0, calloc((size_t)n, sizeof(int))};
    pthread_t th;
    pthread_create(&th, NULL, cancel_all, &k);
    pthread_join(th, NULL);
    cr_assert_eq(k.cancelled + k.already, n, "every cancel is 0 or -EALREADY");
    /* wait (coarsely) for the fired ones, then stop the workers: after
     * destroy every run is final */
    for (int i = 0; i < 10000 && atomic_load(&c->runs) < n - k.cancelled; i++)
        usleep(1000);
    weir_runtime_destroy(rt);
    long fired = 0;
    for (long i = 0; i < n; i++) {
        int runs = atomic_load(&c->all[i].runs);
        if (k.outcome[i] == 1) {
            cr_assert_eq(runs, 0, "timer %ld was cancelled and ran", i);
            cr_assert_eq(weir_timer_status(&c->all[i].timer), WEIR_TIMER_CANCELLED);
        } else {
            cr_assert_eq(runs, 1, "timer %ld fired and ran %d times", i, runs);
            fired++;
        }
    }
    cr_assert_eq(fired + k.cancelled, n);
    cr_expect_eq(atomic_load(&c->early), 0);
    cr_log_info("cancelled %ld, fired %ld", k.cancelled, fired);
    free(k.outcome);
    ctx_free(c);
}

/* ---- periodic: a job re-arms its own timer -------------------------------- */

typedef struct periodic {
    weir_job job;
    weir_timer timer;
    weir_runtime *rt;
    int count, limit, rearm_errors, early;
    uint64_t last_deadline;
    int out_of_order;
    weir_latch done;
} periodic;

static void periodic_fn(weir_worker *w, weir_job *j)
{
    (void)w;
    periodic *p = (periodic *)(void *)j;
    uint64_t now = weir_now_ns();
    if (now < p->timer.deadline_ns)
        p->early++;
    if (p->timer.deadline_ns < p->last_deadline)
        p->out_of_order++;
    p->last_deadline = p->timer.deadline_ns;
    if (weir_timer_status(&p->timer) != WEIR_TIMER_FIRED)
        p->rearm_errors++;
    if (++p->count == p->limit) {
        weir_latch_set(&p->done);
        return;
    }
    if (weir_submit_after(p->rt, &p->job, 1 * MS, &p->timer) != 0)
        p->rearm_errors++;
}

Test(timers, a_job_rearms_its_own_timer)
{
    weir_runtime *rt = make_rt(2);
    periodic p = {.rt = rt, .limit = 50};
    weir_job_init(&p.job, periodic_fn, NULL, 0);
    weir_timer_init(&p.timer);
    weir_latch_init(&p.done);
    cr_assert_eq(weir_submit_after(rt, &p.job, 1 * MS, &p.timer), 0);
    cr_assert(weir_latch_wait_for(&p.done, 20 * S), "%d of 50 periods in 20 s", p.count);
    weir_runtime_destroy(rt);
    cr_expect_eq(p.count, 50);
    cr_expect_eq(p.rearm_errors, 0);
    cr_expect_eq(p.early, 0);
    cr_expect_eq(p.out_of_order, 0);
}

/* ---- parking: a sleeping runtime wakes for an earlier deadline ------------ */

Test(timers, sleeping_runtime_wakes_for_an_earlier_deadline)
{
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, 64);
    /* a far-off timer: the timekeeper sleeps until it */
    weir_job far_job;
    weir_timer far;
    weir_job_init(&far_job, tjob_fn, NULL, 0);
    weir_timer_init(&far);
    cr_assert_eq(weir_submit_after(rt, &far_job, 3600 * S, &far), 0);
    for (int r = 0; r < 30; r++) {
        cr_assert(all_parked(rt, 5000), "round %d: workers did not park", r);
        atomic_store(&c->left, 2);
        weir_latch_init(&c->done);
        /* two arms, the second earlier than the first: both move the
         * earliest deadline while the runtime sleeps */
        tjob *a = &c->all[2 * r], *b = &c->all[2 * r + 1];
        cr_assert_eq(weir_submit_after(rt, &a->job, 2 * MS, &a->timer), 0);
        cr_assert_eq(weir_submit_after(rt, &b->job, 0, &b->timer), 0);
        cr_assert(weir_latch_wait_for(&c->done, 10 * S), "round %d: a wake-up was lost", r);
    }
    cr_expect_eq(atomic_load(&c->early), 0);
    cr_assert_eq(weir_timer_cancel(rt, &far), 0);
    weir_runtime_destroy(rt);
    ctx_free(c);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

Test(timers, idle_runtime_with_far_off_timers_sleeps)
{
    const long n = 10000;
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, n);
    for (long i = 0; i < n; i++)
        cr_assert_eq(
            weir_submit_after(rt, &c->all[i].job, 3600 * S + (uint64_t)i * MS, &c->all[i].timer),
            0);
    cr_assert(all_parked(rt, 5000), "workers did not park with timers pending");
    double c0 = cpu_seconds();
    usleep(500 * 1000);
    double used = cpu_seconds() - c0;
    /* behavioural, not a target: a worker polling the clock would burn 0.5 s */
    cr_assert_lt(used, 0.2, "idle runtime with timers used %.3f s of CPU in 0.5 s", used);
    for (long i = 0; i < n; i++)
        cr_assert_eq(weir_timer_cancel(rt, &c->all[i].timer), 0);
    weir_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&c->runs), 0);
    ctx_free(c);
}

/* ---- destroy --------------------------------------------------------------- */

typedef struct capture {
    int warnings;
    char text[1024];
} capture;

static void capture_log(weir_log_level level, const char *msg, void *ctx)
{
    capture *cap = ctx;
    if (level == WEIR_LOG_WARNING)
        cap->warnings++;
    size_t len = strlen(cap->text);
    snprintf(cap->text + len, sizeof cap->text - len, "%s\n", msg);
}

Test(timers, destroy_drops_armed_timers_and_reports_them)
{
    const long n = 100;
    capture cap = {0};
    weir_set_log(capture_log, &cap);
    weir_runtime *rt = make_rt(2);
    tctx *c = ctx_new(rt, n + 1);
    for (long i = 0; i < n; i++)
        cr_assert_eq(weir_submit_after(rt, &c->all[i].job, 3600 * S, &c->all[i].timer), 0);
    /* one that fires before destroy: not dropped */
    atomic_store(&c->left, 1);
    cr_assert_eq(weir_submit_after(rt, &c->all[n].job, 0, &c->all[n].timer), 0);
    cr_assert(weir_latch_wait_for(&c->done, 10 * S));
    cr_assert_eq(weir_runtime_attach(rt), 0); /* keep the handle */
    weir_runtime_destroy(rt);
    weir_set_log(NULL, NULL);
    for (long i = 0; i < n; i++)
        cr_assert_eq(weir_timer_status(&c->all[i].timer), WEIR_TIMER_DROPPED, "timer %ld", i);
    cr_assert_eq(weir_timer_status(&c->all[n].timer), WEIR_TIMER_FIRED);
    cr_assert_eq(atomic_load(&c->runs), 1, "dropped timers ran");
    cr_assert_eq(cap.warnings, 1, "%s", cap.text);
    cr_assert(strstr(cap.text, "100 armed timers dropped") != NULL, "%s", cap.text);
    /* on the destroyed handle: arms refused, cancels say why */
    cr_assert_eq(weir_submit_after(rt, &c->all[0].job, 0, &c->all[0].timer), -ESHUTDOWN);
    cr_assert_eq(weir_timer_cancel(rt, &c->all[0].timer), -ESHUTDOWN);
    cr_assert_eq(weir_timer_cancel(rt, &c->all[n].timer), -EALREADY);
    weir_runtime_detach(rt);
    ctx_free(c);
}

typedef struct during_drain {
    weir_job job, other;
    weir_timer timer;
    weir_runtime *rt;
    weir_latch started;
    int rc;
} during_drain;

static void noop_fn(weir_worker *w, weir_job *j)
{
    (void)w;
    (void)j;
}

static void arm_while_stopping(weir_worker *w, weir_job *j)
{
    (void)w;
    during_drain *d = (during_drain *)(void *)j;
    weir_latch_set(&d->started);
    while (!weir_runtime_stopping(d->rt))
        usleep(100);
    d->rc = weir_submit_after(d->rt, &d->other, 0, &d->timer);
}

Test(timers, arm_refused_once_destroy_began_even_from_a_worker)
{
    weir_runtime *rt = make_rt(2);
    during_drain d = {.rt = rt, .rc = 1};
    weir_job_init(&d.job, arm_while_stopping, NULL, 0);
    weir_job_init(&d.other, noop_fn, NULL, 0);
    weir_timer_init(&d.timer);
    weir_latch_init(&d.started);
    cr_assert_eq(weir_submit(rt, &d.job), 0);
    weir_latch_wait(&d.started);
    weir_runtime_destroy(rt); /* the drain runs the job to its end */
    cr_assert_eq(d.rc, -ESHUTDOWN);
    cr_assert_eq(weir_timer_status(&d.timer), WEIR_TIMER_IDLE);
}

/* ---- bad input ------------------------------------------------------------- */

Test(timers, bad_arguments_are_refused)
{
    weir_runtime *rt = make_rt(1);
    weir_job job, nofn, waiting;
    weir_timer t;
    memset(&t, 0, sizeof t);
    cr_assert_eq(weir_timer_status(&t), WEIR_TIMER_IDLE, "a zeroed timer is idle");
    weir_job_init(&job, noop_fn, NULL, 0);
    weir_job_init(&nofn, NULL, NULL, 0);
    weir_job_init(&waiting, noop_fn, NULL, 1);
    cr_assert_eq(weir_submit_at(NULL, &job, 0, &t), -EINVAL);
    cr_assert_eq(weir_submit_at(rt, NULL, 0, &t), -EINVAL);
    cr_assert_eq(weir_submit_at(rt, &job, 0, NULL), -EINVAL);
    cr_assert_eq(weir_submit_after(rt, &nofn, 0, &t), -EINVAL);
    cr_assert_eq(weir_submit_after(rt, &waiting, 0, &t), -EINVAL);
    cr_assert_eq(weir_timer_cancel(NULL, &t), -EINVAL);
    cr_assert_eq(weir_timer_cancel(rt, NULL), -EINVAL);
    cr_assert_eq(weir_timer_cancel(rt, &t), -ENOENT, "never armed");
    cr_assert_eq(weir_submit_after(rt, &job, UINT64_MAX, &t), 0, "saturating delay");
    cr_assert_eq(t.deadline_ns, UINT64_MAX);
    cr_assert_eq(weir_submit_after(rt, &job, 0, &t), -EBUSY, "armed twice");
    cr_assert(strstr(weir_last_error(), "armed already") != NULL, "%s", weir_last_error());
    cr_assert_eq(weir_timer_cancel(rt, &t), 0);
    weir_runtime_destroy(rt);
}

Test(timers, now_is_clock_monotonic)
{
    struct timespec ts;
    uint64_t a = weir_now_ns();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t b = weir_now_ns();
    uint64_t m = (uint64_t)ts.tv_sec * S + (uint64_t)ts.tv_nsec;
    cr_assert(a <= m && m <= b, "%lu <= %lu <= %lu", (unsigned long)a, (unsigned long)m,
              (unsigned long)b);
}

Test(timers, arm_reports_enomem_when_the_heap_cannot_grow)
{
    weir_runtime *rt = make_rt(1);
    weir_job job;
    weir_timer t[65];
    weir_job_init(&job, noop_fn, NULL, 0);
    weir_timer_init(&t[0]);
    /* the heap array starts at 64 entries: the first arm allocates it */
    weir__alloc_fail_after(1);
    cr_assert_eq(weir_submit_after(rt, &job, 3600 * S, &t[0]), -ENOMEM);
    cr_assert_eq(weir_timer_status(&t[0]), WEIR_TIMER_IDLE, "nothing armed");
    weir__alloc_fail_after(0);
    for (int i = 0; i < 64; i++) {
        weir_timer_init(&t[i]);
        cr_assert_eq(weir_submit_after(rt, &job, 3600 * S, &t[i]), 0);
    }
    /* the 65th doubles it */
    weir_timer_init(&t[64]);
    weir__alloc_fail_after(1);
    cr_assert_eq(weir_submit_after(rt, &job, 1, &t[64]), -ENOMEM);
    weir__alloc_fail_after(0);
    cr_assert_eq(weir_timer_status(&t[64]), WEIR_TIMER_IDLE);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(weir_timer_cancel(rt, &t[i]), 0);
    weir_runtime_destroy(rt);
}

typedef struct drop_probe {
    weir_job job;
    weir_timer timer;
    int runs;
    bool worker_was_null;
} drop_probe;

static void drop_probe_fn(weir_worker *w, weir_job *j)
{
    drop_probe *p = (drop_probe *)(void *)j;
    p->runs++;
    p->worker_was_null = w == NULL;
}

Test(timers, only_run_on_drop_timers_run_at_destroy)
{
    weir_set_log(capture_log, &(capture){0});
    weir_runtime *rt = make_rt(2);
    drop_probe plain, asked;
    /* garbage under the init: weir_timer_init must clear every field */
    memset(&plain, 0xff, sizeof plain);
    memset(&asked, 0xff, sizeof asked);
    weir_job_init(&plain.job, drop_probe_fn, NULL, 0);
    weir_job_init(&asked.job, drop_probe_fn, NULL, 0);
    weir_timer_init(&plain.timer);
    weir_timer_init(&asked.timer);
    plain.runs = asked.runs = 0;
    weir_timer_run_on_drop(&asked.timer);
    cr_assert_eq(weir_submit_after(rt, &plain.job, 3600 * S, &plain.timer), 0);
    cr_assert_eq(weir_submit_after(rt, &asked.job, 3600 * S, &asked.timer), 0);
    weir_runtime_destroy(rt);
    weir_set_log(NULL, NULL);
    cr_assert_eq(plain.runs, 0, "a dropped timer's job ran");
    cr_assert_eq(asked.runs, 1);
    cr_assert(asked.worker_was_null);
    cr_assert_eq(weir_timer_status(&plain.timer), WEIR_TIMER_DROPPED);
    cr_assert_eq(weir_timer_status(&asked.timer), WEIR_TIMER_DROPPED);
}
