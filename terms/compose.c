/*
 * weir terms — composition: seq, par, merge, zip, stop.
 *
 * Composites only record structure. They never copy user state, and they
 * never fail on structure: a NULL child, a child that already belongs to
 * another composite, or an empty composite is remembered and reported by
 * weir_pipeline_create() with the names involved. That keeps every check in
 * one place and lets nested constructor calls be written without tests.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static weir_term *weir__composite(weir__kind kind, size_t n, weir_term *const terms[])
{
    weir_term *t = weir__term_new(kind, weir__kind_name(kind), NULL);
    if (t && n) {
        /* one block: the children, then their ownership flags */
        t->children = n <= (SIZE_MAX - n) / sizeof *t->children
                          ? weir_calloc(1, n * sizeof *t->children + n)
                          : NULL;
        if (t->children)
            t->child_owned = (unsigned char *)(t->children + n);
        if (!t->children) {
            weir_free(t->name);
            weir_free(t);
            t = NULL;
        }
    }
    if (!t) {
        /* Ownership passes in every case: free the children we would have
         * owned, so that a failed composition leaks nothing. */
        for (size_t i = 0; terms && i < n; i++)
            if (terms[i] && terms[i]->owner == WEIR__FREE)
                weir_term_destroy(terms[i]);
        weir__terms_error(-ENOMEM, "%s: out of memory", weir__kind_name(kind));
        return NULL;
    }
    t->nchildren = n;
    for (size_t i = 0; i < n; i++) {
        weir_term *c = terms ? terms[i] : NULL;
        t->children[i] = c;
        if (c && c->owner == WEIR__FREE) {
            c->owner = WEIR__IN_COMPOSITE;
            t->child_owned[i] = 1;
        }
    }
    return t;
}

WEIR_API weir_term *weir_seq(size_t n, weir_term *const terms[])
{
    return weir__composite(WEIR__K_SEQ, n, terms);
}

WEIR_API weir_term *weir_par(size_t n, weir_term *const terms[])
{
    return weir__composite(WEIR__K_PAR, n, terms);
}

WEIR_API weir_term *weir_parallel_order(weir_term *t, unsigned width, weir_order order)
{
    if (order != WEIR_ORDERED && order != WEIR_UNORDERED) {
        if (t && t->owner == WEIR__FREE)
            weir_term_destroy(t);
        weir__terms_error(-EINVAL,
                          "weir_parallel: order must be WEIR_ORDERED or WEIR_UNORDERED (got %d)",
                          (int)order);
        return NULL;
    }
    if (width > WEIR_PARALLEL_MAX_WIDTH) {
        if (t && t->owner == WEIR__FREE)
            weir_term_destroy(t);
        weir__terms_error(-EINVAL, "weir_parallel: width %u is above the limit of %u", width,
                          (unsigned)WEIR_PARALLEL_MAX_WIDTH);
        return NULL;
    }
    weir_term *const one[1] = {t};
    weir_term *g = weir__composite(WEIR__K_PARALLEL, 1, one);
    if (g) {
        g->width = width;
        g->unordered = order == WEIR_UNORDERED;
    }
    return g;
}

WEIR_API weir_term *weir_parallel(weir_term *t, unsigned width)
{
    return weir_parallel_order(t, width, WEIR_ORDERED);
}

WEIR_API weir_term *weir_keyed(const char *name, unsigned shards, weir_key_fn key, void *key_arg,
                               weir_shard_fn make, void *make_arg, weir_order order)
{
    const char *nm = name ? name : "(unnamed)";
    if (!key || !make) {
        weir__terms_error(-EINVAL,
                          "weir_keyed '%s': the key function and the shard factory "
                          "must not be NULL",
                          nm);
        return NULL;
    }
    if (shards == 0 || shards > WEIR_KEYED_MAX_SHARDS) {
        weir__terms_error(-EINVAL, "weir_keyed '%s': %u shards; give 1..%u", nm, shards,
                          (unsigned)WEIR_KEYED_MAX_SHARDS);
        return NULL;
    }
    if (order != WEIR_ORDERED && order != WEIR_UNORDERED) {
        weir__terms_error(-EINVAL,
                          "weir_keyed '%s': order must be WEIR_ORDERED or WEIR_UNORDERED (got %d)",
                          nm, (int)order);
        return NULL;
    }
    weir_term **kids = weir_calloc(shards, sizeof *kids);
    if (!kids) {
        weir__terms_error(-ENOMEM, "weir_keyed '%s': out of memory", nm);
        return NULL;
    }
    for (unsigned i = 0; i < shards; i++)
        kids[i] = make(make_arg, i); /* a NULL is reported at create */
    weir_term *g = weir__composite(WEIR__K_KEYED, shards, kids);
    weir_free(kids);
    if (!g)
        return NULL;
    if (name) {
        char *copy = weir_strdup(name);
        if (!copy) {
            weir_term_destroy(g); /* and the shards it owns */
            weir__terms_error(-ENOMEM, "weir_keyed '%s': out of memory", name);
            return NULL;
        }
        weir_free(g->name);
        g->name = copy;
    }
    g->width = shards;
    g->unordered = order == WEIR_UNORDERED;
    g->key = key;
    g->key_arg = key_arg;
    return g;
}

WEIR_API weir_term *weir_merge(const char *name)
{
    /* Input and output sizes are decided at compile time: all inputs must
     * agree, and the output has their size. */
    return weir__term_new(WEIR__K_MERGE, "merge", name);
}

WEIR_API weir_term *weir_zip(const char *name, size_t out_size, weir_zip_fn fn, void *state)
{
    if (!fn && out_size != 0) {
        weir__terms_error(-EINVAL,
                          "zip '%s': without a callback the output is the concatenation of the "
                          "inputs, so out_size must be 0 (got %zu)",
                          name ? name : "(unnamed)", out_size);
        return NULL;
    }
    if (fn && out_size == 0) {
        weir__terms_error(-EINVAL, "zip '%s': out_size must be > 0 with a callback",
                          name ? name : "(unnamed)");
        return NULL;
    }
    weir_term *t = weir__term_new(WEIR__K_ZIP, "zip", name);
    if (t) {
        weir__term_set_sizes(t, 0, out_size);
        t->fn.zip = fn;
        t->state = state;
    }
    return t;
}

WEIR_API weir_term *weir_stop(void)
{
    return weir__term_new(WEIR__K_STOP, "stop", NULL);
}
