/*
 * weir terms — built-in pass-through terms: print, add-index.
 * (id is a filter without predicate, in term.c.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

typedef struct weir__print {
    FILE *f;
    weir_format_fn format;
    void *arg;
    size_t size;
    const char *name; /* the term's (it outlives the state's use) */
} weir__print;

static int weir__print_fn(void *state, const void *in, weir_emit *e)
{
    weir__print *p = state;
    /* Lock the stream for the whole line so that lines printed by terms
     * running on different workers do not interleave. */
    flockfile(p->f);
    if (p->format) {
        p->format(p->f, in, p->arg);
    } else if (p->size == WEIR_VARSIZE) {
        /* the bytes as text, C escapes for the rest */
        const weir_bytes *b = in;
        const unsigned char *c = b->data;
        fprintf(p->f, "%s: ", p->name);
        for (size_t i = 0; i < b->len; i++) {
            if (c[i] == '\\')
                fputs("\\\\", p->f);
            else if (c[i] >= 0x20 && c[i] < 0x7f)
                fputc(c[i], p->f);
            else
                fprintf(p->f, "\\x%02x", c[i]);
        }
    } else {
        fprintf(p->f, "%s:", p->name);
        const unsigned char *b = in;
        for (size_t i = 0; i < p->size; i++)
            fprintf(p->f, " %02x", b[i]);
    }
    fputc('\n', p->f);
    funlockfile(p->f);
    return weir_emit_record(e, in);
}

WEIR_API weir_term *weir_print(const char *name, size_t size, FILE *f, weir_format_fn format,
                               void *arg)
{
    weir__print *p = weir_calloc(1, sizeof *p);
    if (!p) {
        weir__terms_error(-ENOMEM, "print: out of memory");
        return NULL;
    }
    p->f = f ? f : stdout;
    p->format = format;
    p->arg = arg;
    p->size = size;
    weir_term *t = weir_function(name, size, size, weir__print_fn, p);
    if (!t) {
        weir_free(p);
        return NULL;
    }
    weir__term_set_kind(t, name, "print");
    p->name = t->name;
    return weir_term_on_free(t, weir_free);
}

typedef struct weir__index {
    uint64_t next;
    size_t in_size;
} weir__index;

static void weir__index_fn(void *state, const void *in, void *out)
{
    weir__index *x = state;
    memcpy(out, &x->next, sizeof x->next);
    memcpy((char *)out + sizeof x->next, in, x->in_size);
    x->next++;
}

WEIR_API weir_term *weir_add_index(const char *name, size_t in_size)
{
    if (in_size == WEIR_VARSIZE) {
        weir__terms_error(-EINVAL,
                          "add index '%s': needs fixed-size records (a variable-size record "
                          "cannot be prefixed in place; emit an index field of your own)",
                          name ? name : "(unnamed)");
        return NULL;
    }
    weir__index *x = weir_calloc(1, sizeof *x);
    if (!x) {
        weir__terms_error(-ENOMEM, "add index: out of memory");
        return NULL;
    }
    x->in_size = in_size;
    weir_term *t = weir_map(name, in_size, sizeof(uint64_t) + in_size, weir__index_fn, x);
    if (!t) {
        weir_free(x);
        return NULL;
    }
    weir__term_set_kind(t, name, "add index");
    return weir_term_on_free(t, weir_free);
}

/* ------------------------------------------------------------- tokenize */

typedef struct weir__tokens {
    unsigned char delim[256]; /* 1 for a delimiter byte: one load a byte */
} weir__tokens;

static int weir__tokenize_fn(void *state, const void *in, weir_emit *e)
{
    const unsigned char *delim = ((const weir__tokens *)state)->delim;
    const weir_bytes *b = in;
    const unsigned char *p = b->data, *end = p + b->len;
    while (p < end) {
        while (p < end && delim[*p])
            p++;
        const unsigned char *w = p;
        while (p < end && !delim[*p])
            p++;
        if (p > w) {
            int r = weir_emit_bytes(e, w, (size_t)(p - w));
            if (r < 0)
                return r;
        }
    }
    return 0;
}

WEIR_API weir_term *weir_tokenize(const char *name, const char *delims)
{
    weir__tokens *x = weir_calloc(1, sizeof *x);
    if (!x) {
        weir__terms_error(-ENOMEM, "tokenize: out of memory");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)(delims ? delims : " \t\r\n\v\f");
    for (; *d; d++)
        x->delim[*d] = 1;
    weir_term *t = weir_function(name, WEIR_VARSIZE, WEIR_VARSIZE, weir__tokenize_fn, x);
    if (!t) {
        weir_free(x);
        return NULL;
    }
    weir__term_set_kind(t, name, "tokenize");
    return weir_term_on_free(t, weir_free);
}
