/*
 * weir runtime — configuration: defaults, validation, environment variables
 * and the parsers for place lists and affinity names.
 *
 * Parsing is strict in the way OpenMP runtimes are strict about
 * OMP_NUM_THREADS: digits only, no sign, no trailing characters, no
 * overflow. Surrounding whitespace is the one thing tolerated (libgomp does
 * the same), because scripts produce it by accident and it cannot change the
 * meaning of a value. A bad value is reported, never guessed at.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "weir_build_config.h"

/* Largest PU index a place list may name. Linux's own limit (NR_CPUS) is far
 * lower; anything above this is a typo, and rejecting it early keeps the
 * arithmetic of the parser away from overflow. */
#define WEIR__MAX_PU_INDEX (1u << 20)
#define WEIR__MAX_SPIN     1000000u
#define WEIR__MIN_DEQUE    2u
#define WEIR__MAX_DEQUE    (1u << 20)
#define WEIR__MIN_STACK    ((size_t)64 * 1024)

/* Values are quoted in messages up to this many characters so that a long
 * garbage value does not push the explanation out of the message buffer. */
#define WEIR__QUOTE "%.64s"

void weir_config_init(weir_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->workers = WEIR_DEFAULT_WORKERS;
    cfg->affinity = WEIR_DEFAULT_AFFINITY;
    cfg->nplaces = 0;
    cfg->numa = true;
    cfg->spin = WEIR_DEFAULT_SPIN;
    cfg->print_stats = false;
    cfg->deque_initial = 1024;
    cfg->stack_size = 0;
    cfg->synthetic_topology = NULL;
}

void weir_config_deinit(weir_config *cfg)
{
    /* Nothing is owned yet; the function exists so that callers already
     * pair init with deinit when the struct one day owns something. */
    (void)cfg;
}

const char *weir_affinity_name(weir_affinity a)
{
    switch (a) {
    case WEIR_AFFINITY_NONE:
        return "none";
    case WEIR_AFFINITY_COMPACT:
        return "compact";
    case WEIR_AFFINITY_SCATTER:
        return "scatter";
    case WEIR_AFFINITY_EXPLICIT:
        return "explicit";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- validate */

int weir_config_validate(const weir_config *cfg)
{
    if (cfg == NULL)
        return weir__error(-EINVAL, "config: NULL pointer");
    if (cfg->workers > WEIR_MAX_WORKERS)
        return weir__error(-EINVAL,
                           "config.workers: invalid value %u (expected 0..%u, 0 = one per core)",
                           cfg->workers, (unsigned)WEIR_MAX_WORKERS);
    /* The enum may hold any int the caller stored; compare as int so that a
     * negative value is caught too. */
    int aff = (int)cfg->affinity;
    if (aff < (int)WEIR_AFFINITY_NONE || aff > (int)WEIR_AFFINITY_EXPLICIT)
        return weir__error(-EINVAL,
                           "config.affinity: invalid value %d (expected 0..3: none, compact, "
                           "scatter, explicit)",
                           aff);
    if (cfg->nplaces > WEIR_MAX_PLACES)
        return weir__error(-EINVAL, "config.nplaces: invalid value %u (expected 0..%u)",
                           cfg->nplaces, (unsigned)WEIR_MAX_PLACES);
    /* Places are checked only when they are used. A non-explicit policy with
     * places set is accepted and the places are ignored: that is how
     * WEIR_AFFINITY=none switches pinning off while WEIR_PLACES stays
     * exported (the OMP_PROC_BIND=false precedent), and it lets a caller
     * flip the policy without clearing the list. */
    if (cfg->affinity == WEIR_AFFINITY_EXPLICIT) {
        if (cfg->nplaces == 0)
            return weir__error(-EINVAL,
                               "config.nplaces: invalid value 0 (affinity explicit needs 1..%u "
                               "places)",
                               (unsigned)WEIR_MAX_PLACES);
        for (unsigned i = 0; i < cfg->nplaces; i++) {
            if (cfg->places[i] > WEIR__MAX_PU_INDEX)
                return weir__error(-EINVAL, "config.places[%u]: invalid value %u (expected 0..%u)",
                                   i, cfg->places[i], WEIR__MAX_PU_INDEX);
            /* Duplicates are rejected as in weir_parse_places(): a PU
             * listed twice is almost always a typo, and the same placement
             * can be had with fewer places and more workers. */
            for (unsigned j = 0; j < i; j++)
                if (cfg->places[j] == cfg->places[i])
                    return weir__error(-EINVAL,
                                       "config.places[%u]: duplicate PU %u (also places[%u])", i,
                                       cfg->places[i], j);
        }
    }
    if (cfg->spin > WEIR__MAX_SPIN)
        return weir__error(-EINVAL, "config.spin: invalid value %u (expected 0..%u)", cfg->spin,
                           WEIR__MAX_SPIN);
    unsigned d = cfg->deque_initial;
    if (d < WEIR__MIN_DEQUE || d > WEIR__MAX_DEQUE || (d & (d - 1)) != 0)
        return weir__error(-EINVAL,
                           "config.deque_initial: invalid value %u (expected a power of two "
                           "%u..%u)",
                           d, WEIR__MIN_DEQUE, WEIR__MAX_DEQUE);
    if (cfg->stack_size != 0 && cfg->stack_size < WEIR__MIN_STACK)
        return weir__error(-EINVAL, "config.stack_size: invalid value %zu (expected 0 or >= %zu)",
                           cfg->stack_size, WEIR__MIN_STACK);
    if (cfg->synthetic_topology != NULL && cfg->synthetic_topology[0] == '\0')
        return weir__error(-EINVAL,
                           "config.synthetic_topology: invalid value '' (expected an hwloc "
                           "synthetic description, or NULL for the machine)");
    return 0;
}

/* ---------------------------------------------------------------- parsing helpers */

static bool weir__is_space(char c)
{
    return isspace((unsigned char)c) != 0;
}

/* Copy `text` without its surrounding whitespace into `buf`.
 * @return false when it does not fit (the caller reports the value as
 *         invalid: no valid value is that long). */
static bool weir__trim(const char *text, char *buf, size_t cap)
{
    while (weir__is_space(*text))
        text++;
    size_t n = strlen(text);
    while (n > 0 && weir__is_space(text[n - 1]))
        n--;
    if (n >= cap)
        return false;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return true;
}

/* Parse a decimal integer made of digits only, into [0, max].
 * @return false for an empty string, any other character, or a value above
 *         `max` (overflow included: the check happens before each step). */
static bool weir__parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (*s == '\0')
        return false;
    unsigned long v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned long digit = (unsigned long)(*s - '0');
        if (v > (max - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

/* Booleans accept what OpenMP and shell users type. */
static bool weir__parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- places */

/* The parser proper. On failure it writes the reason (without the list
 * itself) into `why`, so that weir_parse_places() and WEIR_PLACES can each
 * wrap it in a message that names their own subject. */
typedef struct weir__places_err {
    char why[96];
} weir__places_err;

/* Read one number at *pp, skipping whitespace before it.
 * @return 0 and advances *pp past the digits, or -EINVAL. */
static int weir__places_number(const char *text, const char **pp, unsigned *out,
                               weir__places_err *e)
{
    const char *p = *pp;
    while (weir__is_space(*p))
        p++;
    if (*p < '0' || *p > '9') {
        if (*p == '\0' || *p == ',')
            snprintf(e->why, sizeof e->why, "empty item at offset %td", p - text);
        else
            snprintf(e->why, sizeof e->why, "unexpected '%c' at offset %td", *p, p - text);
        return -EINVAL;
    }
    unsigned long v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        /* Checked at every digit, so v never overflows. */
        if (v > WEIR__MAX_PU_INDEX) {
            snprintf(e->why, sizeof e->why, "PU index at offset %td is above %u", start - text,
                     WEIR__MAX_PU_INDEX);
            return -EINVAL;
        }
        p++;
    }
    *out = (unsigned)v;
    *pp = p;
    return 0;
}

static int weir__places_parse(const char *text, unsigned *out, unsigned max, weir__places_err *e)
{
    const char *p = text;
    while (weir__is_space(*p))
        p++;
    if (*p == '\0') {
        snprintf(e->why, sizeof e->why, "empty list; expected e.g. 0-3,8");
        return -EINVAL;
    }
    unsigned n = 0;
    for (;;) {
        unsigned lo, hi;
        if (weir__places_number(text, &p, &lo, e) < 0)
            return -EINVAL;
        while (weir__is_space(*p))
            p++;
        hi = lo;
        if (*p == '-') {
            p++;
            if (weir__places_number(text, &p, &hi, e) < 0)
                return -EINVAL;
            if (hi < lo) {
                snprintf(e->why, sizeof e->why, "reversed range %u-%u", lo, hi);
                return -EINVAL;
            }
            while (weir__is_space(*p))
                p++;
        }
        if (*p != ',' && *p != '\0') {
            snprintf(e->why, sizeof e->why, "unexpected '%c' at offset %td", *p, p - text);
            return -EINVAL;
        }
        for (unsigned v = lo;; v++) {
            /* Quadratic, but n <= max (4096 for WEIR_PLACES) keeps it to a
             * few milliseconds at worst, and it needs no scratch memory. */
            for (unsigned j = 0; j < n; j++) {
                if (out[j] == v) {
                    snprintf(e->why, sizeof e->why, "PU %u listed twice", v);
                    return -EINVAL;
                }
            }
            if (n == max) {
                snprintf(e->why, sizeof e->why, "more than %u entries", max);
                return -E2BIG;
            }
            out[n++] = v;
            if (v == hi)
                break;
        }
        if (*p == '\0')
            break;
        p++; /* the comma */
    }
    return (int)n;
}

int weir_parse_places(const char *text, unsigned *out, unsigned max)
{
    if (text == NULL)
        return weir__error(-EINVAL, "places: NULL list");
    if (out == NULL && max > 0)
        return weir__error(-EINVAL, "places: NULL output array");
    weir__places_err e;
    int n = weir__places_parse(text, out, max, &e);
    if (n < 0)
        return weir__error(n, "places: invalid list '" WEIR__QUOTE "' (%s)", text, e.why);
    return n;
}

/* ---------------------------------------------------------------- affinity */

int weir_parse_affinity(const char *text, weir_affinity *out)
{
    /* "explicit" is deliberately absent: an explicit policy without its
     * list means nothing, so it comes only with WEIR_PLACES / cfg.places. */
    static const struct {
        const char *name;
        weir_affinity value;
    } names[] = {
        {"none", WEIR_AFFINITY_NONE},       {"false", WEIR_AFFINITY_NONE},
        {"compact", WEIR_AFFINITY_COMPACT}, {"close", WEIR_AFFINITY_COMPACT},
        {"true", WEIR_AFFINITY_COMPACT},    {"scatter", WEIR_AFFINITY_SCATTER},
        {"spread", WEIR_AFFINITY_SCATTER},
    };
    if (text == NULL || out == NULL)
        return weir__error(-EINVAL, "affinity: NULL argument");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].value;
            return 0;
        }
    }
    return weir__error(
        -EINVAL, "affinity: invalid value '" WEIR__QUOTE "' (expected none, compact or scatter)",
        text);
}

/* ---------------------------------------------------------------- environment */

/* The value of `name` without surrounding whitespace, in `buf`.
 * @return 1 when there is a value to apply, 0 when the variable is unset or
 *         empty (no change), -EINVAL when it is too long to be valid. */
static int weir__env(const char *name, char *buf, size_t cap, const char **raw)
{
    const char *v = getenv(name);
    *raw = v;
    if (v == NULL)
        return 0;
    if (!weir__trim(v, buf, cap))
        return -EINVAL;
    return buf[0] != '\0';
}

static int weir__env_uint(const char *name, unsigned long max, const char *expect, unsigned *dst)
{
    char buf[32];
    const char *raw;
    int have = weir__env(name, buf, sizeof buf, &raw);
    unsigned long v;
    if (have == 0)
        return 0;
    if (have < 0 || !weir__parse_uint(buf, max, &v))
        return weir__error(-EINVAL, "%s: invalid value '" WEIR__QUOTE "' (expected %s)", name, raw,
                           expect);
    *dst = (unsigned)v;
    return 0;
}

static int weir__env_bool(const char *name, bool *dst)
{
    char buf[16];
    const char *raw;
    int have = weir__env(name, buf, sizeof buf, &raw);
    if (have == 0)
        return 0;
    if (have < 0 || !weir__parse_bool(buf, dst))
        return weir__error(-EINVAL, "%s: invalid value '" WEIR__QUOTE "' (expected 0 or 1)", name,
                           raw);
    return 0;
}

int weir_config_from_env(weir_config *cfg)
{
    if (cfg == NULL)
        return weir__error(-EINVAL, "config: NULL pointer");

    /* Everything is parsed into a copy and committed at the end, so that a
     * bad variable leaves the caller's config exactly as it was. The copy is
     * about 16 KiB (the places array), fine for a control-path call. */
    weir_config tmp = *cfg;
    int err;
    char buf[32];
    const char *raw;

    err = weir__env_uint("WEIR_WORKERS", WEIR_MAX_WORKERS, "an integer 0..4096", &tmp.workers);
    if (err < 0)
        return err;

    bool have_affinity = false;
    int have = weir__env("WEIR_AFFINITY", buf, sizeof buf, &raw);
    if (have != 0) {
        if (have < 0 || weir_parse_affinity(buf, &tmp.affinity) < 0)
            return weir__error(-EINVAL,
                               "WEIR_AFFINITY: invalid value '" WEIR__QUOTE
                               "' (expected none, compact or scatter)",
                               raw);
        have_affinity = true;
    }

    const char *places = getenv("WEIR_PLACES");
    if (places != NULL) {
        const char *q = places;
        while (weir__is_space(*q))
            q++;
        if (*q != '\0') {
            weir__places_err e;
            int n = weir__places_parse(places, tmp.places, WEIR_MAX_PLACES, &e);
            if (n < 0)
                return weir__error(-EINVAL, "WEIR_PLACES: invalid value '" WEIR__QUOTE "' (%s)",
                                   places, e.why);
            tmp.nplaces = (unsigned)n;
            /* A place list implies explicit pinning. Explicitly asking for no
             * pinning still wins (OMP_PROC_BIND=false disables binding
             * whatever OMP_PLACES says); asking for compact or scatter at the
             * same time is a contradiction we refuse to resolve silently. */
            if (!have_affinity) {
                tmp.affinity = WEIR_AFFINITY_EXPLICIT;
            } else if (tmp.affinity != WEIR_AFFINITY_NONE) {
                return weir__error(-EINVAL,
                                   "WEIR_AFFINITY: value '" WEIR__QUOTE
                                   "' conflicts with WEIR_PLACES (a place list means explicit "
                                   "pinning; unset one of them)",
                                   raw);
            }
        }
    }

    err = weir__env_bool("WEIR_STATS", &tmp.print_stats);
    if (err < 0)
        return err;
    err = weir__env_bool("WEIR_NUMA", &tmp.numa);
    if (err < 0)
        return err;
    err = weir__env_uint("WEIR_SPIN", WEIR__MAX_SPIN, "an integer 0..1000000", &tmp.spin);
    if (err < 0)
        return err;

    *cfg = tmp;
    return 0;
}

int weir__env_display(void)
{
    char buf[16];
    const char *raw;
    int have = weir__env("WEIR_DISPLAY_ENV", buf, sizeof buf, &raw);
    if (have == 0)
        return 0;
    bool on;
    if (have > 0 && strcasecmp(buf, "verbose") == 0)
        return 2;
    if (have < 0 || !weir__parse_bool(buf, &on))
        return weir__error(
            -EINVAL, "WEIR_DISPLAY_ENV: invalid value '" WEIR__QUOTE "' (expected 0, 1 or verbose)",
            raw);
    return on ? 1 : 0;
}
