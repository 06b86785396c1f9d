/*
 * weir terms — Redis Streams: a consumer-group source and an XADD sink
 * (include/weir/redis.h), written against the public API only.
 *
 * One connection per term, through hiredis's synchronous context, but the
 * waits are ours: a command is appended to the context's output buffer,
 * written with SIGPIPE blocked on this thread (see rd_send), and its reply is
 * awaited in poll(2) on the socket and, for the source, on a self-pipe that
 * the source's interrupt function writes to when the pipeline stops or is
 * cancelled. So a source blocked in XREADGROUP ... BLOCK sees a stop at once,
 * and every wait has a deadline (the reply timeout beyond the BLOCK time): a
 * server that stops answering is a lost connection, never a hang. The
 * self-pipe is never drained: once the pipeline stops, every later
 * interruptible wait returns at once, which is what the source wants (the
 * last acknowledgements after a stop use uninterruptible, bounded waits).
 *
 * The source and checkpoints. The source's thread is the only one that
 * touches its connection and its table of entry ids. The checkpoint function
 * runs on whichever thread completed a barrier: it stores the barrier's id in
 * an atomic (release) that the source thread reads (acquire) between reads;
 * the source then pops every barrier mark up to that id and acknowledges the
 * ids emitted before the last one popped, in XACKs of up to RD_ACK_CHUNK ids.
 * Ids are kept as two integers (ms, seq) in a ring of absolute positions:
 * `tracked` ids were emitted, the first `acked` of them acknowledged, and
 * `target` (>= acked) of them are covered by completed barriers.
 *
 * Without checkpoints the source reads with NOACK (at most once) and
 * acknowledges right after emitting the entries it re-read or claimed (they
 * were pending already and NOACK does not apply to them); with
 * ack_after_emit it reads without NOACK and acknowledges every batch so.
 *
 * The sink. Every record becomes an XADD, formatted here (RESP) into a buffer
 * of commands whose replies have not been read; the commands of a call are
 * written at its end, replies are read as they come and waited for when
 * `pipeline` are outstanding, at a barrier and at the end. After a lost
 * connection the unconfirmed commands are sent again on the new one (at
 * least once). A sink's callbacks get no weir_emit (weir_emit_fail needs
 * one), so the sink's errors are errno values only, each used for one cause
 * (listed at weir_redis_sink() in the header).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "weir.h"
#include "weir/redis.h"

#define RD_DEFAULT_URL "redis://127.0.0.1:6379"
#define RD_SLICE_MS    100u  /* longest XREADGROUP BLOCK: a stop is seen within it */
#define RD_ACK_CHUNK   4096u /* ids per XACK */
#define RD_BACKOFF_MIN 50u   /* ms, doubling ... */
#define RD_BACKOFF_MAX 1000u /* ... up to this */
#define RD_MARKS       (WEIR_CHECKPOINTS_IN_FLIGHT + 1u)
#define RD_WHY         192

static uint64_t rd_now_ms(void)
{
    return weir_now_ns() / 1000000u;
}

/* ------------------------------------------------------------ addresses */

typedef struct rd_addr {
    bool unix_socket;
    char *host; /* host name, or the socket's path */
    int port;
    int db;
    char *user;     /* NULL: AUTH password */
    char *password; /* from the URL, or NULL */
    char *text;     /* "host:port" or "unix:/path", for messages */
} rd_addr;

static void rd_addr_free(rd_addr *a)
{
    weir_free(a->host);
    weir_free(a->user);
    if (a->password)
        memset(a->password, 0, strlen(a->password));
    weir_free(a->password);
    weir_free(a->text);
    memset(a, 0, sizeof *a);
}

static char *rd_strndup(const char *s, size_t n)
{
    char *d = weir_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Parse `url`. @return 0, -EINVAL (weir_set_error names what), -ENOMEM. */
static int rd_parse_url(const char *who, const char *url, rd_addr *a)
{
    memset(a, 0, sizeof *a);
    a->port = 6379;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2; /* unix:///path */
        if (!*path)
            return weir_set_error(-EINVAL, "%s: url '%s': no socket path", who, url);
        a->unix_socket = true;
        a->host = weir_strdup(path);
        size_t tl = strlen(path) + 6;
        a->text = weir_malloc(tl);
        if (!a->host || !a->text) {
            rd_addr_free(a);
            return weir_set_error(-ENOMEM, "%s: out of memory", who);
        }
        snprintf(a->text, tl, "unix:%s", path);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return weir_set_error(-EINVAL,
                              "%s: url '%s': expected redis://[:password@]host[:port][/db] or "
                              "unix:/path",
                              who, url);
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return weir_set_error(-EINVAL, "%s: url: expected ':password@' before the host", who);
        if (colon > p && !(a->user = rd_strndup(p, (size_t)(colon - p))))
            goto nomem;
        if (!(a->password = rd_strndup(colon + 1, (size_t)(at - colon - 1))))
            goto nomem;
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') { /* [ipv6] */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            rd_addr_free(a);
            return weir_set_error(-EINVAL, "%s: url: unterminated '[' in the host", who);
        }
        if (!(a->host = rd_strndup(p + 1, (size_t)(rb - p - 1))))
            goto nomem;
        hend = rb + 1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (!hend)
            hend = end;
        if (!(a->host = rd_strndup(p, (size_t)(hend - p))))
            goto nomem;
    }
    if (!a->host[0]) {
        rd_addr_free(a);
        return weir_set_error(-EINVAL, "%s: url: no host", who);
    }
    if (hend < end) {
        if (*hend != ':' || hend + 1 == end) {
            rd_addr_free(a);
            return weir_set_error(-EINVAL, "%s: url: expected ':port' after the host", who);
        }
        long port = 0;
        for (const char *q = hend + 1; q < end; q++) {
            if (*q < '0' || *q > '9' || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535) {
            rd_addr_free(a);
            return weir_set_error(-EINVAL, "%s: url: bad port '%.*s' (1..65535)", who,
                                  (int)(end - hend - 1), hend + 1);
        }
        a->port = (int)port;
    }
    if (slash && slash[1]) {
        char *e = NULL;
        long db = strtol(slash + 1, &e, 10);
        if (*e || db < 0 || db > 1000000 || slash[1] < '0' || slash[1] > '9') {
            rd_addr_free(a);
            return weir_set_error(-EINVAL, "%s: url: bad database number '%s'", who, slash + 1);
        }
        a->db = (int)db;
    }
    size_t tl = strlen(a->host) + 16;
    if (!(a->text = weir_malloc(tl)))
        goto nomem;
    snprintf(a->text, tl, strchr(a->host, ':') ? "[%s]:%d" : "%s:%d", a->host, a->port);
    return 0;
nomem:
    rd_addr_free(a);
    return weir_set_error(-ENOMEM, "%s: out of memory", who);
}

/* ----------------------------------------------------------- connection */

typedef struct rd_conn {
    redisContext *ctx;
    unsigned outstanding; /* commands written whose replies were not read */
    char why[RD_WHY];     /* the last failure, for messages */
} rd_conn;

static void rd_close(rd_conn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
    c->outstanding = 0;
}

static struct timeval rd_tv(uint64_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)(ms % 1000u) * 1000;
    return tv;
}

/*
 * Write the context's output buffer. A write to a connection the server
 * closed raises SIGPIPE (hiredis writes with write(2)); it is blocked on this
 * thread for the write, and the one a failed write left pending is consumed
 * with sigtimedwait() before the mask is restored (libpq's
 * pq_block_sigpipe / pq_reset_sigpipe), so the process neither dies nor has
 * its dispositions changed. A SIGPIPE that was pending before is left alone.
 */
static int rd_send(rd_conn *c)
{
    sigset_t pipe_set, old, pend;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pend);
    bool was_pending = sigismember(&pend, SIGPIPE);
    int done = 0, r = 0;
    do {
        if (redisBufferWrite(c->ctx, &done) != REDIS_OK) {
            snprintf(c->why, sizeof c->why, "%s", c->ctx->errstr);
            r = -EIO;
            break;
        }
    } while (!done);
    if (r < 0 && !was_pending) {
        sigpending(&pend);
        if (sigismember(&pend, SIGPIPE)) {
            const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

/*
 * Wait for the next reply, for up to `timeout_ms`, and for `wake_fd`
 * (-1: none). @return 0 with *out; -ECANCELED (woken: the reply is still
 * outstanding); -ETIMEDOUT, -EIO, -EPROTO (c->why says what: the connection
 * is unusable).
 */
static int rd_recv(rd_conn *c, int wake_fd, uint64_t timeout_ms, redisReply **out)
{
    uint64_t deadline = rd_now_ms() + timeout_ms;
    for (;;) {
        void *rep = NULL;
        if (redisGetReplyFromReader(c->ctx, &rep) != REDIS_OK) {
            snprintf(c->why, sizeof c->why, "%s", c->ctx->errstr);
            return -EPROTO;
        }
        if (rep) {
            c->outstanding--;
            *out = rep;
            return 0;
        }
        uint64_t now = rd_now_ms();
        if (now >= deadline) {
            snprintf(c->why, sizeof c->why, "no reply within %llu ms",
                     (unsigned long long)timeout_ms);
            return -ETIMEDOUT;
        }
        uint64_t left = deadline - now;
        struct pollfd pf[2] = {{c->ctx->fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
        int k = poll(pf, wake_fd >= 0 ? 2 : 1, left > INT_MAX ? INT_MAX : (int)left);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            snprintf(c->why, sizeof c->why, "poll: %s", strerror(errno));
            return -EIO;
        }
        if (wake_fd >= 0 && pf[1].revents)
            return -ECANCELED;
        if (pf[0].revents && redisBufferRead(c->ctx) != REDIS_OK) {
            snprintf(c->why, sizeof c->why, "%s", c->ctx->errstr);
            return -EIO;
        }
    }
}

/* Read and drop the replies still outstanding (after an interrupted wait),
 * uninterruptibly, each within `timeout_ms`. @return 0 or an error of
 * rd_recv (the connection is then unusable). */
static int rd_drain(rd_conn *c, uint64_t timeout_ms)
{
    while (c->outstanding) {
        redisReply *rep;
        int r = rd_recv(c, -1, timeout_ms, &rep);
        if (r < 0)
            return r;
        freeReplyObject(rep);
    }
    return 0;
}

/* One command and its reply. @return as rd_recv, -ENOMEM. An error reply is
 * a reply (type REDIS_REPLY_ERROR): the caller decides. */
static int rd_call(rd_conn *c, int wake_fd, uint64_t timeout_ms, redisReply **out, int argc,
                   const char **argv, const size_t *lens)
{
    if (c->outstanding) {
        int r = rd_drain(c, timeout_ms);
        if (r < 0)
            return r;
    }
    if (redisAppendCommandArgv(c->ctx, argc, argv, lens) != REDIS_OK) {
        snprintf(c->why, sizeof c->why, "out of memory");
        return -ENOMEM;
    }
    c->outstanding++;
    int r = rd_send(c);
    if (r < 0)
        return r;
    return rd_recv(c, wake_fd, timeout_ms, out);
}

/* A printf-style command without binary arguments, uninterruptible. */
static int rd_callf(rd_conn *c, uint64_t timeout_ms, redisReply **out, const char *fmt, ...)
{
    const char *argv[8];
    size_t lens[8];
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    int argc = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok && argc < 8;
         tok = strtok_r(NULL, " ", &save)) {
        argv[argc] = tok;
        lens[argc++] = strlen(tok);
    }
    return rd_call(c, -1, timeout_ms, out, argc, argv, lens);
}

/*
 * Connect, authenticate, select the database. @return 0; a negative errno
 * with c->why: the connect's errno (-ECONNREFUSED, -ENOENT, ...), -EHOSTUNREACH
 * (a name that does not resolve), -EACCES (AUTH refused), -EINVAL (the
 * password variable is unset), or an I/O error of the first commands.
 */
static int rd_connect(rd_conn *c, const rd_addr *a, const char *password_env, uint64_t connect_ms,
                      uint64_t timeout_ms)
{
    rd_close(c);
    c->why[0] = 0;
    const char *password = a->password;
    if (password_env) {
        const char *v = getenv(password_env);
        if (!v) {
            snprintf(c->why, sizeof c->why, "the password variable %s is not set", password_env);
            return -EINVAL;
        }
        password = v;
    }
    errno = 0;
    redisContext *ctx = a->unix_socket
                            ? redisConnectUnixWithTimeout(a->host, rd_tv(connect_ms))
                            : redisConnectWithTimeout(a->host, a->port, rd_tv(connect_ms));
    int saved = errno;
    if (!ctx) {
        snprintf(c->why, sizeof c->why, "out of memory");
        return -ENOMEM;
    }
    if (ctx->err) {
        snprintf(c->why, sizeof c->why, "%s", ctx->errstr);
        redisFree(ctx);
        if (saved > 0 && strcmp(c->why, strerror(saved)) == 0)
            return -saved;
        if (strstr(c->why, "timed out"))
            return -ETIMEDOUT;
        return -EHOSTUNREACH;
    }
    /* The sink's writes block at most this long (SO_SNDTIMEO); reads are
     * bounded by rd_recv's deadlines. */
    redisSetTimeout(ctx, rd_tv(timeout_ms ? timeout_ms : 1));
    if (!a->unix_socket)
        redisEnableKeepAlive(ctx);
    c->ctx = ctx;
    c->outstanding = 0;
    redisReply *rep = NULL;
    int r = 0;
    if (password) {
        const char *argv[3] = {"AUTH", a->user ? a->user : password, password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(password)};
        r = rd_call(c, -1, timeout_ms, &rep, a->user ? 3 : 2, argv, lens);
        if (r == 0 && rep->type == REDIS_REPLY_ERROR) {
            snprintf(c->why, sizeof c->why, "AUTH refused: %s", rep->str);
            r = -EACCES;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    if (r == 0 && a->db) {
        r = rd_callf(c, timeout_ms, &rep, "SELECT %d", a->db);
        if (r == 0 && rep->type == REDIS_REPLY_ERROR) {
            snprintf(c->why, sizeof c->why, "SELECT %d: %s", a->db, rep->str);
            r = -EINVAL;
        }
        freeReplyObject(rep);
    }
    if (r < 0)
        rd_close(c);
    return r;
}

/* Sleep `ms` or until `wake_fd` is readable (-1: none). @return true if woken. */
static bool rd_sleep(int wake_fd, uint64_t ms)
{
    uint64_t deadline = rd_now_ms() + ms;
    for (;;) {
        uint64_t now = rd_now_ms();
        if (now >= deadline)
            return false;
        struct pollfd pf = {wake_fd, POLLIN, 0};
        int k = poll(&pf, wake_fd >= 0 ? 1 : 0, (int)(deadline - now));
        if (k > 0)
            return true;
    }
}

/* ------------------------------------------------------- the entry layout */

static void rd_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t rd_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

WEIR_API int weir_redis_iter_init(weir_redis_iter *it, const weir_bytes *rec)
{
    if (!it || !rec || (!rec->data && rec->len))
        return -EINVAL;
    const unsigned char *p = rec->data, *end = p + rec->len;
    if (rec->len < 8)
        return -EINVAL;
    uint32_t idlen = rd_get32(p);
    if (idlen > rec->len - 8)
        return -EINVAL;
    p += 4 + idlen;
    it->npairs = rd_get32(p);
    it->weir__left = it->npairs;
    it->weir__p = p + 4;
    it->weir__end = end;
    /* every pair takes at least 8 bytes */
    if (it->npairs > (size_t)(end - it->weir__p) / 8)
        return -EINVAL;
    return 0;
}

static int rd_take(weir_redis_iter *it, weir_bytes *b)
{
    if ((size_t)(it->weir__end - it->weir__p) < 4)
        return -EINVAL;
    uint32_t n = rd_get32(it->weir__p);
    it->weir__p += 4;
    if ((size_t)(it->weir__end - it->weir__p) < n)
        return -EINVAL;
    b->data = it->weir__p;
    b->len = n;
    it->weir__p += n;
    return 0;
}

WEIR_API int weir_redis_iter_next(weir_redis_iter *it, weir_bytes *field, weir_bytes *value)
{
    if (!it || !field || !value)
        return -EINVAL;
    if (it->weir__left == 0)
        return it->weir__p == it->weir__end ? 0 : -EINVAL;
    if (rd_take(it, field) < 0 || rd_take(it, value) < 0)
        return -EINVAL;
    it->weir__left--;
    return 1;
}

WEIR_API int weir_redis_entry_id(const weir_bytes *rec, const char **id, size_t *len)
{
    weir_redis_iter it;
    if (!id || !len || weir_redis_iter_init(&it, rec) < 0)
        return -EINVAL;
    *id = (const char *)rec->data + 4;
    *len = rd_get32(rec->data);
    return 0;
}

WEIR_API int weir_redis_field(const weir_bytes *rec, const char *field, const void **val,
                              size_t *len)
{
    weir_redis_iter it;
    if (!field || !val || !len || weir_redis_iter_init(&it, rec) < 0)
        return -EINVAL;
    size_t fl = strlen(field);
    weir_bytes f, v;
    int r;
    while ((r = weir_redis_iter_next(&it, &f, &v)) == 1) {
        if (f.len == fl && memcmp(f.data, field, fl) == 0) {
            *val = v.data;
            *len = v.len;
            return 0;
        }
    }
    return r == 0 ? -ENOENT : r;
}

static void rd_w_bytes(weir_redis_writer *w, const void *data, size_t n)
{
    if (w->len == SIZE_MAX)
        return;
    if (n > UINT32_MAX || w->len > SIZE_MAX - 8 - n) {
        w->len = SIZE_MAX; /* -EOVERFLOW at finish */
        return;
    }
    if (w->len + 4 + n <= w->weir__cap) {
        rd_put32(w->weir__buf + w->len, (uint32_t)n);
        if (n)
            memcpy(w->weir__buf + w->len + 4, data, n);
    }
    w->len += 4 + n;
}

WEIR_API void weir_redis_writer_init(weir_redis_writer *w, void *buf, size_t cap, const char *id,
                                     size_t id_len)
{
    w->weir__buf = buf;
    w->weir__cap = buf ? cap : 0;
    w->len = 0;
    w->npairs = 0;
    rd_w_bytes(w, id, id_len);
    if (w->len != SIZE_MAX)
        w->len += 4; /* the pair count, written by finish */
}

WEIR_API void weir_redis_writer_add(weir_redis_writer *w, const void *field, size_t field_len,
                                    const void *value, size_t value_len)
{
    rd_w_bytes(w, field, field_len);
    rd_w_bytes(w, value, value_len);
    if (w->npairs == UINT32_MAX)
        w->len = SIZE_MAX;
    else
        w->npairs++;
}

WEIR_API int weir_redis_writer_finish(weir_redis_writer *w, size_t *len)
{
    if (w->len == SIZE_MAX) {
        if (len)
            *len = SIZE_MAX;
        return -EOVERFLOW;
    }
    if (len)
        *len = w->len;
    if (w->len > w->weir__cap)
        return -EMSGSIZE;
    size_t at = 4 + rd_get32(w->weir__buf);
    rd_put32(w->weir__buf + at, w->npairs);
    return 0;
}

/* -------------------------------------------------------------- the source */

typedef struct rd_id {
    uint64_t ms, seq;
} rd_id;

typedef struct rd_mark {
    uint64_t barrier; /* its id */
    uint64_t end;     /* `tracked` when it was injected */
} rd_mark;

typedef struct rd_source {
    /* the configuration (copies) */
    rd_addr addr;
    char *password_env, *stream, *group, *group_start, *consumer_cfg;
    unsigned batch, block_ms;
    uint64_t claim_idle_ms, claim_every_ms, checkpoint_every, checkpoint_ms, end_idle_ms;
    uint64_t max_entries, connect_timeout_ms, timeout_ms, retry_ms, drain_ms;
    bool checkpoints;
    bool ack_after_emit; /* without checkpoints: XACK once emitted, not NOACK */
    bool draining;       /* after a stop: failures end quietly */
    int wake[2];         /* self-pipe: [1] written by the interrupt, [0] polled */
    /* The last completed barrier: stored by the checkpoint function on the
     * thread that completed it, read by the source's thread. */
    _Atomic uint64_t done;

    /* one run, the source's thread only */
    rd_conn conn;
    char consumer[256];
    uint64_t lost_since; /* 0: connected */
    char lost_why[RD_WHY];
    unsigned char *buf; /* the encoded entries of one reply */
    size_t buf_cap;
    weir_bytes *descs;
    rd_id *rids; /* the ids of those entries */
    size_t descs_cap;
    rd_id *ids; /* ring of emitted, unacknowledged ids: [acked, tracked) */
    size_t ids_cap;
    uint64_t tracked, acked, target;
    rd_mark marks[RD_MARKS]; /* barriers injected, not popped */
    unsigned marks_head, marks_n;
    uint64_t since_barrier, last_barrier_ms;
    uint64_t emitted; /* entries emitted this run */
    uint64_t last_entry_ms, last_claim_ms;
    const char **argv; /* XACK arguments */
    size_t *lens;
    char *idtext; /* RD_ACK_CHUNK ids as text */
} rd_source;

/* Its failures are recorded with weir_emit_fail() at the point they happen
 * (so messages name the address); functions return 0, -ECANCELED (a stop or
 * cancel: not an error), or the errno already recorded. */

static int rd_src_fail_lost(rd_source *S, weir_emit *e)
{
    return weir_emit_fail(e, -ENOTCONN,
                          "lost the connection to redis at %s (%s) and could not reconnect within "
                          "%llu ms (last attempt: %s)",
                          S->addr.text, S->lost_why, (unsigned long long)S->retry_ms,
                          S->conn.why[0] ? S->conn.why : "none");
}

/* XGROUP CREATE ... MKSTREAM; an existing group (BUSYGROUP) is fine.
 * @return 0, or a negative errno with S->conn.why. */
static int rd_src_group(rd_source *S)
{
    const char *argv[6] = {"XGROUP", "CREATE", S->stream, S->group, S->group_start, "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redisReply *rep;
    int r = rd_call(&S->conn, -1, S->timeout_ms, &rep, 6, argv, lens);
    if (r < 0)
        return r;
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0) {
        snprintf(S->conn.why, sizeof S->conn.why, "XGROUP CREATE %s %s: %s", S->stream, S->group,
                 rep->str);
        r = -EPROTO;
    }
    freeReplyObject(rep);
    return r;
}

/* Reconnect after a loss (S->lost_since set), with backoff, for up to
 * retry_ms. @return 0, -ECANCELED, or the recorded failure. */
static int rd_src_reconnect(rd_source *S, weir_emit *e, bool interruptible)
{
    uint64_t backoff = RD_BACKOFF_MIN;
    for (;;) {
        if (weir_emit_stopping(e) && interruptible)
            return -ECANCELED;
        int r =
            rd_connect(&S->conn, &S->addr, S->password_env, S->connect_timeout_ms, S->timeout_ms);
        if (r == 0)
            r = rd_src_group(S);
        if (r == 0)
            return 0; /* lost_since is reset when a command went through */
        if (r == -EACCES || r == -EINVAL)
            return weir_emit_fail(e, r, "redis at %s: %s", S->addr.text, S->conn.why);
        rd_close(&S->conn);
        uint64_t now = rd_now_ms();
        if (now - S->lost_since >= S->retry_ms)
            return rd_src_fail_lost(S, e);
        uint64_t wait = backoff;
        if (wait > S->retry_ms - (now - S->lost_since))
            wait = S->retry_ms - (now - S->lost_since);
        if (rd_sleep(interruptible ? S->wake[0] : -1, wait))
            return -ECANCELED;
        if (backoff < RD_BACKOFF_MAX)
            backoff *= 2;
    }
}

/*
 * A command, retried on a new connection after a loss (every command the
 * source sends is safe to repeat). `block_ms`: the server may hold the reply
 * that long (BLOCK) before the timeout starts. An error reply is returned as
 * a reply. @return 0 with *out, -ECANCELED (interruptible only), or the
 * recorded failure.
 */
static int rd_src_cmd(rd_source *S, weir_emit *e, bool interruptible, uint64_t block_ms,
                      redisReply **out, int argc, const char **argv, const size_t *lens)
{
    for (;;) {
        if (!S->conn.ctx) {
            int r = rd_src_reconnect(S, e, interruptible);
            if (r < 0)
                return r;
        }
        int r = rd_call(&S->conn, interruptible ? S->wake[0] : -1, block_ms + S->timeout_ms, out,
                        argc, argv, lens);
        if (r == 0)
            S->lost_since = 0;
        if (r == 0 || r == -ECANCELED)
            return r;
        if (S->draining) {
            rd_close(&S->conn);
            return -ECANCELED; /* after a stop: give up quietly */
        }
        if (r == -ENOMEM)
            return weir_emit_fail(e, r, "redis at %s", S->addr.text);
        /* A loss: the time to reconnect counts from the first failure, so a
         * server that accepts and drops every connection still ends it. */
        if (!S->lost_since) {
            snprintf(S->lost_why, sizeof S->lost_why, "%s", S->conn.why);
            S->lost_since = rd_now_ms();
        }
        rd_close(&S->conn);
        if (S->retry_ms == 0 || rd_now_ms() - S->lost_since >= S->retry_ms)
            return rd_src_fail_lost(S, e);
    }
}

static int rd_src_reply_error(rd_source *S, weir_emit *e, const char *what, const redisReply *rep)
{
    return weir_emit_fail(e, -EPROTO, "redis at %s: %s on stream '%s' (group '%s'): %s",
                          S->addr.text, what, S->stream, S->group,
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
}

/* "ms-seq", two decimal integers. */
static bool rd_parse_id(const char *s, size_t n, rd_id *id)
{
    uint64_t v[2] = {0, 0};
    int part = 0;
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '-' && part == 0 && digits) {
            part = 1;
            digits = 0;
        } else if (c >= '0' && c <= '9' && digits < 20) {
            v[part] = v[part] * 10 + (uint64_t)(c - '0');
            digits++;
        } else {
            return false;
        }
    }
    id->ms = v[0];
    id->seq = v[1];
    return part == 1 && digits;
}

static bool rd_is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Room for `n` entries in the descriptor tables. */
static int rd_src_room(rd_source *S, size_t n)
{
    if (n <= S->descs_cap)
        return 0;
    weir_bytes *d = weir_realloc(S->descs, n * sizeof *d);
    if (!d)
        return -ENOMEM;
    S->descs = d;
    rd_id *ri = weir_realloc(S->rids, n * sizeof *ri);
    if (!ri)
        return -ENOMEM;
    S->rids = ri;
    S->descs_cap = n;
    return 0;
}

/*
 * Encode the entries of `arr` (an array of [id, [field, value, ...]]) into
 * S->buf / S->descs / S->rids. An entry whose fields are nil (deleted from
 * the stream while pending) has no pairs. @return the count, or -EPROTO
 * (a malformed reply), -ENOMEM.
 */
static long rd_src_encode(rd_source *S, const redisReply *arr)
{
    if (!arr || arr->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    size_t n = arr->elements, size = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *en = arr->element[i];
        if (!en || en->type != REDIS_REPLY_ARRAY || en->elements != 2 || !rd_is_str(en->element[0]))
            return -EPROTO;
        const redisReply *fv = en->element[1];
        size_t sz = 8 + en->element[0]->len;
        if (fv && fv->type == REDIS_REPLY_ARRAY) {
            if (fv->elements % 2)
                return -EPROTO;
            for (size_t j = 0; j < fv->elements; j++) {
                if (!rd_is_str(fv->element[j]) || fv->element[j]->len > UINT32_MAX)
                    return -EPROTO;
                sz += 4 + fv->element[j]->len;
            }
        } else if (fv && fv->type != REDIS_REPLY_NIL) {
            return -EPROTO;
        }
        size += (sz + 7) & ~(size_t)7; /* keep each record 8-byte aligned in buf */
    }
    if (rd_src_room(S, n) < 0)
        return -ENOMEM;
    if (size > S->buf_cap) {
        size_t cap = S->buf_cap ? S->buf_cap : 65536;
        while (cap < size)
            cap *= 2;
        unsigned char *b = weir_realloc(S->buf, cap);
        if (!b)
            return -ENOMEM;
        S->buf = b;
        S->buf_cap = cap;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *en = arr->element[i];
        const redisReply *id = en->element[0], *fv = en->element[1];
        if (!rd_parse_id(id->str, id->len, &S->rids[i]))
            return -EPROTO;
        unsigned char *p = S->buf + off, *q = p;
        rd_put32(q, (uint32_t)id->len);
        memcpy(q + 4, id->str, id->len);
        q += 4 + id->len;
        size_t np = fv && fv->type == REDIS_REPLY_ARRAY ? fv->elements / 2 : 0;
        rd_put32(q, (uint32_t)np);
        q += 4;
        for (size_t j = 0; j < 2 * np; j++) {
            const redisReply *s = fv->element[j];
            rd_put32(q, (uint32_t)s->len);
            memcpy(q + 4, s->str, s->len);
            q += 4 + s->len;
        }
        S->descs[i].data = p;
        S->descs[i].len = (size_t)(q - p);
        off += ((size_t)(q - p) + 7) & ~(size_t)7;
    }
    return (long)n;
}

/* Append ids to the ring of emitted, unacknowledged ones. */
static int rd_src_track(rd_source *S, const rd_id *ids, size_t n)
{
    size_t live = (size_t)(S->tracked - S->acked);
    if (live + n > S->ids_cap) {
        /* a larger ring: id at absolute position p lives at p % cap, so
         * each live one moves to its place in the new ring */
        size_t cap = S->ids_cap ? S->ids_cap : 4096;
        while (cap < live + n)
            cap *= 2;
        rd_id *r = weir_malloc(cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        for (uint64_t p = S->acked; p < S->tracked; p++)
            r[p % cap] = S->ids[p % S->ids_cap];
        weir_free(S->ids);
        S->ids = r;
        S->ids_cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        S->ids[(S->tracked + i) % S->ids_cap] = ids[i];
    S->tracked += n;
    return 0;
}

/* XACK ids [acked, upto). @return 0, or the recorded failure (-ECANCELED
 * cannot happen: acknowledgements are not interruptible, they are
 * bounded by retry_ms). */
static int rd_src_xack(rd_source *S, weir_emit *e, uint64_t upto, bool interruptible)
{
    while (S->acked < upto) {
        size_t k = (size_t)(upto - S->acked);
        if (k > RD_ACK_CHUNK)
            k = RD_ACK_CHUNK;
        S->argv[0] = "XACK";
        S->argv[1] = S->stream;
        S->argv[2] = S->group;
        for (int i = 0; i < 3; i++)
            S->lens[i] = strlen(S->argv[i]);
        char *t = S->idtext;
        for (size_t i = 0; i < k; i++) {
            const rd_id *id = &S->ids[(S->acked + i) % S->ids_cap];
            int w =
                sprintf(t, "%llu-%llu", (unsigned long long)id->ms, (unsigned long long)id->seq);
            S->argv[3 + i] = t;
            S->lens[3 + i] = (size_t)w;
            t += w + 1;
        }
        redisReply *rep;
        int r = rd_src_cmd(S, e, interruptible, 0, &rep, (int)(3 + k), S->argv, S->lens);
        if (r < 0)
            return r;
        if (rep->type != REDIS_REPLY_INTEGER) {
            r = S->draining ? -ECANCELED : rd_src_reply_error(S, e, "XACK", rep);
            freeReplyObject(rep);
            return r;
        }
        freeReplyObject(rep);
        S->acked += k;
    }
    return 0;
}

/* Pop the marks of completed barriers and acknowledge what they cover. */
static int rd_src_ack_done(rd_source *S, weir_emit *e, bool interruptible)
{
    /* acquire: pairs with the release store in rd_src_checkpoint(). */
    uint64_t done = atomic_load_explicit(&S->done, memory_order_acquire);
    while (S->marks_n && S->marks[S->marks_head].barrier <= done) {
        S->target = S->marks[S->marks_head].end;
        S->marks_head = (S->marks_head + 1) % RD_MARKS;
        S->marks_n--;
    }
    return S->target > S->acked ? rd_src_xack(S, e, S->target, interruptible) : 0;
}

/* Inject a barrier after everything emitted so far. @return 0 (also when
 * weir said -EBUSY: a later one covers these entries), -ECANCELED, or the
 * recorded failure. */
static int rd_src_barrier(rd_source *S, weir_emit *e)
{
    int r = rd_src_ack_done(S, e, true);
    if (r < 0)
        return r;
    if (S->marks_n == RD_MARKS)
        return 0;
    uint64_t id;
    r = weir_emit_barrier(e, &id);
    if (r == -EBUSY)
        return 0;
    if (r < 0)
        return r == -ECANCELED ? r : weir_emit_fail(e, r, "cannot inject a checkpoint barrier");
    unsigned at = (S->marks_head + S->marks_n) % RD_MARKS;
    S->marks[at].barrier = id;
    S->marks[at].end = S->tracked;
    S->marks_n++;
    S->since_barrier = 0;
    S->last_barrier_ms = rd_now_ms();
    return 0;
}

/* Emit the `n` encoded entries; with checkpoints, a barrier after every
 * checkpoint_every of them. `ack_now`: acknowledge them once emitted
 * (entries re-read or claimed without checkpoints). */
static int rd_src_emit(rd_source *S, weir_emit *e, size_t n, bool ack_now)
{
    size_t i = 0;
    while (i < n) {
        size_t k = n - i;
        if (S->checkpoint_every && k > S->checkpoint_every - S->since_barrier)
            k = (size_t)(S->checkpoint_every - S->since_barrier);
        if (S->max_entries && k > S->max_entries - S->emitted)
            k = (size_t)(S->max_entries - S->emitted);
        if (k == 0)
            break;
        int r = weir_emit_records(e, S->descs + i, k);
        if (r == -EMSGSIZE)
            return weir_emit_fail(e, r,
                                  "an entry of stream '%s' from %llu-%llu on is larger than the "
                                  "source's stream can hold (raise "
                                  "weir_pipeline_config.byte_capacity)",
                                  S->stream, (unsigned long long)S->rids[i].ms,
                                  (unsigned long long)S->rids[i].seq);
        if (r < 0)
            return r; /* -ECANCELED, or an error of a downstream term */
        if ((S->checkpoints || ack_now) && rd_src_track(S, S->rids + i, k) < 0)
            return weir_emit_fail(e, -ENOMEM, "no memory for the ids of stream '%s'", S->stream);
        S->emitted += k;
        S->since_barrier += k;
        i += k;
        if (S->checkpoints && S->checkpoint_every && S->since_barrier >= S->checkpoint_every &&
            (r = rd_src_barrier(S, e)) < 0)
            return r;
    }
    if (ack_now && !S->checkpoints)
        return rd_src_xack(S, e, S->tracked, true);
    return 0;
}

/* Entries to ask for: the batch, or fewer to stay within max_entries (an
 * entry read but not emitted would be lost with NOACK). */
static uint64_t rd_src_count(const rd_source *S)
{
    if (S->max_entries && S->max_entries - S->emitted < S->batch)
        return S->max_entries - S->emitted;
    return S->batch;
}

/* Entries of one XREADGROUP / XAUTOCLAIM reply: encode and emit. */
static int rd_src_deliver(rd_source *S, weir_emit *e, const redisReply *arr, const char *what,
                          bool ack_now, size_t *count)
{
    long n = rd_src_encode(S, arr);
    if (n == -ENOMEM)
        return weir_emit_fail(e, -ENOMEM, "no memory for the entries of stream '%s'", S->stream);
    if (n < 0)
        return weir_emit_fail(e, -EPROTO, "redis at %s: malformed %s reply on stream '%s'",
                              S->addr.text, what, S->stream);
    *count = (size_t)n;
    if (n > 0)
        S->last_entry_ms = rd_now_ms();
    return n ? rd_src_emit(S, e, (size_t)n, ack_now) : 0;
}

/* The entries of an XREADGROUP reply ([[key, entries]] or nil). */
static const redisReply *rd_src_xread_entries(const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_NIL)
        return NULL;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || !rep->element[0] ||
        rep->element[0]->type != REDIS_REPLY_ARRAY || rep->element[0]->elements != 2)
        return rep; /* malformed: encode rejects it */
    return rep->element[0]->element[1];
}

/*
 * XREADGROUP from `start` ("0": this consumer's own pending entries, a
 * restart; ">": new entries), waiting up to `block` ms (0: no BLOCK).
 * @return 0 with *count, -ECANCELED, or the recorded failure.
 */
static int rd_src_read(rd_source *S, weir_emit *e, const char *start, unsigned block, size_t *count,
                       char *last_id, size_t last_len)
{
    char cnt[24], blk[24];
    snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)rd_src_count(S));
    snprintf(blk, sizeof blk, "%u", block);
    const char *argv[12];
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = S->group;
    argv[argc++] = S->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = cnt;
    if (block) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blk;
    }
    bool history = strcmp(start, ">") != 0;
    if (!S->checkpoints && !S->ack_after_emit && !history)
        argv[argc++] = "NOACK";
    argv[argc++] = "STREAMS";
    argv[argc++] = S->stream;
    argv[argc++] = start;
    size_t lens[12];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *rep;
    *count = 0;
    int r = rd_src_cmd(S, e, true, block, &rep, argc, argv, lens);
    if (r < 0)
        return r;
    if (rep->type == REDIS_REPLY_ERROR) {
        r = rd_src_reply_error(S, e, "XREADGROUP", rep);
        freeReplyObject(rep);
        return r;
    }
    const redisReply *entries = rd_src_xread_entries(rep);
    if (entries) {
        r = rd_src_deliver(S, e, entries, "XREADGROUP", history || S->ack_after_emit, count);
        if (r == 0 && *count && last_id) {
            const redisReply *lastent = entries->element[*count - 1]->element[0];
            snprintf(last_id, last_len, "%.*s", (int)lastent->len, lastent->str);
        }
    }
    freeReplyObject(rep);
    return r;
}

/* Re-read this consumer's own pending entries (left by a previous run under
 * the same name), oldest first. */
static int rd_src_history(rd_source *S, weir_emit *e)
{
    char from[48] = "0";
    for (;;) {
        size_t n;
        char last[48];
        int r = rd_src_read(S, e, from, 0, &n, last, sizeof last);
        if (r < 0)
            return r;
        if (n == 0)
            return 0;
        memcpy(from, last, sizeof from);
        if (S->max_entries && S->emitted >= S->max_entries)
            return 0;
    }
}

/* XAUTOCLAIM until the cursor comes back to 0-0: the entries pending for
 * longer than claim_idle_ms, whoever holds them, become ours and are
 * emitted. */
static int rd_src_claim(rd_source *S, weir_emit *e)
{
    if (S->claim_idle_ms == 0)
        return 0;
    S->last_claim_ms = rd_now_ms();
    char cursor[48] = "0-0", idle[24], cnt[24];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)S->claim_idle_ms);
    for (;;) {
        if (weir_emit_stopping(e))
            return -ECANCELED;
        if (S->max_entries && S->emitted >= S->max_entries)
            return 0;
        snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)rd_src_count(S));
        const char *argv[8] = {"XAUTOCLAIM", S->stream, S->group, S->consumer,
                               idle,         cursor,    "COUNT",  cnt};
        size_t lens[8];
        for (int i = 0; i < 8; i++)
            lens[i] = strlen(argv[i]);
        redisReply *rep;
        int r = rd_src_cmd(S, e, true, 0, &rep, 8, argv, lens);
        if (r < 0)
            return r;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || !rd_is_str(rep->element[0]) ||
            rep->element[0]->len >= sizeof cursor) {
            r = rd_src_reply_error(S, e, "XAUTOCLAIM", rep);
            freeReplyObject(rep);
            return r;
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
        cursor[rep->element[0]->len] = 0;
        size_t n;
        r = rd_src_deliver(S, e, rep->element[1], "XAUTOCLAIM", true, &n);
        freeReplyObject(rep);
        if (r < 0)
            return r;
        if (strcmp(cursor, "0-0") == 0)
            return 0;
    }
}

/* Entries the group's other consumers hold (XPENDING summary): 0 means that
 * nothing is left for anyone to claim. @return the count, or a negative
 * errno (recorded; -ECANCELED). */
static long long rd_src_others_pending(rd_source *S, weir_emit *e)
{
    const char *argv[3] = {"XPENDING", S->stream, S->group};
    size_t lens[3] = {8, strlen(S->stream), strlen(S->group)};
    redisReply *rep;
    int r = rd_src_cmd(S, e, true, 0, &rep, 3, argv, lens);
    if (r < 0)
        return r;
    long long others = -1;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 4 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        others = rep->element[0]->integer;
        const redisReply *per = rep->element[3];
        if (per->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < per->elements; i++) {
                const redisReply *c = per->element[i];
                if (c->type == REDIS_REPLY_ARRAY && c->elements == 2 && rd_is_str(c->element[0]) &&
                    rd_is_str(c->element[1]) && c->element[0]->len == strlen(S->consumer) &&
                    memcmp(c->element[0]->str, S->consumer, c->element[0]->len) == 0)
                    others -= strtoll(c->element[1]->str, NULL, 10);
            }
    }
    if (others < 0) {
        r = rd_src_reply_error(S, e, "XPENDING", rep);
        freeReplyObject(rep);
        return r;
    }
    freeReplyObject(rep);
    return others;
}

/* The end of the source's data: a last barrier, awaited, and every entry
 * acknowledged. */
static int rd_src_finish(rd_source *S, weir_emit *e)
{
    if (!S->checkpoints)
        return 0;
    for (;;) {
        uint64_t covered =
            S->marks_n ? S->marks[(S->marks_head + S->marks_n - 1) % RD_MARKS].end : S->target;
        if (covered < S->tracked) {
            int r = rd_src_barrier(S, e);
            if (r < 0)
                return r;
        }
        int r = rd_src_ack_done(S, e, true);
        if (r < 0)
            return r;
        if (S->acked == S->tracked)
            return 0;
        if (rd_sleep(S->wake[0], 1))
            return -ECANCELED;
    }
}

/* After a stop: acknowledge what the barriers in flight cover as they
 * complete, for up to drain_ms (uninterruptibly: the self-pipe is set). */
static void rd_src_drain(rd_source *S, weir_emit *e)
{
    if (!S->checkpoints || !S->marks_n || !S->conn.ctx)
        return;
    if (rd_drain(&S->conn, RD_SLICE_MS + S->timeout_ms) < 0)
        return;
    uint64_t deadline = rd_now_ms() + S->drain_ms;
    S->draining = true;
    for (;;) {
        if (rd_src_ack_done(S, e, false) < 0 || !S->marks_n || rd_now_ms() >= deadline)
            return;
        rd_sleep(-1, 1);
    }
}

static void rd_src_free_run(rd_source *S)
{
    rd_close(&S->conn);
    weir_free(S->buf);
    weir_free(S->descs);
    weir_free(S->rids);
    weir_free(S->ids);
    weir_free(S->argv);
    weir_free(S->lens);
    weir_free(S->idtext);
    S->buf = NULL;
    S->descs = NULL;
    S->rids = NULL;
    S->ids = NULL;
    S->argv = NULL;
    S->lens = NULL;
    S->idtext = NULL;
    S->buf_cap = S->descs_cap = S->ids_cap = 0;
}

static int rd_src_loop(rd_source *S, weir_emit *e)
{
    for (;;) {
        if (weir_emit_stopping(e))
            return -ECANCELED;
        if (S->max_entries && S->emitted >= S->max_entries)
            return rd_src_finish(S, e);
        uint64_t now = rd_now_ms();
        int r;
        if (S->checkpoints && (r = rd_src_ack_done(S, e, true)) < 0)
            return r;
        if (S->checkpoints && S->checkpoint_ms && S->since_barrier &&
            now - S->last_barrier_ms >= S->checkpoint_ms && (r = rd_src_barrier(S, e)) < 0)
            return r;
        if (S->claim_idle_ms && now - S->last_claim_ms >= S->claim_every_ms &&
            (r = rd_src_claim(S, e)) < 0)
            return r;
        unsigned slice = S->block_ms < RD_SLICE_MS ? S->block_ms : RD_SLICE_MS;
        size_t n;
        if ((r = rd_src_read(S, e, ">", slice, &n, NULL, 0)) < 0)
            return r;
        if (n)
            continue;
        now = rd_now_ms();
        uint64_t quiet = now - S->last_entry_ms;
        /* A quiet stream: a barrier for what was emitted since the last one. */
        if (S->checkpoints && S->since_barrier && quiet >= S->block_ms &&
            (r = rd_src_barrier(S, e)) < 0)
            return r;
        if (S->end_idle_ms && quiet >= S->end_idle_ms) {
            long long others = rd_src_others_pending(S, e);
            if (others < 0)
                return (int)others;
            if (others == 0)
                return rd_src_finish(S, e);
        }
    }
}

static int rd_src_run(void *state, weir_emit *e)
{
    rd_source *S = state;
    S->tracked = S->acked = S->target = 0;
    S->marks_head = S->marks_n = 0;
    S->since_barrier = S->emitted = 0;
    S->lost_since = 0;
    S->draining = false;
    S->last_barrier_ms = S->last_entry_ms = rd_now_ms();
    S->last_claim_ms = 0;
    atomic_store_explicit(&S->done, 0, memory_order_relaxed); /* before any barrier exists */
    if (S->consumer_cfg) {
        snprintf(S->consumer, sizeof S->consumer, "%s", S->consumer_cfg);
    } else {
        char host[128] = "host";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(S->consumer, sizeof S->consumer, "%s-%ld", host, (long)getpid());
    }
    int r;
    S->argv = weir_malloc((3 + RD_ACK_CHUNK) * sizeof *S->argv);
    S->lens = weir_malloc((3 + RD_ACK_CHUNK) * sizeof *S->lens);
    S->idtext = weir_malloc(RD_ACK_CHUNK * 48);
    if (!S->argv || !S->lens || !S->idtext) {
        r = weir_emit_fail(e, -ENOMEM, "no memory for the acknowledgements");
        goto out;
    }
    r = rd_connect(&S->conn, &S->addr, S->password_env, S->connect_timeout_ms, S->timeout_ms);
    if (r < 0) {
        /* weir_emit_fail appends the errno's text: the cause once */
        if (strcmp(S->conn.why, strerror(-r)) == 0)
            r = weir_emit_fail(e, r, "cannot connect to redis at %s", S->addr.text);
        else
            r = weir_emit_fail(e, r, "cannot connect to redis at %s (%s)", S->addr.text,
                               S->conn.why);
        goto out;
    }
    r = rd_src_group(S);
    if (r < 0) {
        r = weir_emit_fail(e, r, "redis at %s: %s", S->addr.text, S->conn.why);
        goto out;
    }
    if ((r = rd_src_history(S, e)) == 0 && (r = rd_src_claim(S, e)) == 0)
        r = rd_src_loop(S, e);
out:
    if (r == -ECANCELED || weir_emit_stopping(e))
        rd_src_drain(S, e);
    rd_src_free_run(S);
    return r;
}

/* A barrier passed every sink (any thread): hand its id to the source. */
static void rd_src_checkpoint(void *state, uint64_t id)
{
    rd_source *S = state;
    /* release: pairs with the acquire load in rd_src_ack_done(); barriers
     * complete in id order, so the value only grows. */
    atomic_store_explicit(&S->done, id, memory_order_release);
}

/* The interrupt: wake the source's poll. Called once, possibly while it runs
 * or after it returned; the pipe lives until the term is freed. */
static void rd_src_interrupt(void *state)
{
    rd_source *S = state;
    ssize_t k;
    do
        k = write(S->wake[1], "x", 1); /* non-blocking; one byte is enough */
    while (k < 0 && errno == EINTR);
}

static void rd_src_free(void *state)
{
    rd_source *S = state;
    if (!S)
        return;
    rd_src_free_run(S);
    if (S->wake[0] >= 0)
        close(S->wake[0]);
    if (S->wake[1] >= 0)
        close(S->wake[1]);
    rd_addr_free(&S->addr);
    weir_free(S->password_env);
    weir_free(S->stream);
    weir_free(S->group);
    weir_free(S->group_start);
    weir_free(S->consumer_cfg);
    weir_free(S);
}

WEIR_API void weir_redis_source_config_init(weir_redis_source_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->url = RD_DEFAULT_URL;
    cfg->group_start = "0";
    cfg->batch = 128;
    cfg->block_ms = 1000;
    cfg->claim_idle_ms = 30000;
    cfg->connect_timeout_ms = 2000;
    cfg->timeout_ms = 5000;
    cfg->retry_ms = 10000;
    cfg->drain_ms = 1000;
}

/* A copy of an optional string. @return false when out of memory. */
static bool rd_dup(char **dst, const char *src)
{
    *dst = NULL;
    return !src || (*dst = weir_strdup(src)) != NULL;
}

/* A Redis key or name must be a non-empty string. */
static bool rd_bad_name(const char *s)
{
    return !s || !*s;
}

WEIR_API weir_term *weir_redis_source(const char *name, const weir_redis_source_config *cfg)
{
    char who[160];
    snprintf(who, sizeof who, "redis source '%s'", name ? name : "(unnamed)");
    if (!cfg) {
        weir_set_error(-EINVAL, "%s: config is NULL", who);
        return NULL;
    }
    if (rd_bad_name(cfg->stream) || rd_bad_name(cfg->group)) {
        weir_set_error(-EINVAL, "%s: %s is missing (a non-empty string is required)", who,
                       rd_bad_name(cfg->stream) ? "stream" : "group");
        return NULL;
    }
    if (cfg->batch == 0 || cfg->batch > 1000000 || cfg->block_ms == 0 || cfg->block_ms > 3600000u) {
        weir_set_error(-EINVAL, "%s: %s %u out of range (%s)", who,
                       cfg->batch == 0 || cfg->batch > 1000000 ? "batch" : "block_ms",
                       cfg->batch == 0 || cfg->batch > 1000000 ? cfg->batch : cfg->block_ms,
                       cfg->batch == 0 || cfg->batch > 1000000 ? "1..1000000" : "1..3600000");
        return NULL;
    }
    const char *start = cfg->group_start ? cfg->group_start : "0";
    if (!*start || strchr(start, ' ')) {
        weir_set_error(-EINVAL, "%s: group_start '%s' is not an id (\"0\", \"$\", ...)", who,
                       start);
        return NULL;
    }
    rd_source *S = weir_calloc(1, sizeof *S);
    if (!S) {
        weir_set_error(-ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    S->wake[0] = S->wake[1] = -1;
    int r = rd_parse_url(who, cfg->url ? cfg->url : RD_DEFAULT_URL, &S->addr);
    if (r < 0) {
        rd_src_free(S);
        return NULL;
    }
    if (!rd_dup(&S->password_env, cfg->password_env) || !rd_dup(&S->stream, cfg->stream) ||
        !rd_dup(&S->group, cfg->group) || !rd_dup(&S->group_start, start) ||
        !rd_dup(&S->consumer_cfg, cfg->consumer)) {
        rd_src_free(S);
        weir_set_error(-ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    S->batch = cfg->batch;
    S->block_ms = cfg->block_ms;
    S->claim_idle_ms = cfg->claim_idle_ms;
    S->claim_every_ms = cfg->claim_every_ms ? cfg->claim_every_ms : cfg->claim_idle_ms / 2;
    if (S->claim_every_ms == 0)
        S->claim_every_ms = 1;
    S->checkpoint_every = cfg->checkpoint_every;
    S->checkpoint_ms = cfg->checkpoint_ms;
    S->checkpoints = cfg->checkpoint_every || cfg->checkpoint_ms;
    S->ack_after_emit = cfg->ack_after_emit;
    S->end_idle_ms = cfg->end_idle_ms;
    S->max_entries = cfg->max_entries;
    S->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1;
    S->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 1;
    S->retry_ms = cfg->retry_ms;
    S->drain_ms = cfg->drain_ms;
    if (pipe2(S->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int err = -errno;
        rd_src_free(S);
        weir_set_error(err, "%s: cannot create its wake-up pipe: %s", who, strerror(-err));
        return NULL;
    }
    weir_term *t = weir_blocking_source(name, WEIR_VARSIZE, rd_src_run, S);
    if (!t) {
        rd_src_free(S);
        return NULL;
    }
    t = weir_term_on_free(t, rd_src_free); /* frees S with t from here on */
    t = weir_term_on_interrupt(t, rd_src_interrupt);
    if (t && S->checkpoints)
        t = weir_term_on_checkpoint(t, rd_src_checkpoint);
    return t;
}

/* --------------------------------------------------------------- the sink */

typedef struct rd_sink {
    rd_addr addr;
    char *password_env, *stream, *field;
    weir_redis_sink_format format;
    char maxlen[24]; /* "" = no trimming */
    size_t field_len;
    char *head; /* RESP of "XADD key [MAXLEN ~ n] *": the same in every command */
    size_t head_len, head_args;
    unsigned pipeline;
    uint64_t connect_timeout_ms, timeout_ms, retry_ms;

    rd_conn conn;
    bool ever_connected;
    /* The commands whose replies were not read, formatted: [0, len) of
     * `cmds`, command i ending at ends[i]; the first `confirmed` have their
     * replies, the bytes before `sent` were handed to the connection. */
    char *cmds;
    size_t len, cap, sent;
    size_t *ends;
    size_t n, ends_cap, confirmed;
} rd_sink;

/* Room for `more` bytes of commands. */
static int rd_sink_room(rd_sink *K, size_t more)
{
    if (K->cap - K->len >= more)
        return 0;
    size_t cap = K->cap ? K->cap : 65536;
    while (cap - K->len < more)
        cap *= 2;
    char *c = weir_realloc(K->cmds, cap);
    if (!c)
        return -ENOMEM;
    K->cmds = c;
    K->cap = cap;
    return 0;
}

/* Decimal digits of v at p (room for 20). @return their count. */
static size_t rd_utoa(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* A RESP header "<c><n>\r\n" (c = '*' or '$'; room already made). */
static void rd_sink_hdr(rd_sink *K, char c, size_t n)
{
    K->cmds[K->len++] = c;
    K->len += rd_utoa(K->cmds + K->len, n);
    K->cmds[K->len++] = '\r';
    K->cmds[K->len++] = '\n';
}

/* A RESP bulk string: $len\r\nbytes\r\n (room already made). */
static void rd_sink_arg(rd_sink *K, const void *data, size_t len)
{
    rd_sink_hdr(K, '$', len);
    if (len) /* an empty record may have no data pointer */
        memcpy(K->cmds + K->len, data, len);
    K->len += len;
    K->cmds[K->len++] = '\r';
    K->cmds[K->len++] = '\n';
}

/* Format one XADD of record `b`, in one pass: the fixed part of the command
 * (XADD key [MAXLEN ~ n] *) was formatted once, in `head`. @return 0,
 * -ENOMEM, -EINVAL (an ENTRY record that is not in the layout, or has no
 * pair: nothing is kept of it). */
static int rd_sink_format(rd_sink *K, const weir_bytes *b)
{
    weir_redis_iter it;
    size_t pairs = 1;
    if (K->format == WEIR_REDIS_SINK_ENTRY) {
        if (weir_redis_iter_init(&it, b) < 0 || it.npairs == 0)
            return -EINVAL;
        pairs = it.npairs;
    }
    /* Each argument costs at most 15 bytes of RESP besides its data, and a
     * pair's two fields are the record's bytes less 8: b->len bounds them. */
    size_t room = 24 + K->head_len + b->len + 30 * pairs + K->field_len;
    if (rd_sink_room(K, room) < 0)
        return -ENOMEM;
    if (K->n == K->ends_cap) {
        size_t c = K->ends_cap ? 2 * K->ends_cap : 512;
        size_t *e = weir_realloc(K->ends, c * sizeof *e);
        if (!e)
            return -ENOMEM;
        K->ends = e;
        K->ends_cap = c;
    }
    size_t at = K->len;
    rd_sink_hdr(K, '*', K->head_args + 2 * pairs);
    memcpy(K->cmds + K->len, K->head, K->head_len);
    K->len += K->head_len;
    if (K->format == WEIR_REDIS_SINK_ENTRY) {
        weir_bytes f, v;
        int r;
        while ((r = weir_redis_iter_next(&it, &f, &v)) == 1) {
            rd_sink_arg(K, f.data, f.len);
            rd_sink_arg(K, v.data, v.len);
        }
        if (r < 0) {
            K->len = at;
            return -EINVAL;
        }
    } else {
        rd_sink_arg(K, K->field, K->field_len);
        rd_sink_arg(K, b->data, b->len);
    }
    K->ends[K->n++] = K->len;
    return 0;
}

/* Forget the confirmed commands. */
static void rd_sink_compact(rd_sink *K)
{
    if (K->confirmed == 0)
        return;
    size_t cut = K->ends[K->confirmed - 1];
    memmove(K->cmds, K->cmds + cut, K->len - cut);
    K->len -= cut;
    K->sent = K->sent > cut ? K->sent - cut : 0;
    for (size_t i = K->confirmed; i < K->n; i++)
        K->ends[i - K->confirmed] = K->ends[i] - cut;
    K->n -= K->confirmed;
    K->confirmed = 0;
}

/* Connect (the first time: no retry) or reconnect after a loss (backoff, up
 * to retry_ms), then hand every unconfirmed command to the new connection.
 * @return 0 or a negative errno. */
static int rd_sink_connect(rd_sink *K, uint64_t start)
{
    uint64_t backoff = RD_BACKOFF_MIN;
    for (;;) {
        int r =
            rd_connect(&K->conn, &K->addr, K->password_env, K->connect_timeout_ms, K->timeout_ms);
        if (r == 0)
            break;
        if (!K->ever_connected || r == -EACCES || r == -EINVAL || r == -ENOMEM)
            return r;
        uint64_t now = rd_now_ms();
        if (now - start >= K->retry_ms)
            return -ENOTCONN;
        uint64_t wait =
            backoff < K->retry_ms - (now - start) ? backoff : K->retry_ms - (now - start);
        rd_sleep(-1, wait);
        if (backoff < RD_BACKOFF_MAX)
            backoff *= 2;
    }
    K->ever_connected = true;
    rd_sink_compact(K);
    K->sent = 0;
    return 0;
}

/* Hand the unsent commands to the connection and write them. */
static int rd_sink_send(rd_sink *K)
{
    if (K->sent == K->len)
        return 0;
    if (redisAppendFormattedCommand(K->conn.ctx, K->cmds + K->sent, K->len - K->sent) != REDIS_OK)
        return -ENOMEM;
    /* the replies to expect: every command not confirmed yet */
    K->conn.outstanding = (unsigned)(K->n - K->confirmed);
    K->sent = K->len;
    return rd_send(&K->conn);
}

/* Read replies until at most `keep` commands are unconfirmed (`keep` 0: all;
 * `poll_only`: only those already readable). @return 0, -EREMOTEIO (an
 * error reply), or a connection error. */
static int rd_sink_collect(rd_sink *K, size_t keep, bool poll_only)
{
    while (K->n - K->confirmed > keep) {
        redisReply *rep;
        if (poll_only) {
            void *rp = NULL;
            if (redisGetReplyFromReader(K->conn.ctx, &rp) != REDIS_OK)
                return -EPROTO;
            if (!rp) {
                struct pollfd pf = {K->conn.ctx->fd, POLLIN, 0};
                if (poll(&pf, 1, 0) <= 0)
                    return 0;
                if (redisBufferRead(K->conn.ctx) != REDIS_OK)
                    return -EIO;
                continue;
            }
            K->conn.outstanding--;
            rep = rp;
        } else {
            int r = rd_recv(&K->conn, -1, K->timeout_ms, &rep);
            if (r < 0)
                return r;
        }
        bool bad = rep->type == REDIS_REPLY_ERROR;
        freeReplyObject(rep);
        if (bad)
            return -EREMOTEIO;
        K->confirmed++;
    }
    if (K->confirmed == K->n) {
        K->len = K->sent = 0;
        K->n = K->confirmed = 0;
    }
    return 0;
}

/* Send what is pending and collect replies down to `keep` unconfirmed,
 * reconnecting (and resending) after a loss. */
static int rd_sink_flush(rd_sink *K, size_t keep, bool poll_only)
{
    uint64_t lost = 0; /* the first failure of this flush */
    for (;;) {
        int r = 0;
        if (!K->conn.ctx)
            r = rd_sink_connect(K, lost ? lost : rd_now_ms());
        if (r == 0)
            r = rd_sink_send(K);
        if (r == 0)
            r = rd_sink_collect(K, keep, poll_only);
        if (r == 0 || r == -EREMOTEIO || r == -ENOMEM || r == -ENOTCONN || r == -EACCES ||
            r == -EINVAL)
            return r;
        if (!K->ever_connected)
            return r; /* the first connection failed: the connect's errno */
        rd_close(&K->conn);
        if (!lost)
            lost = rd_now_ms();
        if (K->retry_ms == 0 || rd_now_ms() - lost >= K->retry_ms)
            return -ENOTCONN;
    }
}

static int rd_sink_batch(void *state, const void *recs, size_t n)
{
    rd_sink *K = state;
    const weir_bytes *b = recs;
    for (size_t i = 0; i < n; i++) {
        int r = rd_sink_format(K, &b[i]);
        if (r < 0)
            return r;
    }
    int r = rd_sink_flush(K, K->pipeline, false);
    if (r == 0 && K->n > K->confirmed)
        r = rd_sink_flush(K, 0, true);
    return r;
}

static int rd_sink_barrier(void *state, weir_emit *e)
{
    (void)e;
    rd_sink *K = state;
    return K->n > K->confirmed ? rd_sink_flush(K, 0, false) : 0;
}

static int rd_sink_finish(void *state, weir_emit *e)
{
    return rd_sink_barrier(state, e);
}

static void rd_sink_free(void *state)
{
    rd_sink *K = state;
    if (!K)
        return;
    rd_close(&K->conn);
    weir_free(K->cmds);
    weir_free(K->ends);
    rd_addr_free(&K->addr);
    weir_free(K->password_env);
    weir_free(K->stream);
    weir_free(K->field);
    weir_free(K->head);
    weir_free(K);
}

WEIR_API void weir_redis_sink_config_init(weir_redis_sink_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->url = RD_DEFAULT_URL;
    cfg->format = WEIR_REDIS_SINK_BYTES;
    cfg->field = "data";
    cfg->pipeline = 256;
    cfg->connect_timeout_ms = 2000;
    cfg->timeout_ms = 5000;
    cfg->retry_ms = 10000;
}

WEIR_API weir_term *weir_redis_sink(const char *name, const weir_redis_sink_config *cfg)
{
    char who[160];
    snprintf(who, sizeof who, "redis sink '%s'", name ? name : "(unnamed)");
    if (!cfg) {
        weir_set_error(-EINVAL, "%s: config is NULL", who);
        return NULL;
    }
    if (rd_bad_name(cfg->stream)) {
        weir_set_error(-EINVAL, "%s: stream is missing (a non-empty string is required)", who);
        return NULL;
    }
    if (cfg->format != WEIR_REDIS_SINK_BYTES && cfg->format != WEIR_REDIS_SINK_ENTRY) {
        weir_set_error(-EINVAL, "%s: format %d is neither WEIR_REDIS_SINK_BYTES nor _ENTRY", who,
                       (int)cfg->format);
        return NULL;
    }
    const char *field = cfg->field ? cfg->field : "data";
    if (cfg->format == WEIR_REDIS_SINK_BYTES && !*field) {
        weir_set_error(-EINVAL, "%s: field is empty", who);
        return NULL;
    }
    rd_sink *K = weir_calloc(1, sizeof *K);
    if (!K) {
        weir_set_error(-ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    if (rd_parse_url(who, cfg->url ? cfg->url : RD_DEFAULT_URL, &K->addr) < 0) {
        rd_sink_free(K);
        return NULL;
    }
    if (!rd_dup(&K->password_env, cfg->password_env) || !rd_dup(&K->stream, cfg->stream) ||
        !rd_dup(&K->field, field)) {
        rd_sink_free(K);
        weir_set_error(-ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    K->format = cfg->format;
    K->field_len = strlen(K->field);
    if (cfg->maxlen)
        snprintf(K->maxlen, sizeof K->maxlen, "%llu", (unsigned long long)cfg->maxlen);
    /* the fixed part of every XADD, formatted once (through the command
     * buffer, then moved) */
    size_t sl = strlen(K->stream);
    if (rd_sink_room(K, sl + 128) < 0 || !(K->head = weir_malloc(sl + 128))) {
        rd_sink_free(K);
        weir_set_error(-ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    rd_sink_arg(K, "XADD", 4);
    rd_sink_arg(K, K->stream, sl);
    K->head_args = 3;
    if (K->maxlen[0]) {
        rd_sink_arg(K, "MAXLEN", 6);
        rd_sink_arg(K, "~", 1);
        rd_sink_arg(K, K->maxlen, strlen(K->maxlen));
        K->head_args += 3;
    }
    rd_sink_arg(K, "*", 1);
    memcpy(K->head, K->cmds, K->len);
    K->head_len = K->len;
    K->len = 0;
    K->pipeline = cfg->pipeline ? cfg->pipeline : 1;
    K->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1;
    K->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 1;
    K->retry_ms = cfg->retry_ms;
    weir_term *t = weir_batch_sink(name, WEIR_VARSIZE, rd_sink_batch, K);
    if (!t) {
        rd_sink_free(K);
        return NULL;
    }
    t = weir_term_on_free(t, rd_sink_free);
    t = weir_term_on_finish(t, rd_sink_finish);
    return weir_term_on_barrier(t, rd_sink_barrier);
}
