/*
 * vma tool: human progress on stderr when it is a terminal
 *
 * One line, rewritten in place at most twice a second, plain ASCII:
 *   extract: 45% 922.0 MiB of 2.0 GiB, 811.3 MiB/s, ETA 0:00:02
 * or, when the total is not known:
 *   extract: 922.0 MiB, 811.3 MiB/s
 * Scripts read the reference tool's lines instead (vma-report.h); when
 * stderr is not a terminal, this prints nothing.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>
#include "vma-progress.h"

#define PROGRESS_INTERVAL_US    (G_USEC_PER_SEC / 2)

struct VmaProgress {
    char *what;
    uint64_t total;
    int64_t start_us;
    int64_t last_report_us;
    size_t last_len;        /* of the line on screen, to blank its rest */
};

VmaProgress *vma_progress_new(const char *what, uint64_t total)
{
    VmaProgress *p;

    if (!isatty(STDERR_FILENO)) {
        return NULL;
    }
    p = g_new0(VmaProgress, 1);
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

/* "922.0 MiB": ASCII only (GLib's sizes may use a no-break space) */
static void append_size(GString *s, double bytes)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                         "PiB", "EiB" };
    unsigned u = 0;

    while (bytes >= 1024 && u + 1 < G_N_ELEMENTS(units)) {
        bytes /= 1024;
        u++;
    }
    if (u == 0) {
        g_string_append_printf(s, "%.0f B", bytes);
    } else {
        g_string_append_printf(s, "%.1f %s", bytes, units[u]);
    }
}

static void progress_print(VmaProgress *p, uint64_t done, int64_t now_us,
                           bool final)
{
    g_autoptr(GString) line = g_string_new(NULL);
    double seconds = (double)(now_us - p->start_us) / G_USEC_PER_SEC;
    double rate = seconds > 0.001 ? done / seconds : 0;

    g_string_append_printf(line, "%s: ", p->what);
    if (p->total) {
        /* In double: no overflow, and a stream may exceed its estimate */
        double percent = MIN(100.0, (double)done * 100.0 / p->total);

        g_string_append_printf(line, "%d%% ", (int)percent);
        append_size(line, done);
        g_string_append(line, " of ");
        append_size(line, p->total);
    } else {
        append_size(line, done);
    }
    if (rate > 0) {
        g_string_append(line, ", ");
        append_size(line, rate);
        g_string_append(line, "/s");
    }
    if (final) {
        g_string_append_printf(line, ", done in %.1f s", seconds);
    } else if (p->total && rate > 0 && done < p->total) {
        uint64_t eta = (uint64_t)((p->total - done) / rate);

        g_string_append_printf(line, ", ETA %" PRIu64 ":%02u:%02u",
                               eta / 3600, (unsigned)(eta / 60 % 60),
                               (unsigned)(eta % 60));
    }
    fprintf(stderr, "\r%s%*s%s", line->str,
            (int)(p->last_len > line->len ? p->last_len - line->len : 0), "",
            final ? "\n" : "");
    fflush(stderr);
    p->last_len = line->len;
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
        /* Done: the total was an estimate (a RAM state, an incremental) */
        p->total = done;
        progress_print(p, done, g_get_monotonic_time(), true);
    }
}
