/*
 * The term layer's side of tracing (include/weir/trace.h): an activation is
 * a complete event named after the stage's fused terms, "stage: a * b * c",
 * followed by a counter sample of the depth of every stream it touches
 * ("depth <stream>"), and a thread the term layer starts gets a track named
 * after its stage. Everything here runs only while a trace runs: exec.c and
 * exec_threads.c test weir_trace_enabled() first.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define TRACE_NAME 39

void weir__trace_stage_name(const weir__stage *s, const char *prefix, char *buf, size_t len)
{
    size_t k = (size_t)snprintf(buf, len, "%s", prefix);
    for (unsigned i = 0; i < s->nnodes && k < len; i++) {
        const char *name =
            s->nodes[i].term && s->nodes[i].term->name ? s->nodes[i].term->name : "?";
        k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? " * " : "", name);
    }
}

static void depth_sample(const weir__stream *st)
{
    char name[TRACE_NAME + 8];
    snprintf(name, sizeof name, "depth %s", st->name ? st->name : "?");
    weir_trace_counter(name, (double)weir__stream_depth(st));
}

weir__run weir__stage_run_traced(weir__stage *s, weir_worker *w)
{
    char name[TRACE_NAME];
    weir__trace_stage_name(s, "stage: ", name, sizeof name);
    weir_trace_begin(name);
    weir__run r = weir__stage_run(s, w);
    weir_trace_end();
    /* A finished stage may be freed already (its pipeline's join returned). */
    if (r == WEIR__FINISHED)
        return r;
    for (unsigned i = 0; i < s->ninputs; i++)
        depth_sample(s->inputs[i].stream);
    if (s->out)
        depth_sample(s->out);
    return r;
}

void weir__trace_stage_thread(const weir__stage *s)
{
    char name[48];
    weir__trace_stage_name(s, "thread ", name, sizeof name);
    weir_trace_thread_name(name);
}
