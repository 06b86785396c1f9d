/*
 * A reference parser for PU lists ("0-3,8"), written for the fuzz harnesses
 * from the documented contract rather than from runtime/config.c, so that a
 * disagreement points at one of the two. It differs from the library's
 * parser on purpose: it splits the list on commas first, validates each item
 * as a string, and detects duplicates with a bitmap instead of a scan.
 *
 * The contract it encodes (include/weir/config.h):
 *   - items are N or N-M (inclusive, N <= M), separated by commas;
 *   - white space (C locale) is allowed around numbers and around '-';
 *   - numbers are decimal digits only, at most 2^20;
 *   - a PU listed twice is -EINVAL, more than `max` entries is -E2BIG.
 * Errors are found left to right, item by item: an item is checked as text
 * before its values are expanded, so "0-9,x" with max 4 is -E2BIG (the first
 * item overflows before the second is read) while "x,0-9" is -EINVAL. Within
 * one value the duplicate check comes before the count check.
 */
#ifndef WEIR_FUZZ_REF_PLACES_H
#define WEIR_FUZZ_REF_PLACES_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define REF_MAX_PU (1u << 20)

/* One bit per possible PU; cleared after every call by walking the output,
 * so a call costs O(entries), not O(2^20). */
static uint64_t ref_seen[(REF_MAX_PU + 1 + 63) / 64];

/* isspace() in the C locale, spelled out so that the reference does not
 * depend on the locale the harness happens to run in. */
static bool ref_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool ref_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Read the digits of [*p, end) into *v. @return false when there are none or
 * the value exceeds 2^20 (leading zeros do not count against it). */
static bool ref_number(const char **p, const char *end, unsigned *v)
{
    const char *s = *p;
    if (s == end || !ref_digit(*s))
        return false;
    while (s < end && *s == '0')
        s++;
    const char *first = s;
    unsigned long x = 0;
    while (s < end && ref_digit(*s)) {
        /* 2^20 has 7 digits: an eighth significant digit is too many, and
         * stopping there keeps x far from overflow. */
        if (s - first >= 7)
            return false;
        x = x * 10 + (unsigned long)(*s - '0');
        s++;
    }
    if (x > REF_MAX_PU)
        return false;
    /* Leading zeros only ("000") leave first == s: the value is 0. */
    *v = (unsigned)x;
    *p = s;
    return true;
}

/* Check one item [b, e) as text. @return true and the range, or false. */
static bool ref_item(const char *b, const char *e, unsigned *lo, unsigned *hi)
{
    while (b < e && ref_space(*b))
        b++;
    while (e > b && ref_space(e[-1]))
        e--;
    if (!ref_number(&b, e, lo))
        return false;
    while (b < e && ref_space(*b))
        b++;
    *hi = *lo;
    if (b < e && *b == '-') {
        b++;
        while (b < e && ref_space(*b))
            b++;
        if (!ref_number(&b, e, hi))
            return false;
        while (b < e && ref_space(*b))
            b++;
        if (*hi < *lo)
            return false;
    }
    return b == e;
}

static void ref_forget(const unsigned *out, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        ref_seen[out[i] / 64] &= ~(UINT64_C(1) << (out[i] % 64));
}

/* Parse `text` into out[0..max). Same returns as weir_parse_places(). */
static int ref_parse_places(const char *text, unsigned *out, unsigned max)
{
    unsigned n = 0;
    int result;
    const char *item = text;
    for (;;) {
        const char *comma = strchr(item, ',');
        const char *end = comma ? comma : item + strlen(item);
        unsigned lo, hi;
        if (!ref_item(item, end, &lo, &hi)) {
            result = -EINVAL;
            goto done;
        }
        for (unsigned long v = lo; v <= hi; v++) {
            uint64_t bit = UINT64_C(1) << (v % 64);
            if (ref_seen[v / 64] & bit) {
                result = -EINVAL;
                goto done;
            }
            if (n == max) {
                result = -E2BIG;
                goto done;
            }
            ref_seen[v / 64] |= bit;
            out[n++] = (unsigned)v;
        }
        if (!comma)
            break;
        item = comma + 1;
    }
    result = (int)n;
done:
    ref_forget(out, n);
    return result;
}

#endif /* WEIR_FUZZ_REF_PLACES_H */
