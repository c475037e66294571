/*
 * vma tool: `-v` progress reports on stderr
 *
 * One line per report, so that logs of long restores stay readable:
 *   extract: 45% (922.0 MiB of 2.0 GiB, 811.3 MiB/s)
 * or, when the total is not known:
 *   extract: 922.0 MiB (811.3 MiB/s)
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdbool.h>
#include <stdio.h>
#include "vma-progress.h"

#define PROGRESS_INTERVAL_US    (G_USEC_PER_SEC / 2)

struct VmaProgress {
    char *what;
    uint64_t total;
    int64_t start_us;
    int64_t last_report_us;
};

VmaProgress *vma_progress_new(const char *what, uint64_t total)
{
    VmaProgress *p = g_new0(VmaProgress, 1);

    p->what = g_strdup(what);
    p->total = total;
    p->start_us = p->last_report_us = g_get_monotonic_time();
    return p;
}

void vma_progress_free(VmaProgress *p)
{
    if (p) {
        g_free(p->what);
        g_free(p);
    }
}

static char *format_size(uint64_t bytes)
{
    return g_format_size_full(bytes, G_FORMAT_SIZE_IEC_UNITS);
}

static void progress_print(VmaProgress *p, uint64_t done, int64_t now_us,
                           bool final)
{
    g_autofree char *done_str = format_size(done);
    g_autofree char *rate_str = NULL;
    g_autoptr(GString) line = g_string_new(NULL);
    double seconds = (double)(now_us - p->start_us) / G_USEC_PER_SEC;

    g_string_append_printf(line, "%s: ", p->what);
    if (p->total) {
        g_autofree char *total_str = format_size(p->total);
        /* In double: no overflow, and a stream may exceed its estimate */
        double percent = MIN(100.0, (double)done * 100.0 / p->total);

        g_string_append_printf(line, "%d%% (%s of %s", (int)percent,
                               done_str, total_str);
    } else {
        g_string_append_printf(line, "%s (", done_str);
    }
    if (seconds > 0.001) {
        rate_str = format_size((uint64_t)(done / seconds));
        g_string_append_printf(line, "%s%s/s", p->total ? ", " : "",
                               rate_str);
    } else if (!p->total) {
        g_string_append(line, "-");
    }
    g_string_append(line, ")");
    if (final) {
        g_string_append_printf(line, " done in %.1f s", seconds);
    }
    fprintf(stderr, "%s\n", line->str);
}

void vma_progress_update(VmaProgress *p, uint64_t done)
{
    int64_t now_us;

    if (!p) {
        return;
    }
    now_us = g_get_monotonic_time();
    if (now_us - p->last_report_us < PROGRESS_INTERVAL_US) {
        return;
    }
    p->last_report_us = now_us;
    progress_print(p, done, now_us, false);
}

void vma_progress_finish(VmaProgress *p, uint64_t done)
{
    if (p) {
        progress_print(p, done, g_get_monotonic_time(), true);
    }
}
