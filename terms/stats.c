/*
 * weir terms — monitoring: per-term, per-stream and per-pipeline counters,
 * and the WEIR_STATS=1 table.
 *
 * Counters are written by the one activation that owns them (relaxed
 * stores at the end of each activation) and read here with relaxed loads:
 * a reader sees each counter at some recent value, not one instant.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

WEIR_API unsigned weir_pipeline_term_count(const weir_pipeline *p)
{
    return p ? p->nterms : 0;
}

static uint64_t weir__ld(const _Atomic uint64_t *a)
{
    /* relaxed: monitoring counters (see the file comment). */
    return atomic_load_explicit((_Atomic uint64_t *)a, memory_order_relaxed);
}

/* How long a stage has been runnable without running, now (0: not queued).
 * An activation counts its wait when it starts, so a stage starved for good
 * (every worker busy with stages that never wait) would never show: the
 * readers add the wait in progress. It is counted for real once the stage
 * runs (and queued_at is cleared), so nothing is counted twice. */
static uint64_t weir__wait_now(const weir__stage *s, uint64_t now)
{
    uint64_t q = weir__ld(&s->queued_at);
    return q && now > q ? now - q : 0;
}

WEIR_API int weir_pipeline_term_stats(const weir_pipeline *p, unsigned i, weir_term_stats *out)
{
    if (!p || !out || i >= p->nterms)
        return weir__terms_error(-EINVAL, "weir_pipeline_term_stats: bad argument (term %u of %u)",
                                 i, p ? p->nterms : 0);
    const weir_term *t = p->terms[i];
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->kind = t->kind_name;
    if (!t->stage) {
        out->stage = UINT32_MAX; /* stop: never runs */
        return 0;
    }
    const weir__stage *s = t->stage;
    const weir__node *n = &s->nodes[t->node];
    if (s->par && s->par->nshards && t->group && t->group->kind == WEIR__K_KEYED) {
        /* a shard: its own context counts its records and time */
        const weir__stage *cx = s->par->shards[t->shard].ctx;
        n = &cx->nodes[0];
        out->stage = s->id;
        out->records_in = weir__ld(&n->st_in);
        out->records_out = weir__ld(&n->st_out);
        out->activations = weir__ld(&cx->st_activations);
        out->ns = weir__ld(&cx->st_ns);
        weir__spawn_shard_stats(t, &out->live, &out->spawned, &out->ended);
        return 0;
    }
    out->stage = s->id;
    out->records_in = weir__ld(&n->st_in);
    out->records_out = weir__ld(&n->st_out);
    out->activations = weir__ld(&s->st_activations);
    out->ns = p->cfg.profile ? weir__ld(&n->st_ns) : weir__ld(&s->st_ns);
    out->starvations = weir__ld(&s->st_starvations);
    out->max_wait_ns = weir__ld(&s->st_max_wait);
    if (s->par && t->node < s->par->end) {
        const weir__par *pa = s->par;
        /* relaxed: monitoring counters written by the dispatcher */
        out->width = pa->width;
        out->in_flight = atomic_load_explicit(&pa->st_running, memory_order_relaxed);
        out->max_in_flight = atomic_load_explicit(&pa->st_max_running, memory_order_relaxed);
        out->batches = weir__ld(&pa->st_batches);
        out->reorder_depth = weir__ld(&pa->st_reorder);
        out->max_reorder_depth = weir__ld(&pa->st_max_reorder);
    }
    uint64_t waiting = weir__wait_now(s, weir__terms_now_ns());
    if (waiting > out->max_wait_ns)
        out->max_wait_ns = waiting;
    if (p->cfg.starvation_ns && waiting > p->cfg.starvation_ns)
        out->starvations++;
    return 0;
}

WEIR_API int weir_pipeline_find_term(const weir_pipeline *p, const char *name)
{
    if (!p || !name)
        return -EINVAL;
    for (unsigned i = 0; i < p->nterms; i++)
        if (strcmp(p->terms[i]->name, name) == 0)
            return (int)i;
    return -ENOENT;
}

WEIR_API unsigned weir_pipeline_stream_count(const weir_pipeline *p)
{
    return p ? p->nstreams : 0;
}

WEIR_API int weir_pipeline_stream_stats(const weir_pipeline *p, unsigned i, weir_stream_stats *out)
{
    if (!p || !out || i >= p->nstreams)
        return weir__terms_error(-EINVAL,
                                 "weir_pipeline_stream_stats: bad argument (stream %u of %u)", i,
                                 p ? p->nstreams : 0);
    const weir__stream *s = p->streams[i];
    memset(out, 0, sizeof *out);
    out->name = s->name;
    out->consumers = s->ncons;
    out->capacity = s->cap;
    out->records = weir__ld(&s->head);
    out->depth = weir__stream_depth(s);
    out->max_depth = weir__ld(&s->max_depth);
    /* acquire: a started pipeline's streams (the phase's release in start) */
    if (atomic_load_explicit(&((weir_pipeline *)p)->phase, memory_order_acquire) == WEIR__P_STARTED)
        out->stalled = weir__stream_stalled((weir__stream *)s, weir__terms_now_ns());
    out->stalls = weir__ld(&s->stalls);
    if (s->var) {
        out->varsize = true;
        out->byte_capacity = s->bcap;
        out->bytes = weir__ld(&s->st_bytes);
        out->byte_depth = weir__stream_bdepth(s);
        out->max_byte_depth = weir__ld(&s->max_bdepth);
    }
    return 0;
}

WEIR_API void weir_pipeline_stats_get(const weir_pipeline *p, weir_pipeline_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    out->terms = p->nterms;
    out->stages = p->nstages;
    out->streams = p->nstreams;
    out->threads = p->nthreads;
    /* a parallel or keyed stage's own threads (threads mode), started at
     * its first dispatch; relaxed: a count its dispatcher publishes */
    for (unsigned k = 0; k < p->nstages; k++)
        if (p->stages[k]->par)
            out->threads +=
                atomic_load_explicit(&p->stages[k]->par->st_threads, memory_order_relaxed);
    out->starvations = weir__ld(&((weir_pipeline *)p)->starvations);
    uint64_t now = weir__terms_now_ns();
    for (unsigned k = 0; k < p->nstages; k++) {
        out->activations += weir__ld(&p->stages[k]->st_activations);
        /* A wait in progress (see weir__wait_now). */
        if (p->cfg.starvation_ns && weir__wait_now(p->stages[k], now) > p->cfg.starvation_ns)
            out->starvations++;
    }
    /* acquire: a started pipeline's streams (the phase's release in start) */
    bool started =
        atomic_load_explicit(&((weir_pipeline *)p)->phase, memory_order_acquire) == WEIR__P_STARTED;
    for (unsigned k = 0; k < p->nstreams; k++) {
        weir__stream *st = p->streams[k];
        if (started && weir__stream_stalled(st, now))
            out->stalled_streams++;
        out->input_starvations += weir__ld(&st->stalls);
    }
    out->starvations += out->input_starvations;
}

WEIR_API void weir_pipeline_print_stats(const weir_pipeline *p, FILE *f)
{
    if (!p || !f)
        return;
    weir_pipeline_stats ps;
    weir_pipeline_stats_get(p, &ps);
    fprintf(f,
            "weir pipeline: %u terms, %u stages, %u streams, %u threads, mode %s, batch %u, "
            "capacity %u, starvations %llu (of input %llu), stalled streams %u\n",
            ps.terms, ps.stages, ps.streams, ps.threads, weir_exec_mode_name(p->cfg.mode),
            p->cfg.batch, p->cfg.capacity, (unsigned long long)ps.starvations,
            (unsigned long long)ps.input_starvations, ps.stalled_streams);
    /* A 10 000-branch fan-out would print 20 000 lines: show the first rows
     * and a summary of the rest. */
    const unsigned max_rows = 64;
    fprintf(f, "  %-20s %-14s %6s %12s %12s %10s %12s %8s\n", "term", "kind", "stage", "in", "out",
            "activ", p->cfg.profile ? "ns(term)" : "ns(stage)", "starv");
    uint64_t rin = 0, rout = 0;
    for (unsigned i = 0; i < p->nterms; i++) {
        weir_term_stats ts;
        weir_pipeline_term_stats(p, i, &ts);
        rin += ts.records_in;
        rout += ts.records_out;
        if (i < max_rows)
            fprintf(f, "  %-20.20s %-14.14s %6d %12llu %12llu %10llu %12llu %8llu\n", ts.name,
                    ts.kind, ts.stage == UINT32_MAX ? -1 : (int)ts.stage,
                    (unsigned long long)ts.records_in, (unsigned long long)ts.records_out,
                    (unsigned long long)ts.activations, (unsigned long long)ts.ns,
                    (unsigned long long)ts.starvations);
    }
    if (p->nterms > max_rows)
        fprintf(f, "  ... %u more terms (all terms: %llu records in, %llu out)\n",
                p->nterms - max_rows, (unsigned long long)rin, (unsigned long long)rout);
    fprintf(f, "  %-20s %9s %10s %12s %8s %8s %7s\n", "stream", "consumers", "capacity", "records",
            "depth", "max", "stalls");
    for (unsigned i = 0; i < p->nstreams && i < max_rows; i++) {
        weir_stream_stats ss;
        weir_pipeline_stream_stats(p, i, &ss);
        fprintf(f, "  %-20.20s %9u %10llu %12llu %8llu %8llu %7llu%s\n", ss.name, ss.consumers,
                (unsigned long long)ss.capacity, (unsigned long long)ss.records,
                (unsigned long long)ss.depth, (unsigned long long)ss.max_depth,
                (unsigned long long)ss.stalls, ss.stalled ? " stalled" : "");
    }
    if (p->nstreams > max_rows)
        fprintf(f, "  ... %u more streams\n", p->nstreams - max_rows);
    /* Variable-size streams: their byte rings. */
    bool vheader = false;
    for (unsigned i = 0; i < p->nstreams && i < max_rows; i++) {
        weir_stream_stats ss;
        weir_pipeline_stream_stats(p, i, &ss);
        if (!ss.varsize)
            continue;
        if (!vheader) {
            fprintf(f, "  %-20s %12s %14s %12s %12s\n", "var stream", "byte cap", "bytes",
                    "byte depth", "max");
            vheader = true;
        }
        fprintf(f, "  %-20.20s %12llu %14llu %12llu %12llu\n", ss.name,
                (unsigned long long)ss.byte_capacity, (unsigned long long)ss.bytes,
                (unsigned long long)ss.byte_depth, (unsigned long long)ss.max_byte_depth);
    }
    /* Data-parallel stages (weir_parallel, weir_keyed): replicas and reorder
     * slots (keyed shards have their rows in the term table above). */
    bool header = false;
    for (unsigned k = 0; k < p->nstages; k++) {
        const weir__stage *s = p->stages[k];
        if (!s->par)
            continue;
        const weir__par *pa = s->par;
        if (!header) {
            fprintf(f, "  %-20s %6s %6s %10s %9s %9s %9s\n", "parallel stage", "width", "shards",
                    "batches", "in flight", "max", "max reord");
            header = true;
        }
        /* relaxed: monitoring counters written by the dispatcher */
        const weir_term *g = s->nodes[0].term->group; /* keyed: its own name */
        fprintf(f, "  %-20.20s %6u %6u %10llu %9u %9u %9llu\n",
                pa->nshards && g ? g->name : s->nodes[0].term->name, pa->width, pa->nshards,
                (unsigned long long)weir__ld(&pa->st_batches),
                atomic_load_explicit(&pa->st_running, memory_order_relaxed),
                atomic_load_explicit(&pa->st_max_running, memory_order_relaxed),
                (unsigned long long)weir__ld(&pa->st_max_reorder));
    }
    if (p->rt) {
        /* The pipeline's attachment keeps the handle valid after
         * weir_runtime_destroy(), but not the workers: once destroy has
         * begun, say so instead of reading their counters. (A live runtime
         * has at least one worker; a destroyed one reports 0.) */
        if (weir_runtime_stopping(p->rt)) {
            fprintf(f, "  worker utilisation: the runtime %s\n",
                    weir_runtime_workers(p->rt) ? "is being destroyed" : "was destroyed");
            return;
        }
        unsigned nw = weir_runtime_workers(p->rt);
        fprintf(f, "  worker utilisation (runtime-wide, busy / (busy + idle)):");
        for (unsigned w = 0; w < nw; w++) {
            weir_worker_stats st;
            if (weir_runtime_stats(p->rt, w, &st) < 0)
                continue;
            uint64_t tot = st.busy_ns + st.idle_ns;
            fprintf(f, " w%u %.0f%%", w, tot ? 100.0 * (double)st.busy_ns / (double)tot : 0.0);
        }
        fprintf(f, "\n");
    }
}
