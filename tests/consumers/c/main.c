/* A C consumer of an installed weir: fork-join fib, a small pipeline, the
 * version and the description. Exits 1 on a wrong result. */
#include <stdio.h>
#include <string.h>
#include <weir.h>

WEIR_TASK_1(long, fib, int, n)
{
    if (n < 2)
        return n;
    WEIR_SPAWN(fib, n - 1);
    long b = WEIR_CALL(fib, n - 2);
    long a = WEIR_SYNC(fib);
    return a + b;
}

static void twice(void *state, const void *in, void *out)
{
    (void)state;
    *(long *)out = 2 * *(const long *)in;
}

int main(void)
{
    if (strcmp(weir_version(), WEIR_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: library %s, headers %s\n", weir_version(), WEIR_VERSION_STRING);
        return 1;
    }
    weir_runtime *rt;
    if (weir_runtime_create(NULL, &rt) != 0) {
        fprintf(stderr, "consumer: %s\n", weir_last_error());
        return 1;
    }
    long f = fib_run(rt, 20);
    long items[100], sum = 0;
    for (int i = 0; i < 100; i++)
        items[i] = i;
    weir_collector out;
    weir_collector_init(&out, sizeof(long));
    weir_term *t = WEIR_SEQ(weir_array_source("items", items, 100, sizeof(long)),
                            weir_map("twice", sizeof(long), sizeof(long), twice, NULL),
                            weir_collect("out", &out));
    weir_pipeline *p;
    int err = t != NULL ? weir_pipeline_create(rt, t, NULL, &p) : -1;
    if (err == 0)
        err = weir_pipeline_run(p);
    if (err != 0) {
        fprintf(stderr, "consumer: pipeline: %s\n", weir_last_error());
        return 1;
    }
    weir_pipeline_destroy(p);
    for (size_t i = 0; i < out.count; i++)
        sum += ((const long *)out.data)[i];
    weir_collector_deinit(&out);
    char text[256];
    int n = weir_runtime_describe(rt, text, sizeof text);
    weir_runtime_destroy(rt);
    if (f != 6765 || sum != 9900 || n <= 0) {
        fprintf(stderr, "consumer: fib(20) = %ld, sum = %ld, describe %d\n", f, sum, n);
        return 1;
    }
    printf("consumer ok: weir %s\n", weir_version());
    return 0;
}
