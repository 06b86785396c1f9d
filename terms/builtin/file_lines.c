/*
 * weir terms — the file-lines blocking source.
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
    uint64_t number = 0;
    int r;
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

WEIR_API weir_term *weir_file_lines(const char *name, const char *path)
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
    if (pipe2(L->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int err = -errno;
        char eb[128];
        weir__terms_error(err, "file lines '%s': cannot create its wake-up pipe: %s",
                          name ? name : "(unnamed)", weir__errtext(err, eb, sizeof eb));
        weir_free(copy);
        weir_free(L);
        return NULL;
    }
    weir_term *t = weir_blocking_source(name, sizeof(weir_line), weir__lines_run, L);
    if (!t) {
        weir__lines_free(L);
        return NULL;
    }
    weir__term_set_kind(t, name, "file lines");
    t = weir_term_on_interrupt(t, weir__lines_interrupt);
    return weir_term_on_free(t, weir__lines_free);
}
