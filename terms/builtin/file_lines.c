/*
 * weir terms — the file-lines blocking source.
 *
 * weir_file_lines() yields each line whole, as a variable-size record (the
 * bytes without the newline; a CR before it is data), up to the stream's
 * byte capacity; weir_file_lines_fixed() yields weir_line records (cut at
 * WEIR_LINE_TEXT bytes, a CR before the newline dropped).
 *
 * Reading a file blocks, so this source runs on its own thread (in every
 * execution mode) and blocks in weir_emit_record() when its stream is full.
 * The file is opened on that thread when the pipeline starts, so a missing
 * file is the pipeline's error, named after the term.
 *
 * A read can block for ever (stdin, a FIFO, a terminal), so the source is
 * interruptible: it reads through its own buffer and, before each read(2),
 * poll(2)s the file together with a self-pipe that its interrupt function
 * (weir_term_on_interrupt) writes to when the pipeline stops or is
 * cancelled. A regular file polls readable at once: the cost is one poll
 * per 64 KiB read.
 *
 * The open can block for ever too: a blocking open(2) of a FIFO waits for a
 * writer, where no self-pipe reaches it (a stop, a cancel and a destroy
 * hung). So the path is opened with O_NONBLOCK, which returns at once for a
 * FIFO without a writer, and the descriptor stays non-blocking: every read
 * is preceded by the poll anyway, and EAGAIN (someone else took the data)
 * goes back to it. Regular files ignore O_NONBLOCK.
 *
 * What makes this right for a FIFO nobody has opened for writing yet: a
 * read(2) then returns 0, which must not be taken for the end of the file
 * (a blocking open would still be waiting for the writer). It never is,
 * because the read only follows a poll that reported the FIFO, and Linux
 * reports a FIFO's read end neither readable nor POLLHUP until a writer
 * connected after our open (fs/pipe.c: pipe_poll() sets EPOLLHUP only when
 * there is no writer and the writer counter differs from the one saved at
 * the open). Until then the poll waits for the writer or the interrupt,
 * exactly where the blocking open waited; once the writer is gone, POLLHUP
 * and a read of 0 are its end of file, as with the blocking open. Checked
 * in tests/unit/terms/test_terms_reliability2.c (a silent FIFO, a writer
 * that connects late).
 *
 * A signal caught by a handler installed without SA_RESTART makes a
 * blocking system call fail with EINTR: every call here retries it (open,
 * poll, read, and the interrupt's write), so a program's signals never
 * fail the pipeline. close(2) is not retried: on Linux the descriptor is
 * released even when it reports EINTR, and a retry could close a
 * descriptor another thread just got.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../internal.h"

#define WEIR__LINES_BUF (64 * 1024)

typedef struct weir__lines {
    char *path;
    int wake[2]; /* self-pipe: [1] written by the interrupt, [0] polled */
    int fd;
    char *buf; /* WEIR__LINES_BUF bytes, for one run */
    size_t pos, len;
    bool fixed; /* weir_file_lines_fixed(): weir_line records */
    /* variable-size lines: the start of a line that crossed the end of the
     * buffer, and the descriptors of the lines of one buffer */
    char *part;
    size_t part_len, part_cap;
    weir_bytes *descs;
} weir__lines;

/* Refill the buffer. @return 1, 0 at the end of the file, -ECANCELED when
 * interrupted, or -errno. */
static int weir__lines_fill(weir__lines *L)
{
    for (;;) {
        struct pollfd pf[2] = {{L->fd, POLLIN, 0}, {L->wake[0], POLLIN, 0}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pf[1].revents)
            return -ECANCELED; /* the interrupt: stop or cancel */
        /* Only after the poll reported the file: for a FIFO that means a
         * writer connected, so 0 below is its end (see the top). */
        ssize_t k = read(L->fd, L->buf, WEIR__LINES_BUF);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        L->pos = 0;
        L->len = (size_t)k;
        return k > 0;
    }
}

/* Read the next line into `rec` (without its newline or a CR before it;
 * cut at WEIR_LINE_TEXT bytes, the rest of a long line read and dropped).
 * @return 1, 0 at the end of the file with nothing read, or a negative
 * errno (-ECANCELED: interrupted; the partial line is dropped). */
static int weir__read_line(weir__lines *L, weir_line *rec)
{
    size_t len = 0; /* bytes of the line, newline excluded */
    int last = -1;
    bool any = false;
    for (;;) {
        if (L->pos == L->len) {
            int r = weir__lines_fill(L);
            if (r < 0)
                return r;
            if (r == 0) {
                if (!any)
                    return 0;
                break; /* a last line without a newline */
            }
        }
        any = true;
        char c = L->buf[L->pos++];
        if (c == '\n')
            break;
        if (len < WEIR_LINE_TEXT)
            rec->text[len] = c;
        len++;
        last = (unsigned char)c;
    }
    if (last == '\r')
        len--;
    rec->truncated = len > WEIR_LINE_TEXT;
    rec->len = rec->truncated ? WEIR_LINE_TEXT : (uint32_t)len;
    if (rec->len < WEIR_LINE_TEXT)
        rec->text[rec->len] = 0; /* also drops a CR stored before it */
    return 1;
}

/* Variable-size lines: every complete line of a buffer is emitted in one
 * weir_emit_records() (one publish, one wake-up of the consumers per 64 KiB
 * read), in place from the read buffer; a line that crosses the end of the
 * buffer is gathered in `part` (up to the stream's byte capacity: a longer
 * line fails with -EMSGSIZE, as its emit would). */
static int weir__lines_too_long(const weir__lines *L, weir_emit *e, uint64_t line, size_t maxlen)
{
    return weir_emit_fail(e, -EMSGSIZE,
                          "line %llu of '%s' is longer than its stream can hold (%zu bytes: "
                          "raise weir_pipeline_config.byte_capacity)",
                          (unsigned long long)line, L->path, maxlen);
}

static int weir__lines_var(weir__lines *L, weir_emit *e)
{
    const size_t maxlen = weir__emit_max_bytes(e);
    uint64_t number = 0;
    for (;;) {
        int r = weir__lines_fill(L);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        const char *b = L->buf, *end = L->buf + L->len, *p = b;
        size_t n = 0;
        if (L->part_len) {
            /* the rest of the line begun in the last buffer */
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t k = (size_t)((nl ? nl : end) - p);
            if (L->part_len + k > maxlen)
                return weir__lines_too_long(L, e, number + 1, maxlen);
            if (L->part_cap - L->part_len < k) {
                size_t cap = L->part_cap ? L->part_cap : 4096;
                while (cap - L->part_len < k)
                    cap *= 2;
                char *np = weir_realloc(L->part, cap);
                if (!np)
                    return weir_emit_fail(e, -ENOMEM, "no memory for a long line of '%s'", L->path);
                L->part = np;
                L->part_cap = cap;
            }
            memcpy(L->part + L->part_len, p, k);
            L->part_len += k;
            if (!nl)
                continue; /* still no newline */
            number++;
            r = weir_emit_bytes(e, L->part, L->part_len);
            if (r < 0)
                return r;
            L->part_len = 0;
            p = nl + 1;
        }
        for (;;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                break;
            if ((size_t)(nl - p) > maxlen) {
                /* the lines before it go first, then the error */
                if (n && (r = weir_emit_records(e, L->descs, n)) < 0)
                    return r;
                return weir__lines_too_long(L, e, number + n + 1, maxlen);
            }
            L->descs[n].data = p;
            L->descs[n].len = (size_t)(nl - p);
            n++;
            p = nl + 1;
        }
        number += n;
        if (n && (r = weir_emit_records(e, L->descs, n)) < 0)
            return r;
        if (p < end) {
            /* an unfinished line: keep it for the next buffer */
            size_t k = (size_t)(end - p);
            if (k > maxlen)
                return weir__lines_too_long(L, e, number + 1, maxlen);
            if (L->part_cap < k) {
                char *np = weir_realloc(L->part, k > 4096 ? k : 4096);
                if (!np)
                    return weir_emit_fail(e, -ENOMEM, "no memory for a long line of '%s'", L->path);
                L->part = np;
                L->part_cap = k > 4096 ? k : 4096;
            }
            memcpy(L->part, p, k);
            L->part_len = k;
        }
    }
    if (L->part_len) {
        /* a last line without a newline */
        int r = weir_emit_bytes(e, L->part, L->part_len);
        L->part_len = 0;
        if (r < 0)
            return r;
    }
    return 0;
}

static int weir__lines_run(void *state, weir_emit *e)
{
    weir__lines *L = state;
    bool use_stdin = strcmp(L->path, "-") == 0;
    if (use_stdin) {
        L->fd = STDIN_FILENO; /* its flags are the program's: not changed */
    } else {
        do
            L->fd = open(L->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        while (L->fd < 0 && errno == EINTR);
    }
    if (L->fd < 0)
        return weir_emit_fail(e, -errno, "cannot open '%s'", L->path);
    L->buf = weir_malloc(WEIR__LINES_BUF);
    if (!L->buf) {
        if (!use_stdin)
            close(L->fd);
        return weir_emit_fail(e, -ENOMEM, "no memory for the read buffer of '%s'", L->path);
    }
    L->pos = L->len = 0;
    L->part_len = 0;
    int r = 0;
    if (!L->fixed) {
        /* a line per 1 byte at most: one descriptor each */
        L->descs = weir_malloc(WEIR__LINES_BUF * sizeof *L->descs);
        if (!L->descs)
            r = weir_emit_fail(e, -ENOMEM, "no memory for the line table of '%s'", L->path);
        else
            r = weir__lines_var(L, e);
        weir_free(L->descs);
        L->descs = NULL;
        weir_free(L->part);
        L->part = NULL;
        L->part_cap = L->part_len = 0;
    } else {
        uint64_t number = 0;
        weir_line rec;
        for (;;) {
            memset(&rec, 0, sizeof rec);
            r = weir__read_line(L, &rec);
            if (r <= 0)
                break;
            rec.number = ++number;
            r = weir_emit_record(e, &rec);
            if (r < 0)
                break;
        }
    }
    if (r < 0 && r != -ECANCELED)
        r = weir_emit_fail(e, r, "read error on '%s'", L->path);
    weir_free(L->buf);
    L->buf = NULL;
    if (!use_stdin)
        close(L->fd);
    return r;
}

/* The interrupt: wake the poll. Called once, possibly while the run reads
 * or after it returned; the pipe lives until the term is freed. */
static void weir__lines_interrupt(void *state)
{
    weir__lines *L = state;
    ssize_t k;
    do
        k = write(L->wake[1], "x", 1); /* non-blocking; one byte is enough */
    while (k < 0 && errno == EINTR);
}

static void weir__lines_free(void *state)
{
    weir__lines *L = state;
    close(L->wake[0]);
    close(L->wake[1]);
    weir_free(L->path);
    weir_free(L);
}

static weir_term *weir__file_lines(const char *name, const char *path, bool fixed)
{
    if (!path) {
        weir__terms_error(-EINVAL, "file lines '%s': path is NULL", name ? name : "(unnamed)");
        return NULL;
    }
    weir__lines *L = weir_calloc(1, sizeof *L);
    char *copy = weir_strdup(path);
    if (!L || !copy) {
        weir_free(L);
        weir_free(copy);
        weir__terms_error(-ENOMEM, "file lines: out of memory");
        return NULL;
    }
    L->path = copy;
    L->fixed = fixed;
    if (pipe2(L->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int err = -errno;
        char eb[128];
        weir__terms_error(err, "file lines '%s': cannot create its wake-up pipe: %s",
                          name ? name : "(unnamed)", weir__errtext(err, eb, sizeof eb));
        weir_free(copy);
        weir_free(L);
        return NULL;
    }
    weir_term *t =
        weir_blocking_source(name, fixed ? sizeof(weir_line) : WEIR_VARSIZE, weir__lines_run, L);
    if (!t) {
        weir__lines_free(L);
        return NULL;
    }
    weir__term_set_kind(t, name, "file lines");
    t = weir_term_on_interrupt(t, weir__lines_interrupt);
    return weir_term_on_free(t, weir__lines_free);
}

WEIR_API weir_term *weir_file_lines(const char *name, const char *path)
{
    return weir__file_lines(name, path, false);
}

WEIR_API weir_term *weir_file_lines_fixed(const char *name, const char *path)
{
    return weir__file_lines(name, path, true);
}
