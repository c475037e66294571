/*
 * vma tool: `vma list` and `vma config`, the commands that read only the
 * archive header
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "vma-cmd.h"

/* ------------------------------------------------------------------------ */
/* vma list                                                                  */
/* ------------------------------------------------------------------------ */

/* The date as ctime(3) prints it, without the newline */
static char *format_ctime(int64_t ctime_s)
{
    time_t t = (time_t)ctime_s;
    struct tm tm;
    char buf[64];

    if ((int64_t)t != ctime_s || !localtime_r(&t, &tm) ||
        !strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S %Y", &tm)) {
        return g_strdup_printf("%" PRId64 " (not a valid date)", ctime_s);
    }
    return g_strdup(buf);
}

/*
 * The backup-chain blob, parsed; NULL if there is none.  An invalid one is
 * listed as such (a warning on stderr): the listing still shows the rest.
 */
static VmaChainInfo *list_get_chain(VmaReader *r)
{
    g_autoptr(GError) err = NULL;
    VmaChainInfo *c = NULL;

    if (!vma_chain_from_reader(r, false, &c, &err)) {
        vma_cmd_error("warning: %s", err->message);
    }
    return c;
}

/* CHAIN: lines (before CTIME:, which ends the listing for scripts) */
static void list_print_chain(const VmaChainInfo *c)
{
    char str[VMA_UUID_STR_SIZE];

    vma_uuid_unparse(c->uuid, str);
    printf("CHAIN: uuid=%s depth=%u", str, c->depth);
    if (c->depth) {
        vma_uuid_unparse(vma_chain_get_base(c), str);
        printf(" base=%s chain=", str);
        for (unsigned i = 0; i < c->depth; i++) {
            vma_uuid_unparse(c->chain[i], str);
            printf("%s%s", i ? "," : "", str);
        }
    }
    printf("\n");
    for (unsigned i = 0; i < c->disks->len; i++) {
        const VmaChainDisk *d = c->disks->pdata[i];
        g_autofree char *name = vma_printable_name(d->name);

        printf("CHAIN: disk=%s %s%s%s\n", name,
               d->incremental ? "incremental" : "full",
               d->reason ? " reason=" : "", d->reason ? d->reason : "");
    }
}

void vma_list_print_human(VmaReader *r)
{
    g_autofree char *date = format_ctime(vma_reader_get_ctime(r));
    VmaChainInfo *chain = list_get_chain(r);

    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);
        g_autofree char *name = vma_printable_name(c->name);

        printf("CFG: size: %zu name: %s\n", c->len, name);
    }
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);
        g_autofree char *name = vma_printable_name(dev->name);

        if (dev->is_vmstate) {
            printf("VMSTATE: dev_id=%u memory: %" PRIu64 "\n", dev->dev_id,
                   dev->size);
        } else {
            printf("DEV: dev_id=%u size: %" PRIu64 " devname: %s\n",
                   dev->dev_id, dev->size, name);
        }
    }
    if (chain) {
        list_print_chain(chain);
        vma_chain_free(chain);
    }
    printf("CTIME: %s\n", date);
}

/* Append @str as a JSON string; bytes that are not UTF-8 become U+FFFD */
static void json_append_string(GString *out, const char *str)
{
    g_autofree char *valid = NULL;

    if (!g_utf8_validate(str, -1, NULL)) {
        str = valid = g_utf8_make_valid(str, -1);
    }
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        if (*p == '"' || *p == '\\') {
            g_string_append_c(out, '\\');
            g_string_append_c(out, *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            g_string_append_printf(out, "\\u%04x", *p);
        } else {
            g_string_append_c(out, *p);
        }
    }
    g_string_append_c(out, '"');
}

static void json_append_uuid(GString *out, const uint8_t *uuid)
{
    char str[VMA_UUID_STR_SIZE];

    vma_uuid_unparse(uuid, str);
    g_string_append_printf(out, "\"%s\"", str);
}

/* The chain blob as an object, or null */
static void list_json_chain(GString *out, VmaReader *r)
{
    VmaChainInfo *c = list_get_chain(r);

    if (!c) {
        g_string_append(out, "null");
        return;
    }
    g_string_append_printf(out, "{\"format\": %d, \"uuid\": ",
                           VMA_CHAIN_FORMAT);
    json_append_uuid(out, c->uuid);
    g_string_append_printf(out, ", \"depth\": %u, \"base\": ", c->depth);
    if (c->depth) {
        json_append_uuid(out, vma_chain_get_base(c));
    } else {
        g_string_append(out, "null");
    }
    g_string_append(out, ", \"chain\": [");
    for (unsigned i = 0; i < c->depth; i++) {
        g_string_append(out, i ? ", " : "");
        json_append_uuid(out, c->chain[i]);
    }
    g_string_append(out, "], \"disks\": [");
    for (unsigned i = 0; i < c->disks->len; i++) {
        const VmaChainDisk *d = c->disks->pdata[i];

        g_string_append(out, i ? ", {\"name\": " : "{\"name\": ");
        json_append_string(out, d->name);
        g_string_append_printf(out, ", \"mode\": \"%s\", \"reason\": ",
                               d->incremental ? "incremental" : "full");
        if (d->reason) {
            json_append_string(out, d->reason);
        } else {
            g_string_append(out, "null");
        }
        g_string_append_c(out, '}');
    }
    g_string_append(out, "]}");
    vma_chain_free(c);
}

static void list_json(VmaReader *r)
{
    g_autoptr(GString) out = g_string_new("{\"uuid\": ");
    uint8_t uuid[VMA_UUID_SIZE];
    char uuid_str[VMA_UUID_STR_SIZE];

    vma_reader_get_uuid(r, uuid);
    vma_uuid_unparse(uuid, uuid_str);
    json_append_string(out, uuid_str);
    g_string_append_printf(out, ", \"ctime\": %" PRId64 ", \"configs\": [",
                           vma_reader_get_ctime(r));
    for (unsigned i = 0; i < vma_reader_get_config_count(r); i++) {
        const VmaConfigInfo *c = vma_reader_get_config(r, i);

        g_string_append(out, i ? ", {\"name\": " : "{\"name\": ");
        json_append_string(out, c->name);
        g_string_append_printf(out, ", \"size\": %zu}", c->len);
    }
    g_string_append(out, "], \"devices\": [");
    for (unsigned i = 0; i < vma_reader_get_device_count(r); i++) {
        const VmaDeviceInfo *dev = vma_reader_get_device(r, i);

        g_string_append_printf(out, "%s{\"dev_id\": %u, \"name\": ",
                               i ? ", " : "", dev->dev_id);
        json_append_string(out, dev->name);
        g_string_append_printf(out, ", \"size\": %" PRIu64 ", \"vmstate\": "
                               "%s}", dev->size,
                               dev->is_vmstate ? "true" : "false");
    }
    g_string_append(out, "], \"chain\": ");
    list_json_chain(out, r);
    g_string_append(out, "}\n");
    fputs(out->str, stdout);
}

int vma_cmd_list(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "output", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    g_autoptr(GError) err = NULL;
    VmaArchiveIn a = { 0 };
    bool json = false;
    int opt;

    while ((opt = getopt_long(argc, argv, ":ho:", long_options, NULL)) != -1) {
        switch (opt) {
        case 'o':
            if (!strcmp(optarg, "json")) {
                json = true;
            } else if (!strcmp(optarg, "human")) {
                json = false;
            } else {
                return vma_cmd_usage_error("list: unknown output format "
                                           "'%s' (human or json)", optarg);
            }
            break;
        default:
            return vma_cmd_option_error("list", opt, argv);
        }
    }
    if (argc - optind != 1) {
        return vma_cmd_usage_error("list: expected one archive");
    }
    if (!vma_archive_open(&a, argv[optind], &err)) {
        return vma_cmd_fail(err);
    }
    if (json) {
        list_json(a.reader);
    } else {
        vma_list_print_human(a.reader);
    }
    vma_archive_close(&a);
    if (!vma_flush_stdout(&err)) {
        return vma_cmd_fail(err);
    }
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* vma config                                                                */
/* ------------------------------------------------------------------------ */

int vma_cmd_config(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    const char *name = VMA_DEFAULT_CONFIG;
    const VmaConfigInfo *config;
    VmaArchiveIn a = { 0 };
    int opt;

    while ((opt = getopt(argc, argv, ":hc:")) != -1) {
        switch (opt) {
        case 'c':
            name = optarg;
            break;
        default:
            return vma_cmd_option_error("config", opt, argv);
        }
    }
    if (argc - optind != 1) {
        return vma_cmd_usage_error("config: expected one archive");
    }
    if (!vma_archive_open(&a, argv[optind], &err)) {
        return vma_cmd_fail(err);
    }
    config = vma_reader_find_config(a.reader, name);
    if (!config) {
        g_autofree char *shown = vma_printable_name(name);

        vma_archive_close(&a);
        /* The reference tool's message and status: scripts test for them */
        fprintf(stderr, "unable to find configuration data '%s'\n", shown);
        return VMA_EXIT_NO_CONFIG;
    }
    fwrite(config->data, 1, config->len, stdout);
    vma_archive_close(&a);
    if (!vma_flush_stdout(&err)) {
        return vma_cmd_fail(err);
    }
    return EXIT_SUCCESS;
}
