/*
 * weir_pipeline_dot() on a known pipeline (tests/trace/meson.build):
 *
 *   numbers (range) -> double (function) -> par( odd (filter) -> evens (sink),
 *                                               plus1 (function) -> total (sink) )
 *
 * compiles (pool mode) to three stages: numbers * double, producing stream
 * "double" with two consumers, then odd * evens and plus1 * total. The
 * program writes the DOT to a buffer (open_memstream), checks the nodes and
 * edges it must contain, prints it to stdout (docs/terms.md renders it) and
 * exits 0, or 1 naming what is missing.
 */
#define _POSIX_C_SOURCE 200809L /* open_memstream */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir.h>

static int twice(void *st, const void *in, weir_emit *e)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v *= 2;
    return weir_emit_record(e, &v);
}

static int plus1(void *st, const void *in, weir_emit *e)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    v += 1;
    return weir_emit_record(e, &v);
}

static bool odd(void *st, const void *in)
{
    (void)st;
    int64_t v;
    memcpy(&v, in, sizeof v);
    return v % 4 != 0;
}

static int count(void *st, const void *in)
{
    (void)in;
    (*(int64_t *)st)++;
    return 0;
}

int main(void)
{
    weir_runtime *rt;
    weir_config cfg;
    weir_config_init(&cfg);
    cfg.workers = 1;
    if (weir_runtime_create(&cfg, &rt) != 0)
        return 1;
    int64_t a = 0, b = 0;
    weir_term *branches[] = {
        weir_seq2(weir_filter("odd", 8, odd, NULL), weir_sink("evens", 8, count, &a)),
        weir_seq2(weir_function("plus1", 8, 8, plus1, NULL), weir_sink("total", 8, count, &b)),
    };
    weir_term *t = weir_seq(3, (weir_term *const[]){
                                   weir_range_source("numbers", 0, 1000, 1),
                                   weir_function("double", 8, 8, twice, NULL),
                                   weir_par(2, branches),
                               });
    weir_pipeline *p;
    if (weir_pipeline_create(rt, t, NULL, &p) != 0) {
        fprintf(stderr, "dot_pipeline: %s\n", weir_terms_last_error());
        return 1;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f || weir_pipeline_dot(p, f) != 0 || fclose(f) != 0) {
        fprintf(stderr, "dot_pipeline: weir_pipeline_dot failed\n");
        return 1;
    }
    static const char *const want[] = {
        "digraph weir_pipeline {",
        "stage0 [shape=box, style=rounded, label=\"stage 0 (pull source)\\nnumbers (range "
        "source)\\n* "
        "double (function)\"]",
        "\\nodd (filter)\\n* evens (sink)\"]",
        "\\nplus1 (function)\\n* total (sink)\"]",
        "stream0 [shape=note, label=\"double\\ncapacity ",
        "stage0 -> stream0;",
        "stream0 -> stage1 [label=\"cursor 0\"];",
        "stream0 -> stage2 [label=\"cursor 1\"];",
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(buf, want[i])) {
            fprintf(stderr, "dot_pipeline: missing: %s\n", want[i]);
            rc = 1;
        }
    fputs(buf, stdout);
    free(buf);
    if (weir_pipeline_run(p) != 0 || a != 500 || b != 1000)
        rc = 1;
    weir_pipeline_destroy(p);
    weir_runtime_destroy(rt);
    return rc;
}
