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

/* Read the next line of `f` into `rec` (without its newline or a CR before
 * it; cut at WEIR_LINE_TEXT bytes, the rest of a long line read and
 * dropped). Straight into the record, which keeps only WEIR_LINE_TEXT bytes
 * anyway: no line buffer on the heap (getline's would come from libc's
 * malloc, outside the allocator hook, and grow with the longest line).
 * @return false at the end of the file with nothing read. */
static bool weir__read_line(FILE *f, weir_line *rec)
{
    size_t len = 0; /* bytes of the line, newline excluded */
    int c, last = EOF;
    /* One lock per line rather than one per byte; never held while the
     * record is emitted (which may block). */
    flockfile(f);
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (len < WEIR_LINE_TEXT)
            rec->text[len] = (char)c;
        len++;
        last = c;
    }
    funlockfile(f);
    if (c == EOF && len == 0)
        return false;
    if (last == '\r')
        len--;
    rec->truncated = len > WEIR_LINE_TEXT;
    rec->len = rec->truncated ? WEIR_LINE_TEXT : (uint32_t)len;
    if (rec->len < WEIR_LINE_TEXT)
        rec->text[rec->len] = 0; /* also drops a CR stored before it */
    return true;
}

static int weir__lines_run(void *state, weir_emit *e)
{
    const char *path = state;
    bool use_stdin = strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "r");
    if (!f)
        return weir_emit_fail(e, -errno, "cannot open '%s'", path);
    uint64_t number = 0;
    int r = 0;
    weir_line rec;
    for (;;) {
        memset(&rec, 0, sizeof rec);
        if (!weir__read_line(f, &rec))
            break;
        rec.number = ++number;
        r = weir_emit_record(e, &rec);
        if (r < 0)
            break;
    }
    if (r == 0 && ferror(f))
        r = weir_emit_fail(e, -EIO, "read error on '%s'", path);
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
    char *copy = weir_strdup(path);
    if (!copy) {
        weir__terms_error(-ENOMEM, "file lines: out of memory");
        return NULL;
    }
    weir_term *t = weir_blocking_source(name, sizeof(weir_line), weir__lines_run, copy);
    if (!t) {
        weir_free(copy);
        return NULL;
    }
    weir__term_set_kind(t, name, "file lines");
    return weir_term_on_free(t, weir_free);
}
