/*
 * eventloop — weir inside a program that already has its own event loop.
 *
 * The program owns a poll() loop (here over stdin; in a real program, its
 * sockets, timers and GUI). It hands work to a weir pipeline and takes the
 * results back without ever blocking in weir:
 *
 *   loop --(feed pipe, non-blocking writes)--> "feed" blocking source
 *        --> "square" map --> "reply" sink --(locked queue + eventfd)--> loop
 *
 * - In: the loop writes each number it reads as an int64 record into a pipe
 *   whose write end is non-blocking; when the pipe is full the loop keeps the
 *   rest and waits for POLLOUT, so a slow pipeline never stalls the loop.
 *   The blocking source "feed" runs on its own thread (weir gives blocking
 *   sources one) and reads the pipe with plain blocking reads; closing the
 *   write end is its end of stream (a cancel would reach it when its read
 *   returns; weir_term_on_interrupt() could shut the pipe to hurry it).
 * - Out: the sink, running on a worker, appends results to a queue under a
 *   mutex and bumps an eventfd (a write that never blocks); the loop polls
 *   the eventfd and drains the queue. The sink's finish callback marks the
 *   end.
 *
 * Usage: seq 1 1000 | eventloop        (prints "n^2 = x" lines, then totals)
 * Exit status 0, or 1 on an error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <weir.h>

typedef struct result {
    int64_t n, square;
} result;

/* ---- the way back: results queue + eventfd, shared with the sink ---------- */

typedef struct replies {
    pthread_mutex_t mu;
    result *v;
    size_t len, cap;
    bool finished; /* the sink saw its last input */
    int efd;       /* eventfd: "something to read" */
} replies;

static void wake(replies *r)
{
    uint64_t one = 1;
    /* Never blocks: the counter would have to reach 2^64 - 1 first. */
    ssize_t k = write(r->efd, &one, sizeof one);
    (void)k;
}

static int reply(void *state, const void *in)
{
    replies *r = state;
    pthread_mutex_lock(&r->mu);
    if (r->len == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        result *v = realloc(r->v, cap * sizeof *v);
        if (v == NULL) {
            pthread_mutex_unlock(&r->mu);
            return -ENOMEM;
        }
        r->v = v;
        r->cap = cap;
    }
    memcpy(&r->v[r->len++], in, sizeof(result));
    pthread_mutex_unlock(&r->mu);
    wake(r);
    return 0;
}

static int reply_done(void *state, weir_emit *e)
{
    (void)e;
    replies *r = state;
    pthread_mutex_lock(&r->mu);
    r->finished = true;
    pthread_mutex_unlock(&r->mu);
    wake(r);
    return 0;
}

/* ---- the way in: the blocking source reads the feed pipe ------------------ */

static int feed(void *state, weir_emit *e)
{
    int fd = *(int *)state;
    int64_t n;
    for (;;) {
        size_t got = 0;
        while (got < sizeof n) {
            ssize_t k = read(fd, (char *)&n + got, sizeof n - got);
            if (k == 0)
                return 0; /* the loop closed the pipe: end of stream */
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return -errno;
            got += (size_t)k;
        }
        int err = weir_emit_record(e, &n);
        if (err < 0)
            return err; /* stopped or cancelled */
    }
}

static void square(void *state, const void *in, void *out)
{
    (void)state;
    result r;
    memcpy(&r.n, in, sizeof r.n);
    r.square = r.n * r.n;
    memcpy(out, &r, sizeof r);
}

/* ---- the program's own loop ------------------------------------------------ */

int main(void)
{
    weir_runtime *rt;
    if (weir_runtime_create(NULL, &rt) < 0) {
        fprintf(stderr, "eventloop: %s\n", weir_last_error());
        return 1;
    }
    int feed_fd[2];
    replies rep = {.mu = PTHREAD_MUTEX_INITIALIZER};
    rep.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (rep.efd < 0 || pipe2(feed_fd, O_CLOEXEC) != 0 ||
        fcntl(feed_fd[1], F_SETFL, O_NONBLOCK) != 0) {
        perror("eventloop");
        return 1;
    }

    weir_term *t = weir_seq(
        3, (weir_term *const[]){
               weir_blocking_source("feed", sizeof(int64_t), feed, &feed_fd[0]),
               weir_map("square", sizeof(int64_t), sizeof(result), square, NULL),
               weir_term_on_finish(weir_sink("reply", sizeof(result), reply, &rep), reply_done),
           });
    weir_pipeline *p;
    if (weir_pipeline_create(rt, t, NULL, &p) < 0 || weir_pipeline_start(p) < 0) {
        fprintf(stderr, "eventloop: %s\n", weir_terms_last_error());
        return 1;
    }

    /* Bytes read from stdin not yet parsed, records not yet written to the
     * feed pipe. */
    char line[256];
    size_t line_len = 0;
    char *out = NULL;
    size_t out_len = 0, out_cap = 0, out_off = 0;
    bool in_open = true, feed_open = true, finished = false;
    uint64_t count = 0, sum = 0;
    int rc = 0;

    while (!finished) {
        struct pollfd fds[3] = {
            {.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = (feed_open && out_off < out_len) ? feed_fd[1] : -1, .events = POLLOUT},
            {.fd = rep.efd, .events = POLLIN},
        };
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("eventloop: poll");
            rc = 1;
            break;
        }
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            char buf[4096];
            ssize_t k = read(STDIN_FILENO, buf, sizeof buf);
            if (k <= 0)
                in_open = false;
            for (ssize_t i = 0; i < k; i++) {
                if (buf[i] != '\n' && line_len + 1 < sizeof line) {
                    line[line_len++] = buf[i];
                    continue;
                }
                line[line_len] = '\0';
                line_len = 0;
                char *end;
                int64_t n = strtoll(line, &end, 10);
                if (end == line)
                    continue; /* not a number: skip the line */
                if (out_len + sizeof n > out_cap) {
                    out_cap = out_cap ? 2 * out_cap : 4096;
                    out = realloc(out, out_cap);
                    if (out == NULL) {
                        perror("eventloop");
                        return 1;
                    }
                }
                memcpy(out + out_len, &n, sizeof n);
                out_len += sizeof n;
            }
        }
        /* Write what the pipe takes now; the rest waits for POLLOUT. */
        while (feed_open && out_off < out_len) {
            ssize_t k = write(feed_fd[1], out + out_off, out_len - out_off);
            if (k < 0)
                break; /* EAGAIN: full */
            out_off += (size_t)k;
        }
        if (out_off == out_len)
            out_off = out_len = 0;
        if (!in_open && feed_open && out_len == 0) {
            close(feed_fd[1]); /* the source's end of stream */
            feed_open = false;
        }
        if (fds[2].revents & POLLIN) {
            uint64_t ticks;
            ssize_t k = read(rep.efd, &ticks, sizeof ticks);
            (void)k;
            pthread_mutex_lock(&rep.mu);
            result *v = rep.v;
            size_t len = rep.len;
            rep.v = NULL;
            rep.len = rep.cap = 0;
            finished = rep.finished;
            pthread_mutex_unlock(&rep.mu);
            for (size_t i = 0; i < len; i++) {
                printf("%" PRId64 "^2 = %" PRId64 "\n", v[i].n, v[i].square);
                count++;
                sum += (uint64_t)v[i].square;
            }
            free(v);
        }
    }
    /* Everything arrived, so join returns at once. */
    int err = weir_pipeline_join(p);
    if (err < 0) {
        fprintf(stderr, "eventloop: %s\n", weir_terms_last_error());
        rc = 1;
    }
    printf("%" PRIu64 " results, sum of squares %" PRIu64 "\n", count, sum);
    weir_pipeline_destroy(p);
    weir_runtime_destroy(rt);
    close(feed_fd[0]);
    if (feed_open)
        close(feed_fd[1]);
    close(rep.efd);
    free(out);
    free(rep.v);
    return rc;
}
