/*
 * Term layer: built-in terms — sources (array, range, counter, file lines),
 * id, print, add-index, collect, running statistics.
 */
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(terms_builtin, .init = rt_setup, .fini = rt_teardown, .timeout = 30);

Test(terms_builtin, array_source_emits_the_array_in_order)
{
    item items[1000];
    for (int i = 0; i < 1000; i++)
        items[i] = (item){i, 3 * i};
    for (int k = 0; k < 3; k++) {
        weir_collector out;
        weir_collector_init(&out, sizeof(item));
        weir_term *t = weir_seq2(weir_array_source("items", items, 1000, sizeof(item)),
                                 weir_collect(NULL, &out));
        weir_pipeline_config c = cfg_of(all_modes[k], 64, 100);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(out.count, 1000);
        cr_assert_eq(memcmp(out.data, items, sizeof items), 0);
        weir_collector_deinit(&out);
    }
    /* An empty array ends at once. */
    _Atomic uint64_t n = 0;
    weir_term *t = weir_seq2(weir_array_source("none", items, 0, sizeof(item)),
                             count_sink(NULL, sizeof(item), &n));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    cr_assert_eq(n, 0);
}

Test(terms_builtin, range_source_counts_up_and_down)
{
    weir_collector out;
    weir_collector_init(&out, 8);
    weir_term *t = weir_seq2(weir_range_source("down", 10, -5, -3), weir_collect(NULL, &out));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    const int64_t want[] = {10, 7, 4, 1, -2};
    cr_assert_eq(out.count, 5);
    cr_assert_eq(memcmp(out.data, want, sizeof want), 0);
    weir_collector_deinit(&out);
    /* Near INT64_MAX: no wrap-around. */
    _Atomic uint64_t n = 0;
    t = weir_seq2(weir_range_source("edge", INT64_MAX - 5, INT64_MAX, 2), count_sink(NULL, 8, &n));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    cr_assert_eq(n, 3);
}

typedef struct stop_after {
    weir_pipeline *p;
    uint64_t count;
} stop_after;

static int stop_after_fn(void *state, const void *in)
{
    (void)in;
    stop_after *s = state;
    if (++s->count == 1000)
        weir_pipeline_stop(s->p);
    return 0;
}

Test(terms_builtin, counter_source_runs_until_stopped)
{
    for (int k = 0; k < 3; k++) {
        stop_after s = {0};
        weir_term *t =
            weir_seq2(weir_counter_source("ticks", 42), weir_sink("stopper", 8, stop_after_fn, &s));
        weir_pipeline_config c = cfg_of(all_modes[k], 0, 0);
        weir_pipeline *p;
        cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0);
        s.p = p;
        cr_assert_eq(weir_pipeline_run(p), 0);
        cr_assert_geq(s.count, 1000);
        weir_pipeline_destroy(p);
    }
}

Test(terms_builtin, file_lines_reads_lines_with_numbers_and_truncation)
{
    char path[] = "/tmp/weir-lines-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "first\nsecond line\r\n\n");
    for (int i = 0; i < 300; i++)
        fputc('x', f);
    fprintf(f, "\nlast without newline");
    fclose(f);
    for (int k = 0; k < 3; k++) {
        weir_collector out;
        weir_collector_init(&out, sizeof(weir_line));
        weir_term *t = weir_seq2(weir_file_lines_fixed("lines", path), weir_collect(NULL, &out));
        weir_pipeline_config c = cfg_of(all_modes[k], 2, 2);
        cr_assert_eq(run_cfg(t, &c, NULL), 0);
        cr_assert_eq(out.count, 5);
        const weir_line *l = out.data;
        cr_assert_str_eq(l[0].text, "first");
        cr_assert_eq(l[0].number, 1);
        cr_assert_str_eq(l[1].text, "second line");
        cr_assert_eq(l[2].len, 0);
        cr_assert_eq(l[3].len, WEIR_LINE_TEXT);
        cr_assert_eq(l[3].truncated, 1);
        cr_assert_str_eq(l[4].text, "last without newline");
        cr_assert_eq(l[4].number, 5);
        weir_collector_deinit(&out);
    }
    unlink(path);
}

Test(terms_builtin, file_lines_reports_a_missing_file_with_the_term_name)
{
    weir_term *t =
        weir_seq2(weir_file_lines_fixed("config", "/nonexistent/weir/file"), weir_stop());
    weir_pipeline *p;
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, &p), -ENOENT);
    const char *m = weir_pipeline_error(p);
    cr_assert(strstr(m, "term 'config'") && strstr(m, "cannot open") &&
                  strstr(m, "/nonexistent/weir/file"),
              "%s", m);
    weir_pipeline_destroy(p);
}

Test(terms_builtin, file_lines_reports_a_read_error_with_the_errno)
{
    weir_term *t = weir_seq2(weir_file_lines_fixed("dir", "/tmp"), weir_stop());
    weir_pipeline *p;
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, &p), -EISDIR);
    const char *m = weir_pipeline_error(p);
    cr_assert(strstr(m, "term 'dir'") && strstr(m, "read error on '/tmp'"), "%s", m);
    weir_pipeline_destroy(p);
}

/* A FIFO whose writer never writes: the read blocks for ever, as on a
 * silent stdin or socket. The source's built-in interrupt function wakes it
 * on stop, cancel and destroy, after it delivered the lines already
 * written. */
Test(terms_builtin, file_lines_blocked_on_a_silent_fifo_ends_on_stop_cancel_and_destroy)
{
    char dir[] = "/tmp/weir-fifo-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/fifo", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    for (int k = 0; k < 3; k++) {
        for (int how = 0; how < 3; how++) { /* stop, cancel, destroy */
            /* O_RDWR: opening the FIFO does not wait for the reader, and
             * the writer end stays open, so the reader never sees EOF. */
            int w = open(path, O_RDWR);
            cr_assert_geq(w, 0);
            cr_assert_eq(write(w, "one\ntwo\n", 8), 8);
            weir_collector out;
            weir_collector_init(&out, sizeof(weir_line));
            weir_term *t = weir_seq2(weir_file_lines_fixed("fifo", path), weir_collect(NULL, &out));
            weir_pipeline_config c = cfg_of(all_modes[k], 0, 0);
            weir_pipeline *p;
            cr_assert_eq(weir_pipeline_create(rt, t, &c, &p), 0, "%s", weir_last_error());
            cr_assert_eq(weir_pipeline_start(p), 0);
            for (int i = 0;
                 i < 10000 && weir_pipeline_join_for(p, 1000 * 1000) == -ETIMEDOUT && out.count < 2;
                 i++)
                ;
            cr_assert_eq(out.count, 2, "mode %s: the lines written arrive",
                         weir_exec_mode_name(all_modes[k]));
            cr_assert_eq(weir_pipeline_join_for(p, 50 * 1000 * 1000), -ETIMEDOUT,
                         "blocked in read()");
            if (how == 2) {
                weir_pipeline_destroy(p); /* cancels, interrupts, joins */
            } else {
                if (how == 0)
                    cr_assert_eq(weir_pipeline_stop(p), 0);
                else
                    cr_assert_eq(weir_pipeline_cancel(p), 0);
                int r = weir_pipeline_join_for(p, 5ull * 1000 * 1000 * 1000);
                cr_assert_eq(r, how == 0 ? 0 : -ECANCELED, "mode %s, %s: join returned %d (%s)",
                             weir_exec_mode_name(all_modes[k]), how == 0 ? "stop" : "cancel", r,
                             weir_pipeline_error(p));
                weir_pipeline_destroy(p);
            }
            cr_assert_str_eq(((const weir_line *)out.data)[1].text, "two");
            weir_collector_deinit(&out);
            close(w);
        }
    }
    unlink(path);
    rmdir(dir);
}

static void fmt_int(FILE *f, const void *rec, void *arg)
{
    int64_t v;
    memcpy(&v, rec, sizeof v);
    fprintf(f, "%s=%lld", (const char *)arg, (long long)v);
}

Test(terms_builtin, print_writes_one_line_per_record_and_passes_it_on)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    seq_check chk;
    weir_term *t =
        WEIR_SEQ(weir_range_source("src", 0, 3, 1), weir_print("show", 8, f, fmt_int, "v"),
                 weir_print(NULL, 8, f, NULL, NULL), seq_sink("check", &chk, 0));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    fclose(f);
    cr_assert_eq(chk.count, 3);
    cr_assert_eq(chk.bad, 0);
    cr_assert(strstr(buf, "v=0\n") && strstr(buf, "v=2\n"), "%s", buf);
    cr_assert(strstr(buf, ": 01 00 00 00 00 00 00 00\n"), "%s", buf);
    free(buf);
}

Test(terms_builtin, add_index_prepends_a_counter)
{
    weir_collector out;
    weir_collector_init(&out, 16);
    weir_term *t =
        WEIR_SEQ(weir_range_source("src", 100, 200, 1), weir_filter("even", 8, int64_even, NULL),
                 weir_add_index("idx", 8), weir_collect(NULL, &out));
    cr_assert_eq(run_mode(t, WEIR_EXEC_THREADS, NULL), 0);
    cr_assert_eq(out.count, 50);
    const uint64_t *v = out.data;
    for (uint64_t i = 0; i < 50; i++) {
        cr_assert_eq(v[2 * i], i);
        cr_assert_eq(v[2 * i + 1], 100 + 2 * i);
    }
    weir_collector_deinit(&out);
}

Test(terms_builtin, running_statistics_match_welford)
{
    double xs[10];
    for (int i = 0; i < 10; i++)
        xs[i] = i + 1;
    weir_collector all, sum, mean, sd;
    weir_collector_init(&all, sizeof(weir_running));
    weir_collector_init(&sum, 8);
    weir_collector_init(&mean, 8);
    weir_collector_init(&sd, 8);
    weir_term *t =
        weir_seq2(weir_array_source("x", xs, 10, sizeof(double)),
                  WEIR_PAR(weir_seq2(weir_running_stats("stats"), weir_collect(NULL, &all)),
                           weir_seq2(weir_sum("sum"), weir_collect(NULL, &sum)),
                           weir_seq2(weir_mean("mean"), weir_collect(NULL, &mean)),
                           weir_seq2(weir_std("std"), weir_collect(NULL, &sd))));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0);
    cr_assert_eq(all.count, 10);
    const weir_running *r = all.data;
    cr_assert_eq(r[9].n, 10);
    cr_assert_float_eq(r[9].sum, 55.0, 1e-9);
    cr_assert_float_eq(r[9].mean, 5.5, 1e-9);
    cr_assert_float_eq(r[9].std, 3.0276503540974917, 1e-9);
    cr_assert_float_eq(r[0].std, 0.0, 1e-12);
    cr_assert_float_eq(((double *)sum.data)[9], 55.0, 1e-9);
    cr_assert_float_eq(((double *)mean.data)[4], 3.0, 1e-9);
    cr_assert_float_eq(((double *)sd.data)[9], 3.0276503540974917, 1e-9);
    weir_collector_deinit(&all);
    weir_collector_deinit(&sum);
    weir_collector_deinit(&mean);
    weir_collector_deinit(&sd);
}

static int frees;
static void count_free(void *p)
{
    frees++;
    free(p);
}

Test(terms_builtin, state_free_functions_run_once_at_destroy)
{
    frees = 0;
    weir_term *t = weir_seq2(
        weir_range_source("src", 0, 10, 1),
        weir_term_on_free(weir_sink("s", 8, count_fn, calloc(1, sizeof(_Atomic uint64_t))),
                          count_free));
    cr_assert_eq(run_mode(t, WEIR_EXEC_POOL, NULL), 0); /* destroys the pipeline and its tree */
    cr_assert_eq(frees, 1);
    /* A tree that never ran frees its states too. */
    weir_term *u =
        weir_seq2(weir_range_source("src", 0, 10, 1),
                  weir_term_on_free(weir_map("m", 8, 8, int64_twice, malloc(4)), count_free));
    weir_term_destroy(u);
    cr_assert_eq(frees, 2);
}
