/*
 * libFuzzer harness for weir_config_from_env(), the WEIR_* environment
 * parser.
 *
 * Input layout:
 *   byte 0, bits 0..5  which of the six variables are set (bit i = vars[i]);
 *                      a clear bit unsets the variable
 *   byte 0, bits 6..7  the config the variables are applied to (bases[])
 *   the rest           the values, in vars[] order, separated by NUL bytes
 *                      (a value cannot contain NUL in a real environment);
 *                      missing values are empty strings
 * So "?4\0compact\0\0yes\0off\0100" (0x3f: all six set, default base) sets
 * WEIR_WORKERS=4, WEIR_AFFINITY=compact, WEIR_PLACES="", WEIR_STATS=yes,
 * WEIR_NUMA=off and WEIR_SPIN=100.
 *
 * Each call is checked against the contract in include/weir/config.h, and
 * against a reference written here from that contract (it shares only the
 * place-list reference of ref_places.h, fuzzed against the library on its
 * own by fuzz_places):
 *   - the result is 0 or -EINVAL, and equals the reference's;
 *   - on -EINVAL the config is unchanged (memcmp with a copy) and
 *     weir_last_error() starts with the name of the variable the reference
 *     blames (variables are checked in vars[] order) and quotes its value;
 *   - on 0 the config equals the reference's and weir_config_validate()
 *     accepts it.
 * A broken invariant prints what differed and aborts (a libFuzzer crash).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "weir.h"

#include "ref_places.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { V_WORKERS, V_AFFINITY, V_PLACES, V_STATS, V_NUMA, V_SPIN, NVARS };

static const char *const vars[NVARS] = {"WEIR_WORKERS", "WEIR_AFFINITY", "WEIR_PLACES",
                                        "WEIR_STATS",   "WEIR_NUMA",     "WEIR_SPIN"};

/* The library copies each trimmed value into a fixed buffer and rejects a
 * value that does not fit (no valid value is that long, except one padded
 * with leading zeros). Mirrored here so that the reference agrees; the limit
 * is listed in docs/reliability.md. */
#define REF_NUM_LEN  31 /* WEIR_WORKERS, WEIR_AFFINITY, WEIR_SPIN: char[32] */
#define REF_BOOL_LEN 15 /* WEIR_STATS, WEIR_NUMA: char[16] */

/* The config the variables are applied to. All are valid, so a successful
 * overlay must validate too. */
static void base_config(unsigned which, weir_config *cfg)
{
    weir_config_init(cfg);
    switch (which) {
    case 1: /* explicit places: WEIR_AFFINITY=none must keep them */
        cfg->affinity = WEIR_AFFINITY_EXPLICIT;
        cfg->places[0] = 2;
        cfg->places[1] = 0;
        cfg->nplaces = 2;
        break;
    case 2: /* every overlaid field away from its default */
        cfg->workers = 3;
        cfg->affinity = WEIR_AFFINITY_NONE;
        cfg->spin = 0;
        cfg->numa = false;
        cfg->print_stats = true;
        break;
    case 3:
        cfg->affinity = WEIR_AFFINITY_SCATTER;
        cfg->workers = WEIR_MAX_WORKERS;
        break;
    default:
        break;
    }
}

/* [b, e) = `v` without surrounding C-locale white space. */
static void ref_trim(const char *v, const char **b, const char **e)
{
    const char *s = v, *t = v + strlen(v);
    while (s < t && ref_space(*s))
        s++;
    while (t > s && ref_space(t[-1]))
        t--;
    *b = s;
    *e = t;
}

/* Copy a trimmed value into `buf` (cap bytes) if it fits in `limit` chars. */
static bool ref_take(const char *v, char *buf, size_t limit)
{
    const char *b, *e;
    ref_trim(v, &b, &e);
    if ((size_t)(e - b) > limit)
        return false;
    memcpy(buf, b, (size_t)(e - b));
    buf[e - b] = '\0';
    return true;
}

/* 1 = a non-blank value to apply, 0 = unset or blank (no change). */
static int ref_present(const char *v)
{
    if (v == NULL)
        return 0;
    const char *b, *e;
    ref_trim(v, &b, &e);
    return b < e;
}

static bool ref_uint(const char *v, unsigned long max, unsigned *out)
{
    char buf[REF_NUM_LEN + 1];
    if (!ref_take(v, buf, REF_NUM_LEN) || buf[0] == '\0')
        return false;
    unsigned long x = 0;
    for (const char *p = buf; *p; p++) {
        if (!ref_digit(*p))
            return false;
        x = x * 10 + (unsigned long)(*p - '0');
        /* At most 31 digits, but x must not wrap: stop once it is past max. */
        if (x > max)
            return false;
    }
    *out = (unsigned)x;
    return true;
}

static bool ref_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    char buf[REF_BOOL_LEN + 1];
    if (!ref_take(v, buf, REF_BOOL_LEN))
        return false;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(buf, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(buf, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool ref_affinity(const char *v, weir_affinity *out)
{
    static const struct {
        const char *name;
        weir_affinity a;
    } names[] = {{"none", WEIR_AFFINITY_NONE},       {"false", WEIR_AFFINITY_NONE},
                 {"compact", WEIR_AFFINITY_COMPACT}, {"close", WEIR_AFFINITY_COMPACT},
                 {"true", WEIR_AFFINITY_COMPACT},    {"scatter", WEIR_AFFINITY_SCATTER},
                 {"spread", WEIR_AFFINITY_SCATTER}};
    char buf[REF_NUM_LEN + 1];
    if (!ref_take(v, buf, REF_NUM_LEN))
        return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(buf, names[i].name) == 0) {
            *out = names[i].a;
            return true;
        }
    }
    return false;
}

/* The reference overlay. @return -1 and the config to expect, or the index
 * of the variable that must be blamed. */
static int ref_from_env(const char *const val[NVARS], weir_config *cfg)
{
    if (ref_present(val[V_WORKERS]) && !ref_uint(val[V_WORKERS], 4096, &cfg->workers))
        return V_WORKERS;
    bool have_affinity = ref_present(val[V_AFFINITY]);
    if (have_affinity && !ref_affinity(val[V_AFFINITY], &cfg->affinity))
        return V_AFFINITY;
    if (ref_present(val[V_PLACES])) {
        int n = ref_parse_places(val[V_PLACES], cfg->places, WEIR_MAX_PLACES);
        /* -E2BIG from the parser is -EINVAL here, like any bad value. */
        if (n < 0)
            return V_PLACES;
        cfg->nplaces = (unsigned)n;
        if (!have_affinity)
            cfg->affinity = WEIR_AFFINITY_EXPLICIT;
        else if (cfg->affinity != WEIR_AFFINITY_NONE)
            return V_AFFINITY; /* contradiction: names both variables */
    }
    if (ref_present(val[V_STATS]) && !ref_bool(val[V_STATS], &cfg->print_stats))
        return V_STATS;
    if (ref_present(val[V_NUMA]) && !ref_bool(val[V_NUMA], &cfg->numa))
        return V_NUMA;
    if (ref_present(val[V_SPIN]) && !ref_uint(val[V_SPIN], 1000000, &cfg->spin))
        return V_SPIN;
    return -1;
}

static void fail(const char *const val[NVARS], const char *what, long a, long b)
{
    fprintf(stderr, "fuzz_env: %s (%ld vs %ld); last error '%s'\n", what, a, b, weir_last_error());
    for (int i = 0; i < NVARS; i++)
        fprintf(stderr, "  %s=%s%.200s%s\n", vars[i], val[i] ? "'" : "(unset)",
                val[i] ? val[i] : "", val[i] ? "'" : "");
    abort();
}

/* setenv() keeps every value it was ever given (glibc cannot know whether a
 * caller still holds an old getenv() pointer), so millions of fuzz inputs
 * would grow the heap until libFuzzer's RSS limit fired. Instead each
 * variable lives in a buffer of ours that is handed to putenv(): the
 * environment points into it, and nothing is allocated per input. */
static char *env_buf[NVARS];
static size_t env_cap[NVARS];

static bool set_env(int i, const char *value)
{
    /* Out of the environment first, so that the buffer may move. */
    unsetenv(vars[i]);
    if (value == NULL)
        return true;
    size_t need = strlen(vars[i]) + 1 + strlen(value) + 1;
    if (need > env_cap[i]) {
        char *b = realloc(env_buf[i], need);
        if (b == NULL)
            return false;
        env_buf[i] = b;
        env_cap[i] = need;
    }
    snprintf(env_buf[i], env_cap[i], "%s=%s", vars[i], value);
    return putenv(env_buf[i]) == 0;
}

/* Three configs (about 16 KiB each) live across calls: static, so that a
 * deep libFuzzer stack is not needed. */
static weir_config cfg, before, want;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned mask = data[0] & 0x3f, base = data[0] >> 6;

    /* Split the rest at NUL bytes into NUL-terminated values. */
    char *copy = malloc(size);
    if (copy == NULL)
        return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    const char *val[NVARS];
    const char *p = copy, *end = copy + size - 1;
    for (int i = 0; i < NVARS; i++) {
        const char *v = p <= end ? p : "";
        if (p <= end)
            p += strlen(p) + 1;
        val[i] = (mask & (1u << i)) ? v : NULL;
        if (!set_env(i, val[i])) {
            free(copy);
            return 0;
        }
    }

    base_config(base, &cfg);
    before = cfg;
    want = cfg;
    int blame = ref_from_env(val, &want);

    weir_clear_error();
    int err = weir_config_from_env(&cfg);

    if (err != 0 && err != -EINVAL)
        fail(val, "result is neither 0 nor -EINVAL", err, 0);
    if ((err == 0) != (blame < 0))
        fail(val, "result differs from the reference (reference blames variable)", err, blame);
    if (err == 0) {
        if (memcmp(&cfg, &want, sizeof cfg) != 0)
            fail(val, "accepted config differs from the reference", 0, 0);
        if (weir_config_validate(&cfg) != 0)
            fail(val, "accepted config does not validate", 0, 0);
    } else {
        if (memcmp(&cfg, &before, sizeof cfg) != 0)
            fail(val, "rejected overlay modified the config", err, 0);
        const char *msg = weir_last_error();
        size_t len = strlen(vars[blame]);
        if (strncmp(msg, vars[blame], len) != 0 || msg[len] != ':')
            fail(val, "message does not start with the blamed variable", err, blame);
        /* The value is quoted (up to 64 characters): check its first few. */
        char quoted[18];
        snprintf(quoted, sizeof quoted, "'%.16s", val[blame]);
        if (strstr(msg, quoted) == NULL)
            fail(val, "message does not quote the value", err, blame);
        /* A valid affinity blamed means the conflict with a place list. */
        weir_affinity a;
        if (blame == V_AFFINITY && ref_affinity(val[V_AFFINITY], &a) &&
            strstr(msg, "WEIR_PLACES") == NULL)
            fail(val, "conflict message does not name WEIR_PLACES", err, blame);
    }
    free(copy);
    return 0;
}
