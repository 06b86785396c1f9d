/*
 * weir terms — the file-lines blocking source.
 *
 * Reading a file blocks, so this source runs on its own thread (in every
 * execution mode) and blocks in weir_emit_record() when its stream is full.
 * The file is opened on that thread when the pipeline starts, so a missing
 * file is the pipeline's error, named after the term.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

static int weir__lines_run(void *state, weir_emit *e)
{
    const char *path = state;
    bool use_stdin = strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "r");
    if (!f)
        return weir_emit_fail(e, -errno, "cannot open '%s'", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t number = 0;
    int r = 0;
    weir_line rec;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = 0;
        memset(&rec, 0, sizeof rec);
        rec.number = ++number;
        rec.truncated = (size_t)len > WEIR_LINE_TEXT;
        rec.len = rec.truncated ? WEIR_LINE_TEXT : (uint32_t)len;
        memcpy(rec.text, line, rec.len);
        r = weir_emit_record(e, &rec);
        if (r < 0)
            break;
    }
    if (r == 0 && ferror(f))
        r = weir_emit_fail(e, -EIO, "read error on '%s'", path);
    free(line);
    if (!use_stdin)
        fclose(f);
    return r;
}

WEIR_API weir_term *weir_file_lines(const char *name, const char *path)
{
    if (!path) {
        weir__terms_error(-EINVAL, "file lines '%s': path is NULL", name ? name : "(unnamed)");
        return NULL;
    }
    char *copy = strdup(path);
    if (!copy) {
        weir__terms_error(-ENOMEM, "file lines: out of memory");
        return NULL;
    }
    weir_term *t = weir_blocking_source(name, sizeof(weir_line), weir__lines_run, copy);
    if (!t) {
        free(copy);
        return NULL;
    }
    weir__term_set_kind(t, name, "file lines");
    return weir_term_on_free(t, free);
}
