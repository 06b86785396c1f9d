/*
 * weir_pipeline_dot(): the compiled stage graph in Graphviz DOT.
 *
 * One box per stage listing its fused terms in order (name and kind), with
 * the stage's head (what starts an activation: a pull source, a blocking
 * source on its own thread, one input stream, a merge or a zip); one note
 * per stream with its capacity and record size; an edge from the producing
 * stage to the stream, and one from the stream to each consumer, labelled
 * with the consumer's cursor. Everything read here is fixed at compile time
 * (weir_pipeline_create), so the function may run at any time before
 * weir_pipeline_destroy().
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

static void dot_str(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static const char *head_name(const weir__stage *s)
{
    switch (s->head) {
    case WEIR__H_PULL:
        return "pull source";
    case WEIR__H_BLOCKING:
        return "blocking source, own thread";
    case WEIR__H_INPUT:
        return "one input";
    case WEIR__H_MERGE:
        return "merge";
    case WEIR__H_ZIP:
        return "zip";
    }
    return "?";
}

static unsigned stream_index(const weir_pipeline *p, const weir__stream *st)
{
    for (unsigned i = 0; i < p->nstreams; i++)
        if (p->streams[i] == st)
            return i;
    return UINT32_MAX;
}

int weir_pipeline_dot(const weir_pipeline *p, FILE *f)
{
    if (!p || !f)
        return weir__terms_error(-EINVAL, "weir_pipeline_dot: NULL argument");
    static const char *const modes[] = {"pool", "threads", "hybrid"};
    unsigned mode = (unsigned)p->cfg.mode;
    fputs("digraph weir_pipeline {\n"
          "  rankdir=LR;\n"
          "  node [fontname=\"Helvetica\", fontsize=10];\n"
          "  edge [fontname=\"Helvetica\", fontsize=9];\n",
          f);
    fprintf(f, "  label=\"%u stage%s, %u stream%s; mode %s, batch %u\";\n  labelloc=t;\n",
            p->nstages, p->nstages == 1 ? "" : "s", p->nstreams, p->nstreams == 1 ? "" : "s",
            mode < 3 ? modes[mode] : "?", (unsigned)p->cfg.batch);
    for (unsigned k = 0; k < p->nstages; k++) {
        const weir__stage *s = p->stages[k];
        fprintf(f, "  stage%u [shape=box, style=rounded, label=\"stage %u (%s)", k, k,
                head_name(s));
        for (unsigned i = 0; i < s->nnodes; i++) {
            const weir_term *t = s->nodes[i].term;
            fputs(i == 0 ? "\\n" : "\\n* ", f);
            dot_str(f, t && t->name ? t->name : "?");
            fputs(" (", f);
            dot_str(f, t && t->kind_name ? t->kind_name : "?");
            fputc(')', f);
        }
        fputs("\"];\n", f);
    }
    for (unsigned i = 0; i < p->nstreams; i++) {
        const weir__stream *st = p->streams[i];
        fprintf(f, "  stream%u [shape=note, label=\"", i);
        dot_str(f, st->name ? st->name : "?");
        fprintf(f, "\\ncapacity %" PRIu64 " x %zu B\"];\n", st->cap, st->size);
    }
    for (unsigned k = 0; k < p->nstages; k++) {
        const weir__stage *s = p->stages[k];
        if (s->out)
            fprintf(f, "  stage%u -> stream%u;\n", k, stream_index(p, s->out));
    }
    for (unsigned i = 0; i < p->nstreams; i++) {
        const weir__stream *st = p->streams[i];
        for (unsigned c = 0; c < st->ncons; c++)
            for (unsigned k = 0; k < p->nstages; k++)
                if (p->stages[k] == st->consumers[c])
                    fprintf(f, "  stream%u -> stage%u [label=\"cursor %u\"];\n", i, k, c);
    }
    fputs("}\n", f);
    return ferror(f) ? weir__terms_error(-EIO, "weir_pipeline_dot: write error") : 0;
}
