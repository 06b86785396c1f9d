/*
 * A private redis-server for a test or a benchmark: started as a child
 * process on 127.0.0.1 on a free port (found by binding a socket to port 0),
 * without persistence, in a temporary directory, and never left behind:
 *
 *   - the child asks the kernel to kill it when its parent dies
 *     (PR_SET_PDEATHSIG), so not even a SIGKILL of the test leaks it;
 *   - every server started is killed and reaped by an atexit handler, and by
 *     a handler of SIGTERM, SIGINT, SIGHUP, SIGSEGV, SIGBUS and SIGABRT that
 *     then re-raises the signal with its default action.
 *
 *   redis_server s;
 *   if (redis_server_start(&s, NULL) != 0) -> no redis-server: skip
 *   ... s.url is "redis://127.0.0.1:PORT", s.port, s.dir ...
 *   redis_server_kill(&s);   // SIGKILL now (a crash), the directory stays
 *   redis_server_restart(&s) // the same port and arguments again
 *   redis_server_stop(&s);   // kill, reap, remove the directory
 *
 * The program to run is $REDIS_SERVER, else `redis-server` from PATH.
 * Header-only (static functions), for tests/ and benchmarks/; needs hiredis.
 */
#ifndef WEIR_TEST_REDIS_SERVER_H
#define WEIR_TEST_REDIS_SERVER_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define REDIS_SERVER_MAX   8
#define REDIS_SERVER_EXTRA 8

typedef struct redis_server {
    pid_t pid; /* 0: not running */
    int port;
    char dir[256];
    char url[64];
    char unix_path[300];                       /* "" unless started with a unix socket too */
    const char *extra[REDIS_SERVER_EXTRA + 1]; /* extra arguments, NULL-terminated */
} redis_server;

/* Every live server of the process, for the exit and signal handlers. */
static volatile pid_t redis_server_pids[REDIS_SERVER_MAX];

static inline void redis_server_kill_all(void)
{
    for (int i = 0; i < REDIS_SERVER_MAX; i++) {
        pid_t p = redis_server_pids[i];
        if (p > 0) {
            kill(p, SIGKILL);
            waitpid(p, NULL, 0);
            redis_server_pids[i] = 0;
        }
    }
}

static inline void redis_server_on_signal(int sig)
{
    /* kill(2) and waitpid(2) are async-signal-safe */
    redis_server_kill_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void redis_server_install_handlers(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    atexit(redis_server_kill_all);
    const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGSEGV, SIGBUS, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = redis_server_on_signal;
        sigemptyset(&sa.sa_mask);
        /* keep a handler someone else installed (a sanitizer's, Criterion's) */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            sigaction(sigs[i], &sa, NULL);
    }
}

static inline int redis_server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* True once the server answers PING on its port. */
static inline bool redis_server_ping(const redis_server *s)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && ((r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) ||
                   (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0));
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static inline void redis_server_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Start (or restart) the server on s->port. @return 0, or -1 when it does
 * not answer within 5 s (the port was taken, no redis-server). */
static inline int redis_server_spawn(redis_server *s)
{
    const char *prog = getenv("REDIS_SERVER");
    if (!prog || !*prog)
        prog = "redis-server";
    char port[16], log[300];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    const char *argv[32] = {"redis-server",
                            "--port",
                            port,
                            "--bind",
                            "127.0.0.1",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            s->dir,
                            "--daemonize",
                            "no",
                            "--logfile",
                            log,
                            "--protected-mode",
                            "no"};
    int argc = 17;
    for (int i = 0; s->extra[i] && argc < 31; i++)
        argv[argc++] = s->extra[i];
    argv[argc] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* die with the test, whatever kills it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp(prog, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < REDIS_SERVER_MAX; i++)
        if (redis_server_pids[i] == 0) {
            redis_server_pids[i] = pid;
            break;
        }
    for (int i = 0; i < 250; i++) { /* 5 s */
        if (redis_server_ping(s))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) { /* exited: port taken, no program */
            for (int j = 0; j < REDIS_SERVER_MAX; j++)
                if (redis_server_pids[j] == pid)
                    redis_server_pids[j] = 0;
            s->pid = 0;
            return -1;
        }
        redis_server_sleep_ms(20);
    }
    return -1;
}

/* Kill the server now (SIGKILL) and reap it; the directory stays. */
static inline void redis_server_kill(redis_server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    for (int i = 0; i < REDIS_SERVER_MAX; i++)
        if (redis_server_pids[i] == s->pid)
            redis_server_pids[i] = 0;
    s->pid = 0;
}

/* Remove the server's directory (its files: the log, a socket). */
static inline void redis_server_rmdir(redis_server *s)
{
    if (!s->dir[0])
        return;
    DIR *d = opendir(s->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char p[600];
            snprintf(p, sizeof p, "%s/%s", s->dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(s->dir);
    s->dir[0] = 0;
}

/**
 * Start a server. `extra`: more arguments (e.g. "--requirepass", "pw"), or
 * NULL; "--unixsocket" is added when `extra` holds "unix" as its first
 * element (the socket is s->unix_path). @return 0, or -1 (no redis-server,
 * or it did not start: skip the test).
 */
static inline int redis_server_start(redis_server *s, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    redis_server_install_handlers();
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/weir-redis.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = 0;
        return -1;
    }
    int n = 0;
    if (extra && extra[0] && strcmp(extra[0], "unix") == 0) {
        snprintf(s->unix_path, sizeof s->unix_path, "%s/redis.sock", s->dir);
        s->extra[n++] = "--unixsocket";
        s->extra[n++] = s->unix_path;
        extra++;
    }
    for (int i = 0; extra && extra[i] && n < REDIS_SERVER_EXTRA; i++)
        s->extra[n++] = extra[i];
    s->extra[n] = NULL;
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = redis_server_free_port();
        if (s->port <= 0)
            break;
        snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d", s->port);
        if (redis_server_spawn(s) == 0)
            return 0;
        redis_server_kill(s);
    }
    redis_server_rmdir(s);
    return -1;
}

/** Start again after redis_server_kill(), on the same port (empty: no
 *  persistence). @return 0 or -1. */
static inline int redis_server_restart(redis_server *s)
{
    redis_server_kill(s);
    return redis_server_spawn(s);
}

/** Kill, reap, remove the directory. Safe to call twice. */
static inline void redis_server_stop(redis_server *s)
{
    redis_server_kill(s);
    redis_server_rmdir(s);
}

/** A hiredis connection to the server (for setting up and checking). */
static inline redisContext *redis_server_connect(const redis_server *s)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, tv);
    return c;
}

#endif /* WEIR_TEST_REDIS_SERVER_H */
