/*
 * libFuzzer harness for weir_parse_places(), the PU-list parser behind
 * WEIR_PLACES.
 *
 * Input: the first byte picks `max` (the capacity of the output array), the
 * rest is the list. Byte '0' + i picks max_table[i], so a readable corpus
 * file "0 0-3,8" parses " 0-3,8" with max 4096; other bytes wrap around.
 * An embedded NUL ends the list early, as it would for a C string.
 *
 * Every call is checked against the contract in include/weir/config.h and
 * against the reference parser in ref_places.h:
 *   - the result is 1..max, -EINVAL or -E2BIG, and equals the reference's;
 *   - on success the entries equal the reference's, are at most 2^20, have
 *     no duplicates, and nothing past entry n was written (the output array
 *     is exactly `max` entries long, so ASan catches a write past max);
 *   - on failure weir_last_error() says "places: invalid list"; on success
 *     it is left alone.
 * A broken invariant prints what differed and aborts, which libFuzzer
 * reports as a crash with the input saved.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

#include "ref_places.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Capacities worth exercising: the real one (WEIR_MAX_PLACES, what
 * WEIR_PLACES uses), the small ones where -E2BIG is easy to reach, and 0,
 * where every non-empty list is too long. */
static const unsigned max_table[10] = {WEIR_MAX_PLACES, 1, 2, 3, 4, 8, 16, 64, 0, 4095};

/* Written by the parser only below index n; a value above 2^20 can never be
 * a parsed entry, so it marks "untouched". */
#define CANARY 0xfeedfaceu

static void fail(const char *text, unsigned max, const char *what, long a, long b)
{
    fprintf(stderr, "fuzz_places: max=%u list='%.200s': %s (%ld vs %ld); last error '%s'\n", max,
            text, what, a, b, weir_last_error());
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned max = max_table[(uint8_t)(data[0] - '0') % 10];

    /* A NUL-terminated copy: the parser takes a C string. */
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    /* Exactly `max` entries, so ASan sees a write past the end; NULL when
     * max is 0, which the contract allows. */
    unsigned *out = max ? malloc(max * sizeof *out) : NULL;
    unsigned *ref = malloc((max ? max : 1) * sizeof *ref);
    if ((max && out == NULL) || ref == NULL) {
        free(text);
        free(out);
        free(ref);
        return 0;
    }
    for (unsigned i = 0; i < max; i++)
        out[i] = CANARY;

    weir_clear_error();
    int n = weir_parse_places(text, out, max);
    int want = ref_parse_places(text, ref, max);

    if (n != want)
        fail(text, max, "result differs from the reference", n, want);
    if (n > 0) {
        if ((unsigned)n > max)
            fail(text, max, "more entries than max", n, (long)max);
        for (int i = 0; i < n; i++) {
            if (out[i] > REF_MAX_PU)
                fail(text, max, "entry above 2^20", i, (long)out[i]);
            if (out[i] != ref[i])
                fail(text, max, "entry differs from the reference", (long)out[i], (long)ref[i]);
            /* The reference's bitmap already proved ref[] has no
             * duplicates; check the library's own output independently. */
            uint64_t bit = UINT64_C(1) << (out[i] % 64);
            if (ref_seen[out[i] / 64] & bit)
                fail(text, max, "duplicate entry", i, (long)out[i]);
            ref_seen[out[i] / 64] |= bit;
        }
        ref_forget(out, (unsigned)n);
        for (unsigned i = (unsigned)n; i < max; i++)
            if (out[i] != CANARY)
                fail(text, max, "entry written past the count", (long)i, (long)out[i]);
        if (weir_last_error()[0] != '\0')
            fail(text, max, "success set an error message", n, 0);
    } else {
        if (n != -EINVAL && n != -E2BIG)
            fail(text, max, "unexpected error code", n, -EINVAL);
        if (strncmp(weir_last_error(), "places: invalid list", 20) != 0)
            fail(text, max, "failure without a 'places:' message", n, 0);
    }
    free(text);
    free(out);
    free(ref);
    return 0;
}
