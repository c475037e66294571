/*
 * vma tool: the restore map of `vma extract -r`
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "block/vma.h"
#include "vma-restore-map.h"

#define MAP_SYNTAX  "[format=<fmt>:][throttling.bps=<n>:]" \
                    "[throttling.group=<g>:][cache=<mode>:]" \
                    "{0|1}:<devname>=<target> or skip=<devname>"

/* The options in front of the 0/1 flag, each at most once */
enum {
    OPT_FORMAT,
    OPT_BPS,
    OPT_GROUP,
    OPT_CACHE,
    OPT_COUNT,
};

static const char *const option_names[OPT_COUNT] = {
    [OPT_FORMAT] = "format=",
    [OPT_BPS] = "throttling.bps=",
    [OPT_GROUP] = "throttling.group=",
    [OPT_CACHE] = "cache=",
};

static bool map_error(GError **errp, unsigned line_no, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static bool map_error(GError **errp, unsigned line_no, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, VMA_ERROR, VMA_ERROR_INVALID_ARGUMENT,
                "restore map line %u: %s", line_no, msg);
    return false;
}

void vma_map_entry_free(VmaMapEntry *e)
{
    if (!e) {
        return;
    }
    g_free(e->devname);
    g_free(e->format);
    g_free(e->target);
    g_free((char *)e->opts.group);
    g_free((char *)e->opts.cache);
    g_free(e);
}

/* Store the option at the start of *@p and move past its ':' */
static bool parse_option(VmaMapEntry *e, unsigned opt, const char **p,
                         GError **errp)
{
    const char *value = *p + strlen(option_names[opt]);
    const char *colon = strchr(value, ':');
    g_autofree char *v = NULL;
    char *end;

    if (!colon || colon == value) {
        return map_error(errp, e->line, "'%.*s' needs a value followed by "
                         "':'", (int)strlen(option_names[opt]) - 1,
                         option_names[opt]);
    }
    v = g_strndup(value, colon - value);
    *p = colon + 1;
    switch (opt) {
    case OPT_FORMAT:
        e->format = g_steal_pointer(&v);
        break;
    case OPT_BPS:
        errno = 0;
        e->opts.bps = g_ascii_strtoull(v, &end, 10);
        if (errno || *end || !g_ascii_isdigit(v[0])) {
            return map_error(errp, e->line, "throttling.bps '%s' is not a "
                             "number of bytes per second", v);
        }
        break;
    case OPT_GROUP:
        e->opts.group = g_steal_pointer(&v);
        break;
    case OPT_CACHE:
        e->opts.cache = g_steal_pointer(&v);
        break;
    }
    return true;
}

VmaMapEntry *vma_map_entry_parse(const char *line, unsigned line_no,
                                 GError **errp)
{
    g_autoptr(VmaMapEntry) e = g_new0(VmaMapEntry, 1);
    bool seen[OPT_COUNT] = { false };
    const char *p = line;
    const char *eq;

    e->line = line_no;
    if (g_str_has_prefix(line, "skip=")) {
        if (!line[strlen("skip=")]) {
            map_error(errp, line_no, "'skip=' needs a device name");
            return NULL;
        }
        e->skip = true;
        e->devname = g_strdup(line + strlen("skip="));
        return g_steal_pointer(&e);
    }
    for (;;) {
        unsigned opt;

        for (opt = 0; opt < OPT_COUNT; opt++) {
            if (g_str_has_prefix(p, option_names[opt])) {
                break;
            }
        }
        if (opt == OPT_COUNT) {
            break;
        }
        if (seen[opt]) {
            map_error(errp, line_no, "'%.*s' given twice",
                      (int)strlen(option_names[opt]) - 1, option_names[opt]);
            return NULL;
        }
        seen[opt] = true;
        if (!parse_option(e, opt, &p, errp)) {
            return NULL;
        }
    }
    if ((p[0] != '0' && p[0] != '1') || p[1] != ':') {
        map_error(errp, line_no, "cannot parse '%s': expected " MAP_SYNTAX,
                  line);
        return NULL;
    }
    e->opts.zero_known = p[0] == '0';
    p += 2;
    eq = strchr(p, '=');
    if (!eq || eq == p || !eq[1]) {
        map_error(errp, line_no, "cannot parse '%s': expected "
                  "<devname>=<target> after '%c:'", line, p[-2]);
        return NULL;
    }
    e->devname = g_strndup(p, eq - p);
    e->target = g_strdup(eq + 1);
    return g_steal_pointer(&e);
}

/* Lines of one throttling group must not ask for different limits */
static bool check_groups(GPtrArray *entries, GError **errp)
{
    for (unsigned i = 0; i < entries->len; i++) {
        VmaMapEntry *a = entries->pdata[i];

        for (unsigned j = 0; j < i && a->opts.group && a->opts.bps; j++) {
            VmaMapEntry *b = entries->pdata[j];

            if (b->opts.group && b->opts.bps &&
                !strcmp(a->opts.group, b->opts.group) &&
                a->opts.bps != b->opts.bps) {
                return map_error(errp, a->line, "throttling group '%s' was "
                                 "given throttling.bps=%" G_GUINT64_FORMAT
                                 " on line %u and %" G_GUINT64_FORMAT
                                 " here", a->opts.group, b->opts.bps,
                                 b->line, a->opts.bps);
            }
        }
    }
    return true;
}

static bool add_entry(GPtrArray *entries, VmaMapEntry *e, GError **errp)
{
    for (unsigned i = 0; i < entries->len; i++) {
        VmaMapEntry *other = entries->pdata[i];

        if (!strcmp(other->devname, e->devname)) {
            map_error(errp, e->line, "device '%s' was already mapped on "
                      "line %u", e->devname, other->line);
            vma_map_entry_free(e);
            return false;
        }
    }
    g_ptr_array_add(entries, e);
    return true;
}

/* getline(), retrying EINTR unless the user asked us to stop */
static ssize_t read_line(FILE *f, char **line, size_t *size)
{
    ssize_t n;

    for (;;) {
        errno = 0;
        n = getline(line, size, f);
        if (n >= 0 || errno != EINTR || vma_interrupted) {
            return n;
        }
        clearerr(f);
    }
}

GPtrArray *vma_restore_map_read(const char *path, GError **errp)
{
    g_autoptr(GPtrArray) entries =
        g_ptr_array_new_with_free_func((GDestroyNotify)vma_map_entry_free);
    g_autofree char *line = NULL;
    size_t size = 0;
    unsigned line_no = 0;
    bool is_stdin = !strcmp(path, "-");
    FILE *f;
    int fd;

    /* Blocks on a FIFO until the other side opens it: after the listing */
    do {
        fd = is_stdin ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR && !vma_interrupted);
    if (fd < 0) {
        int err = errno;

        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot open the restore map '%s': %s", path,
                    g_strerror(err));
        return NULL;
    }
    f = fdopen(fd, "r");
    if (!f) {
        int err = errno;

        close(fd);
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                    "cannot read the restore map '%s': %s", path,
                    g_strerror(err));
        return NULL;
    }
    for (;;) {
        ssize_t n = read_line(f, &line, &size);
        VmaMapEntry *e;

        if (n < 0) {
            if (ferror(f)) {
                int err = errno ? errno : EIO;

                g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                            "cannot read the restore map '%s': %s", path,
                            g_strerror(err));
                fclose(f);
                return NULL;
            }
            break;
        }
        line_no++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n == 0 || !strcmp(line, "done")) {
            break;
        }
        e = vma_map_entry_parse(line, line_no, errp);
        if (!e || !add_entry(entries, e, errp)) {
            fclose(f);
            return NULL;
        }
    }
    fclose(f);
    if (!check_groups(entries, errp)) {
        return NULL;
    }
    return g_steal_pointer(&entries);
}
