/*
 * weir-bench redis: Redis Streams end to end (issue 13) on a redis-server the
 * benchmark starts for itself (tests/common/redis_server.h: 127.0.0.1, a free
 * port, no persistence, killed at the end).
 *
 * The input stream holds --entries entries ("i" = the index, "v" = --value
 * bytes), written once. Every run reads all of it through a fresh consumer
 * group with --consumers processes (fork(2): each process is what a machine
 * would run), transforms each entry (FNV-1a of "v") and appends one result
 * ("i", "h" = the hash in hex) to an output stream emptied before the run.
 * The parent starts the processes together (a pipe), then polls XLEN of the
 * output (and XPENDING of the group) every 2 ms: the time is from the start
 * to the last result stored; every run is checked afterwards (each index
 * exactly once, the right hash).
 *
 * Variants (each process):
 *   plain        a hiredis loop, one round trip per batch: the XADDs of
 *                batch k-1 (the transform's results), the XACK of batch k-2
 *                (whose XADDs were answered) and the XREADGROUP COUNT b of
 *                batch k, pipelined
 *   plain-noack  the same with XREADGROUP ... NOACK and no XACK
 *   weir         weir_redis_source (batch b, no checkpoints: NOACK) -> a
 *                weir_map (the transform, entry layout in and out) ->
 *                weir_redis_sink (ENTRY, pipeline --pipeline), on a runtime
 *                of --workers workers (default 1)
 *   weir-ack     the same without NOACK: each batch acknowledged once the
 *                source emitted it (the server's work of an acknowledged
 *                read, without checkpoints: weir-ckpt's baseline)
 *   weir-ckpt    the same with a checkpoint barrier every --every entries
 *                (default 1000): XACK after the barrier passed the sink
 * The variants' runs are interleaved, run k of each before run k + 1.
 * Extras: entries_per_s, vs_plain (entries/s over plain's at the same
 * process count), lag_med / lag_max (entries read but not acknowledged,
 * XPENDING sampled every 2 ms; 0 for the NOACK variants), cpu_us (CPU time
 * of the processes per entry, getrusage of the reaped children) and srv_us
 * (redis-server's, /proc/PID/stat over the timed part).
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tests/common/redis_server.h"
#include "bench.h"
#include "weir.h"
#include "weir/redis.h"

enum { RV_PLAIN, RV_PLAIN_NOACK, RV_WEIR, RV_WEIR_ACK, RV_WEIR_CKPT, RV_N };
static const char *const rv_names[RV_N] = {"plain", "plain-noack", "weir", "weir-ack", "weir-ckpt"};

#define RB_MAXC 8

typedef struct rb_cfg {
    uint64_t entries;
    unsigned consumers[RB_MAXC];
    size_t nconsumers;
    unsigned batch, pipeline, value;
    uint64_t every;
    unsigned workers;
    int spin; /* -1: the runtime's default (or WEIR_SPIN) */
} rb_cfg;

static redis_server rb_srv;

static uint64_t rb_fnv(const void *d, size_t n)
{
    const unsigned char *p = d;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h;
}

/* ---- plain: the hiredis loop ---------------------------------------------- */

static int rb_reply(redisContext *c, int type)
{
    redisReply *r;
    if (redisGetReply(c, (void **)&r) != REDIS_OK)
        return -1;
    int ok = r->type == type;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/*
 * One round trip per batch: the XACK of batch k-2 (whose XADDs were
 * answered in the round before) and the XADDs of batch k-1 go out, then the
 * XREADGROUP of batch k; the replies come back in that order. An entry is
 * acknowledged only after its result was stored, as weir-ckpt does.
 */
static int rb_plain(const rb_cfg *cfg, const char *group, const char *consumer, bool noack)
{
    redisContext *c = redis_server_connect(&rb_srv);
    if (!c)
        return 1;
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%u", cfg->batch);
    char(*cur)[48] = malloc((size_t)cfg->batch * sizeof *cur); /* batch k-1: XADDs in flight */
    const char **argv = malloc((3 + (size_t)cfg->batch) * sizeof *argv);
    size_t ncur = 0, inflight_xadd = 0;
    bool inflight_xack = false;
    int rc = 0;
    for (;;) {
        const char *rargv[10] = {"XREADGROUP", "GROUP", group, consumer, "COUNT", cnt};
        int ra = 6;
        if (noack)
            rargv[ra++] = "NOACK";
        rargv[ra++] = "STREAMS";
        rargv[ra++] = "in";
        rargv[ra++] = ">";
        redisAppendCommandArgv(c, ra, rargv, NULL);
        /* the replies, in the order of the commands: XACK, XADDs, XREADGROUP */
        if (inflight_xack)
            rc = rb_reply(c, REDIS_REPLY_INTEGER);
        inflight_xack = false;
        for (; inflight_xadd && rc == 0; inflight_xadd--)
            rc = rb_reply(c, REDIS_REPLY_STRING);
        redisReply *r = NULL;
        if (rc == 0 && (redisGetReply(c, (void **)&r) != REDIS_OK ||
                        (r->type != REDIS_REPLY_ARRAY && r->type != REDIS_REPLY_NIL)))
            rc = -1;
        if (rc) {
            if (r)
                freeReplyObject(r);
            break;
        }
        /* batch k-1's results are stored: acknowledge it with this round */
        if (!noack && ncur) {
            argv[0] = "XACK";
            argv[1] = "in";
            argv[2] = group;
            for (size_t k = 0; k < ncur; k++)
                argv[3 + k] = cur[k];
            redisAppendCommandArgv(c, (int)(3 + ncur), argv, NULL);
            inflight_xack = true;
        }
        ncur = 0;
        redisReply *es = r->type == REDIS_REPLY_ARRAY ? r->element[0]->element[1] : NULL;
        size_t n = es ? es->elements : 0;
        for (size_t k = 0; k < n; k++) {
            redisReply *e = es->element[k], *fv = e->element[1];
            const char *iv = NULL, *vv = NULL;
            size_t il = 0, vl = 0;
            for (size_t j = 0; j + 1 < fv->elements; j += 2) {
                if (strcmp(fv->element[j]->str, "i") == 0) {
                    iv = fv->element[j + 1]->str;
                    il = fv->element[j + 1]->len;
                } else if (strcmp(fv->element[j]->str, "v") == 0) {
                    vv = fv->element[j + 1]->str;
                    vl = fv->element[j + 1]->len;
                }
            }
            char h[20];
            int hl = snprintf(h, sizeof h, "%016" PRIx64, rb_fnv(vv, vl));
            const char *xa[7] = {"XADD", "out", "*", "i", iv, "h", h};
            size_t xl[7] = {4, 3, 1, 1, il, 1, (size_t)hl};
            redisAppendCommandArgv(c, 7, xa, xl);
            inflight_xadd++;
            if (!noack)
                snprintf(cur[ncur++], 48, "%s", e->element[0]->str);
        }
        freeReplyObject(r);
        if (n == 0) {
            /* the stream was written before the run: nothing more comes */
            if (inflight_xack)
                rc = rb_reply(c, REDIS_REPLY_INTEGER);
            break;
        }
    }
    free(cur);
    free(argv);
    redisFree(c);
    return rc ? 1 : 0;
}

/* ---- weir: source -> map -> sink ----------------------------------------- */

typedef struct rb_map {
    unsigned char buf[256];
} rb_map;

static void rb_transform(void *state, const void *in, void *out)
{
    rb_map *m = state;
    const void *iv = "", *vv = "";
    size_t il = 0, vl = 0;
    weir_redis_field(in, "i", &iv, &il);
    weir_redis_field(in, "v", &vv, &vl);
    char h[20];
    int hl = snprintf(h, sizeof h, "%016" PRIx64, rb_fnv(vv, vl));
    weir_redis_writer w;
    weir_redis_writer_init(&w, m->buf, sizeof m->buf, NULL, 0);
    weir_redis_writer_add(&w, "i", 1, iv, il);
    weir_redis_writer_add(&w, "h", 1, h, (size_t)hl);
    size_t len = 0;
    weir_redis_writer_finish(&w, &len); /* "i" is at most 20 digits: it fits */
    weir_bytes *b = out;
    b->data = m->buf;
    b->len = len;
}

static int rb_weir(const rb_cfg *cfg, const char *group, const char *consumer, int variant,
                   int go_fd)
{
    weir_config rc;
    weir_config_init(&rc);
    weir_config_from_env(&rc); /* WEIR_SPIN, WEIR_AFFINITY, ... */
    rc.workers = cfg->workers;
    if (cfg->spin >= 0)
        rc.spin = (unsigned)cfg->spin;
    rc.print_stats = false;
    weir_runtime *rt;
    if (weir_runtime_create(&rc, &rt) < 0) {
        fprintf(stderr, "weir-bench: redis: %s\n", weir_last_error());
        return 1;
    }
    weir_redis_source_config sc;
    weir_redis_source_config_init(&sc);
    sc.url = rb_srv.url;
    sc.stream = "in";
    sc.group = group;
    sc.consumer = consumer;
    sc.batch = cfg->batch;
    sc.block_ms = 20;
    sc.end_idle_ms = 50;
    sc.claim_idle_ms = 600000; /* no crash here: no claims during the run */
    if (variant == RV_WEIR_CKPT)
        sc.checkpoint_every = cfg->every;
    sc.ack_after_emit = variant == RV_WEIR_ACK;
    weir_redis_sink_config kc;
    weir_redis_sink_config_init(&kc);
    kc.url = rb_srv.url;
    kc.stream = "out";
    kc.format = WEIR_REDIS_SINK_ENTRY;
    kc.pipeline = cfg->pipeline;
    rb_map m;
    weir_term *t = WEIR_SEQ(weir_redis_source("src", &sc),
                            weir_map("transform", WEIR_VARSIZE, WEIR_VARSIZE, rb_transform, &m),
                            weir_redis_sink("out", &kc));
    weir_pipeline_config pc;
    weir_pipeline_config_init(&pc);
    pc.print_stats = false;
    weir_pipeline *p = NULL;
    int err = t ? weir_pipeline_create(rt, t, &pc, &p) : -EINVAL;
    if (err == 0) {
        char b;
        if (read(go_fd, &b, 1) != 1) /* the start, for every process at once */
            err = -EIO;
        else
            err = weir_pipeline_run(p);
        if (err < 0)
            fprintf(stderr, "weir-bench: redis %s: %s\n", consumer, weir_pipeline_error(p));
    } else {
        fprintf(stderr, "weir-bench: redis: %s\n", weir_last_error());
        weir_term_destroy(t);
    }
    weir_pipeline_destroy(p);
    weir_runtime_destroy(rt);
    return err == 0 ? 0 : 1;
}

/* ---- one run -------------------------------------------------------------- */

static int rb_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Every index 0..n-1 exactly once in "out", with the right hash. */
static int rb_verify(redisContext *c, const rb_cfg *cfg, const uint64_t *want)
{
    unsigned char *seen = calloc(cfg->entries, 1);
    char start[64] = "-";
    uint64_t n = 0;
    int bad = 0;
    for (;;) {
        redisReply *r = redisCommand(c, "XRANGE out %s + COUNT 5000", start);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            bad = 1;
            break;
        }
        for (size_t k = 0; k < r->elements; k++) {
            redisReply *fv = r->element[k]->element[1];
            uint64_t i = fv->elements == 4 ? strtoull(fv->element[1]->str, NULL, 10) : UINT64_MAX;
            uint64_t h = fv->elements == 4 ? strtoull(fv->element[3]->str, NULL, 16) : 0;
            if (i >= cfg->entries || seen[i]++ || h != want[i])
                bad = 1;
            n++;
        }
        size_t m = r->elements;
        if (m)
            snprintf(start, sizeof start, "(%s", r->element[m - 1]->element[0]->str);
        freeReplyObject(r);
        if (m < 5000)
            break;
    }
    free(seen);
    if (n != cfg->entries)
        bad = 1;
    if (bad)
        fprintf(stderr,
                "weir-bench: redis: the output has %" PRIu64 " results, %" PRIu64
                " expected, or wrong ones\n",
                n, cfg->entries);
    return bad;
}

typedef struct rb_result {
    uint64_t ns;
    uint64_t lag_med, lag_max;
    uint64_t cpu_ns; /* the processes' user + system time */
    uint64_t srv_ns; /* the server's, during the run */
} rb_result;

/* User + system time of process `pid` (/proc/PID/stat), in ns; 0 if unknown. */
static uint64_t rb_proc_cpu_ns(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (ut + st) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static uint64_t rb_children_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static int rb_once(const rb_cfg *cfg, int v, unsigned nproc, unsigned run, const uint64_t *want,
                   rb_result *res)
{
    redisContext *c = redis_server_connect(&rb_srv);
    if (!c)
        return 1;
    char group[32];
    snprintf(group, sizeof group, "g%d-%u-%u", v, nproc, run);
    freeReplyObject(redisCommand(c, "DEL out"));
    redisReply *r = redisCommand(c, "XGROUP CREATE in %s 0", group);
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return 1;
    }
    int go[2];
    if (pipe(go) != 0) {
        redisFree(c);
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    uint64_t cpu0 = rb_children_cpu_ns();
    pid_t pids[RB_MAXC];
    for (unsigned k = 0; k < nproc; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            /* the server is the parent's: a child's exit or signal leaves it */
            memset((void *)redis_server_pids, 0, sizeof redis_server_pids);
            close(go[1]);
            char consumer[32];
            snprintf(consumer, sizeof consumer, "c%u", k);
            int rc;
            if (v == RV_WEIR || v == RV_WEIR_ACK || v == RV_WEIR_CKPT) {
                rc = rb_weir(cfg, group, consumer, v, go[0]);
            } else {
                char b;
                rc = read(go[0], &b, 1) == 1 ? rb_plain(cfg, group, consumer, v == RV_PLAIN_NOACK)
                                             : 1;
            }
            _exit(rc);
        }
    }
    close(go[0]);
    /* let every process get ready (a runtime, a compiled pipeline) */
    bench_sleep(0.2);
    size_t cap = 1 << 16, nlag = 0;
    uint64_t *lag = malloc(cap * sizeof *lag);
    char bytes[RB_MAXC];
    memset(bytes, 'g', sizeof bytes);
    uint64_t srv0 = rb_proc_cpu_ns(rb_srv.pid);
    uint64_t t0 = bench_now_ns(), t1 = 0;
    if (write(go[1], bytes, nproc) != (ssize_t)nproc)
        t1 = 1;
    int rc = 0;
    while (!t1) {
        redisAppendCommand(c, "XLEN out");
        redisAppendCommand(c, "XPENDING in %s", group);
        redisReply *xl = NULL, *xp = NULL;
        if (redisGetReply(c, (void **)&xl) != REDIS_OK ||
            redisGetReply(c, (void **)&xp) != REDIS_OK) {
            rc = 1;
            break;
        }
        uint64_t now = bench_now_ns();
        long long len = xl->type == REDIS_REPLY_INTEGER ? xl->integer : -1;
        if (xp->type == REDIS_REPLY_ARRAY && xp->elements == 4 && nlag < cap)
            lag[nlag++] = (uint64_t)xp->element[0]->integer;
        freeReplyObject(xl);
        freeReplyObject(xp);
        if (len >= (long long)cfg->entries) {
            t1 = now;
            break;
        }
        for (unsigned k = 0; k < nproc; k++) { /* a process that failed: stop */
            int st;
            if (pids[k] > 0 && waitpid(pids[k], &st, WNOHANG) == pids[k]) {
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    fprintf(stderr, "weir-bench: redis: process %u failed\n", k);
                    rc = 1;
                }
                pids[k] = -1;
            }
        }
        if (rc)
            break;
        if (now - t0 > UINT64_C(600) * 1000000000u) {
            fprintf(stderr, "weir-bench: redis: no end after 600 s\n");
            rc = 1;
            break;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    res->srv_ns = rb_proc_cpu_ns(rb_srv.pid) - srv0;
    close(go[1]);
    for (unsigned k = 0; k < nproc; k++) {
        int st;
        if (pids[k] < 0)
            continue; /* reaped above */
        if (rc)
            kill(pids[k], SIGKILL);
        if (waitpid(pids[k], &st, 0) != pids[k] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 1;
    }
    res->cpu_ns = rb_children_cpu_ns() - cpu0;
    if (rc == 0)
        rc = rb_verify(c, cfg, want);
    res->ns = t1 - t0;
    qsort(lag, nlag, sizeof *lag, rb_cmp_u64);
    res->lag_med = nlag ? lag[nlag / 2] : 0;
    res->lag_max = nlag ? lag[nlag - 1] : 0;
    free(lag);
    freeReplyObject(redisCommand(c, "XGROUP DESTROY in %s", group));
    redisFree(c);
    return rc;
}

/* ---- options, the input, the table ---------------------------------------- */

static void rb_help(void)
{
    printf("weir-bench redis: Redis Streams end to end, source -> map -> sink, on a private\n"
           "redis-server (127.0.0.1, a free port, no persistence), N processes in one group\n"
           "  --entries N       entries in the input stream (default 200k)\n"
           "  --consumers LIST  process counts, e.g. 1,2,3 (default 1,2,3; up to %d)\n"
           "  --batch B         XREADGROUP COUNT (default 128)\n"
           "  --pipeline P      XADDs sent before their replies are read (default 256)\n"
           "  --value V         bytes of each entry's value (default 64)\n"
           "  --every K         weir-ckpt: a checkpoint barrier every K entries (default 1000)\n"
           "  --workers W       workers of each weir process (default 1)\n"
           "  --spin S          failed steal rounds before a weir worker parks (default: the\n"
           "                    runtime's, or WEIR_SPIN); 0 parks at once: an idle worker\n"
           "                    then leaves the cores to redis-server and the source thread\n"
           "  variants          plain, plain-noack, weir, weir-ack, weir-ckpt (runs interleaved)\n"
           "  Each process is forked; the time runs from the start of all of them to the\n"
           "  last result stored (XLEN polled every 2 ms). Extras: entries_per_s, vs_plain,\n"
           "  lag_med / lag_max (entries read, not yet acknowledged: XPENDING samples),\n"
           "  cpu_us / srv_us: CPU time per entry of the processes (all of them, to their\n"
           "  exit) and of redis-server (start to the last result), medians.\n",
           RB_MAXC);
}

static int rb_parse(const bench_opts *o, int argc, char **argv, rb_cfg *cfg)
{
    cfg->entries = o->has_n ? o->n : 200000;
    cfg->consumers[0] = 1;
    cfg->consumers[1] = 2;
    cfg->consumers[2] = 3;
    cfg->nconsumers = 3;
    cfg->batch = 128;
    cfg->pipeline = 256;
    cfg->value = 64;
    cfg->every = 1000;
    cfg->workers = o->workers ? o->workers : 1;
    cfg->spin = -1;
    for (int i = 1; i < argc; i++) {
        const char *val;
        int m;
        uint64_t u;
        if ((m = bench_opt_value(argc, argv, &i, "--entries", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0 || u > 100000000)
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--entries '%s': 1..100M", val);
            cfg->entries = u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--consumers", &val)) != 0) {
            if (m < 0)
                return BENCH_EXIT_USAGE;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", val);
            cfg->nconsumers = 0;
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (cfg->nconsumers == RB_MAXC || !bench_parse_u64(tok, &u) || u == 0 ||
                    u > RB_MAXC)
                    return bench_usage_error("--consumers '%s': a list of 1..%d", val, RB_MAXC);
                cfg->consumers[cfg->nconsumers++] = (unsigned)u;
            }
            if (cfg->nconsumers == 0)
                return bench_usage_error("--consumers: empty list");
        } else if ((m = bench_opt_value(argc, argv, &i, "--batch", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0 || u > 100000)
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--batch '%s': 1..100k", val);
            cfg->batch = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--pipeline", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0 || u > 100000)
                return m < 0 ? BENCH_EXIT_USAGE
                             : bench_usage_error("--pipeline '%s': 1..100k", val);
            cfg->pipeline = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--value", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u > 1000000)
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--value '%s': 0..1M", val);
            cfg->value = (unsigned)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--spin", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u > 1000000)
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--spin '%s': 0..1M", val);
            cfg->spin = (int)u;
        } else if ((m = bench_opt_value(argc, argv, &i, "--every", &val)) != 0) {
            if (m < 0 || !bench_parse_u64(val, &u) || u == 0)
                return m < 0 ? BENCH_EXIT_USAGE : bench_usage_error("--every '%s': >= 1", val);
            cfg->every = u;
        } else {
            return bench_usage_error("redis: unknown option or argument '%s'", argv[i]);
        }
    }
    return 0;
}

/* Fill "in" with the entries; want[i] = the hash of entry i's value. */
static int rb_fill(const rb_cfg *cfg, uint64_t *want)
{
    redisContext *c = redis_server_connect(&rb_srv);
    if (!c)
        return 1;
    char *v = malloc(cfg->value + 1);
    uint64_t x = 88172645463325252ull; /* xorshift64: the values */
    unsigned pending = 0;
    int rc = 0;
    for (uint64_t i = 0; i < cfg->entries && !rc; i++) {
        for (unsigned k = 0; k < cfg->value; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v[k] = (char)('a' + x % 26);
        }
        want[i] = rb_fnv(v, cfg->value);
        char num[24];
        int nl = snprintf(num, sizeof num, "%" PRIu64, i);
        const char *argv[7] = {"XADD", "in", "*", "i", num, "v", v};
        size_t lens[7] = {4, 2, 1, 1, (size_t)nl, 1, cfg->value};
        redisAppendCommandArgv(c, 7, argv, lens);
        if (++pending == 1000 || i + 1 == cfg->entries) {
            for (; pending; pending--) {
                redisReply *r;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                    rc = 1;
                    break;
                }
                freeReplyObject(r);
            }
        }
    }
    free(v);
    redisFree(c);
    return rc;
}

static void rb_print(const bench_opts *o, const char *variant, unsigned nproc, const rb_cfg *cfg,
                     uint64_t median, uint64_t minv, unsigned runs, double plain_ns,
                     const rb_result *lag)
{
    double eps = (double)cfg->entries * 1e9 / (double)median;
    double vs = plain_ns > 0 ? plain_ns / (double)median : 0;
    if (o->json) {
        printf("{\"bench\":\"redis\",\"variant\":\"%s\",\"workers\":%u,\"consumers\":%u,"
               "\"n\":%" PRIu64 ",\"spin\":%d,\"batch\":%u,\"pipeline\":%u,\"every\":%" PRIu64
               ",\"median_ns\":%" PRIu64 ",\"min_ns\":%" PRIu64 ",\"runs\":%u,"
               "\"entries_per_s\":%.0f,\"vs_plain\":%.4f,\"lag_med\":%" PRIu64
               ",\"lag_max\":%" PRIu64 ",\"cpu_us\":%.3f,\"srv_us\":%.3f}\n",
               variant, cfg->workers, nproc, cfg->entries, cfg->spin, cfg->batch, cfg->pipeline,
               cfg->every, median, minv, runs, eps, vs, lag->lag_med, lag->lag_max,
               (double)lag->cpu_ns / 1e3 / (double)cfg->entries,
               (double)lag->srv_ns / 1e3 / (double)cfg->entries);
    } else {
        printf("redis  %-12s %9u %10" PRIu64 " %11.2f %11.2f %13.0f %9.3f %8" PRIu64 " %8" PRIu64
               " %7.2f %7.2f\n",
               variant, nproc, cfg->entries, (double)median / 1e6, (double)minv / 1e6, eps, vs,
               lag->lag_med, lag->lag_max, (double)lag->cpu_ns / 1e3 / (double)cfg->entries,
               (double)lag->srv_ns / 1e3 / (double)cfg->entries);
    }
    fflush(stdout);
}

int bench_redis(const bench_opts *o, int argc, char **argv)
{
    if (o->help) {
        rb_help();
        return 0;
    }
    rb_cfg cfg;
    int rc = rb_parse(o, argc, argv, &cfg);
    if (rc == 0)
        rc = bench_check_variants(o, rv_names, RV_N);
    if (rc != 0)
        return rc;
    if (redis_server_start(&rb_srv, NULL) != 0) {
        fprintf(stderr, "weir-bench: redis: cannot start redis-server (install it, or set "
                        "REDIS_SERVER)\n");
        return BENCH_EXIT_FAIL;
    }
    uint64_t *want = malloc(cfg.entries * sizeof *want);
    uint64_t t0 = bench_now_ns();
    if (!want || rb_fill(&cfg, want) != 0) {
        fprintf(stderr, "weir-bench: redis: cannot fill the input stream\n");
        redis_server_stop(&rb_srv);
        free(want);
        return BENCH_EXIT_FAIL;
    }
    unsigned runs = o->has_runs ? o->runs : 3;
    bench_note(o,
               "redis: %" PRIu64 " entries of %u bytes written in %.2f s; batch %u, pipeline %u, "
               "checkpoint every %" PRIu64 ", %u worker(s) per weir process (spin %s), runs=%u "
               "warmup=%u cpus=%u; processes are forked, time = start to the last result stored",
               cfg.entries, cfg.value, (double)(bench_now_ns() - t0) / 1e9, cfg.batch, cfg.pipeline,
               cfg.every, cfg.workers, cfg.spin < 0 ? "default" : "--spin", runs, o->warmup,
               bench_online_cpus());
    if (!o->json)
        printf("bench  variant      consumers    entries   median_ms      min_ms "
               "entries_per_s  vs_plain  lag_med  lag_max  cpu_us  srv_us\n");
    /* The variants' runs are interleaved (run k of every variant, then run
     * k + 1): a load that drifts on this shared machine falls on all of them. */
    int status = 0;
    unsigned run_id = 0, n = runs < 64 ? runs : 64;
    for (size_t ci = 0; ci < cfg.nconsumers && status == 0; ci++) {
        unsigned nproc = cfg.consumers[ci];
        static uint64_t ns[RV_N][64], lmed[RV_N][64], cpu[RV_N][64], srv[RV_N][64];
        uint64_t lmax[RV_N] = {0};
        rb_result res;
        for (unsigned k = 0; k < o->warmup + n && status == 0; k++)
            for (int v = 0; v < RV_N && status == 0; v++) {
                if (!bench_variant_selected(o, rv_names[v]))
                    continue;
                if (rb_once(&cfg, v, nproc, run_id++, want, &res) != 0) {
                    status = BENCH_EXIT_FAIL;
                    break;
                }
                if (k < o->warmup)
                    continue;
                unsigned j = k - o->warmup;
                ns[v][j] = res.ns;
                lmed[v][j] = res.lag_med;
                cpu[v][j] = res.cpu_ns;
                srv[v][j] = res.srv_ns;
                if (res.lag_max > lmax[v])
                    lmax[v] = res.lag_max;
            }
        double plain_ns = 0;
        for (int v = 0; v < RV_N && status == 0; v++) {
            if (!bench_variant_selected(o, rv_names[v]))
                continue;
            rb_result agg;
            agg.ns = 0;
            agg.lag_max = lmax[v];
            agg.lag_med = bench_median(lmed[v], n);
            agg.cpu_ns = bench_median(cpu[v], n);
            agg.srv_ns = bench_median(srv[v], n);
            uint64_t minv = bench_min(ns[v], n), median = bench_median(ns[v], n);
            if (v == RV_PLAIN)
                plain_ns = (double)median;
            rb_print(o, rv_names[v], nproc, &cfg, median, minv, n, plain_ns, &agg);
        }
    }
    if (status)
        fprintf(stderr, "weir-bench: redis: a run failed\n");
    redis_server_stop(&rb_srv);
    free(want);
    return status;
}
