/*
 * VMA archive format: the backup-chain config blob of incremental backups
 *
 * Parses and formats the small text blob that says where an archive stands
 * in a chain of backups (its uuid, depth, base and the uuids before it) and
 * whether each disk is complete in it or only holds what changed.  The
 * parser is strict about everything it knows and ignores keys it does not
 * know, so that later versions can add lines.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <stdarg.h>
#include <string.h>
#include "vma-internal.h"

/* Longest accepted depth: a chain longer than this is surely a mistake */
#define VMA_CHAIN_MAX_DEPTH 100000

static const char *const chain_reasons[] = {
    "new", "used", "invalid", "missing-recreated",
};

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool vma_uuid_parse(const char *str, uint8_t uuid[VMA_UUID_SIZE])
{
    unsigned n = 0;

    for (unsigned i = 0; i < VMA_UUID_STR_SIZE - 1; i++) {
        bool dash_here = i == 8 || i == 13 || i == 18 || i == 23;
        int hi, lo;

        if (dash_here) {
            if (str[i] != '-') {
                return false;
            }
            continue;
        }
        hi = hex_value(str[i]);
        lo = hi < 0 ? -1 : hex_value(str[i + 1]);
        if (lo < 0) {
            return false;
        }
        uuid[n++] = hi << 4 | lo;
        i++;
    }
    return str[VMA_UUID_STR_SIZE - 1] == '\0';
}

VmaChainInfo *vma_chain_new(const uint8_t uuid[VMA_UUID_SIZE], unsigned depth,
                            const uint8_t (*chain)[VMA_UUID_SIZE])
{
    VmaChainInfo *c = g_new0(VmaChainInfo, 1);

    memcpy(c->uuid, uuid, VMA_UUID_SIZE);
    c->depth = depth;
    c->chain = g_malloc0((size_t)(depth ? depth : 1) * VMA_UUID_SIZE);
    if (depth) {
        memcpy(c->chain, chain, (size_t)depth * VMA_UUID_SIZE);
    }
    c->disks = g_ptr_array_new();
    return c;
}

void vma_chain_free(VmaChainInfo *c)
{
    if (!c) {
        return;
    }
    for (unsigned i = 0; i < c->disks->len; i++) {
        VmaChainDisk *d = c->disks->pdata[i];

        g_free(d->name);
        g_free(d->reason);
        g_free(d);
    }
    g_ptr_array_unref(c->disks);
    g_free(c->chain);
    g_free(c);
}

void vma_chain_add_disk(VmaChainInfo *c, const char *name, bool incremental,
                        const char *reason)
{
    VmaChainDisk *d = g_new0(VmaChainDisk, 1);

    d->name = g_strdup(name);
    d->incremental = incremental;
    d->reason = g_strdup(reason);
    g_ptr_array_add(c->disks, d);
}

const VmaChainDisk *vma_chain_find_disk(const VmaChainInfo *c,
                                        const char *name)
{
    for (unsigned i = 0; i < c->disks->len; i++) {
        const VmaChainDisk *d = c->disks->pdata[i];

        if (!strcmp(d->name, name)) {
            return d;
        }
    }
    return NULL;
}

const uint8_t *vma_chain_get_base(const VmaChainInfo *c)
{
    return c->depth ? c->chain[c->depth - 1] : NULL;
}

char *vma_chain_format(const VmaChainInfo *c, size_t *len)
{
    GString *s = g_string_new(NULL);
    char str[VMA_UUID_STR_SIZE];

    g_string_append_printf(s, "format=%d\n", VMA_CHAIN_FORMAT);
    vma_uuid_unparse(c->uuid, str);
    g_string_append_printf(s, "uuid=%s\n", str);
    g_string_append_printf(s, "depth=%u\n", c->depth);
    if (c->depth) {
        vma_uuid_unparse(vma_chain_get_base(c), str);
        g_string_append_printf(s, "base=%s\nchain=", str);
        for (unsigned i = 0; i < c->depth; i++) {
            vma_uuid_unparse(c->chain[i], str);
            g_string_append_printf(s, "%s%s", i ? "," : "", str);
        }
        g_string_append_c(s, '\n');
    }
    for (unsigned i = 0; i < c->disks->len; i++) {
        const VmaChainDisk *d = c->disks->pdata[i];

        g_string_append_printf(s, "disk.%s=%s%s%s\n", d->name,
                               d->incremental ? "incremental" : "full",
                               d->reason ? ":" : "",
                               d->reason ? d->reason : "");
    }
    if (len) {
        *len = s->len;
    }
    return g_string_free(s, false);
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct ChainParse {
    bool have_format, have_uuid, have_depth, have_base, have_chain;
    uint8_t uuid[VMA_UUID_SIZE];
    uint8_t base[VMA_UUID_SIZE];
    unsigned depth;
    GArray *chain;          /* of uint8_t[VMA_UUID_SIZE] */
    VmaChainInfo *info;     /* disks are added to it as they come */
} ChainParse;

static bool chain_error(GError **errp, unsigned line, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static bool chain_error(GError **errp, unsigned line, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (line) {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s line %u: %s",
                    VMA_CHAIN_CONFIG_NAME, line, msg);
    } else {
        g_set_error(errp, VMA_ERROR, VMA_ERROR_FORMAT, "%s: %s",
                    VMA_CHAIN_CONFIG_NAME, msg);
    }
    return false;
}

/* Once only: @seen is the key's flag */
static bool chain_once(bool *seen, const char *key, unsigned line,
                       GError **errp)
{
    if (*seen) {
        return chain_error(errp, line, "'%s' given twice", key);
    }
    *seen = true;
    return true;
}

static bool chain_parse_uuid(const char *value, uint8_t uuid[VMA_UUID_SIZE],
                             const char *key, unsigned line, GError **errp)
{
    if (!vma_uuid_parse(value, uuid)) {
        return chain_error(errp, line, "'%s' is not a uuid: '%s'", key,
                           value);
    }
    return true;
}

static bool chain_parse_depth(ChainParse *p, const char *value, unsigned line,
                              GError **errp)
{
    char *end;
    guint64 n;

    if (!g_ascii_isdigit(value[0]) || (value[0] == '0' && value[1])) {
        return chain_error(errp, line, "bad depth '%s'", value);
    }
    n = g_ascii_strtoull(value, &end, 10);
    if (*end || n > VMA_CHAIN_MAX_DEPTH) {
        return chain_error(errp, line, "bad depth '%s'", value);
    }
    p->depth = n;
    return true;
}

static bool chain_parse_list(ChainParse *p, const char *value, unsigned line,
                             GError **errp)
{
    g_auto(GStrv) items = g_strsplit(value, ",", -1);

    for (char **item = items; *item; item++) {
        uint8_t uuid[VMA_UUID_SIZE];

        if (!chain_parse_uuid(*item, uuid, "chain", line, errp)) {
            return false;
        }
        g_array_append_val(p->chain, uuid);
    }
    return true;
}

static bool chain_parse_disk(ChainParse *p, const char *name,
                             const char *value, unsigned line, GError **errp)
{
    g_autofree char *mode = g_strdup(value);
    char *reason = strchr(mode, ':');
    bool incremental;

    if (!vma_name_is_safe(name) || !strcmp(name, VMA_VMSTATE_NAME)) {
        return chain_error(errp, line, "bad disk name '%s'", name);
    }
    if (vma_chain_find_disk(p->info, name)) {
        return chain_error(errp, line, "disk '%s' given twice", name);
    }
    if (reason) {
        bool known = false;

        *reason++ = '\0';
        for (unsigned i = 0; i < G_N_ELEMENTS(chain_reasons); i++) {
            known = known || !strcmp(reason, chain_reasons[i]);
        }
        if (!known) {
            return chain_error(errp, line, "disk '%s': unknown reason '%s'",
                               name, reason);
        }
    }
    if (!strcmp(mode, "full")) {
        incremental = false;
    } else if (!strcmp(mode, "incremental")) {
        incremental = true;
    } else {
        return chain_error(errp, line, "disk '%s': '%s' is neither 'full' "
                           "nor 'incremental'", name, mode);
    }
    vma_chain_add_disk(p->info, name, incremental, reason);
    return true;
}

static bool chain_parse_line(ChainParse *p, char *text, unsigned line,
                             GError **errp)
{
    char *eq = strchr(text, '=');
    const char *key = text;
    const char *value;

    if (!eq) {
        return chain_error(errp, line, "not a 'key=value' line");
    }
    *eq = '\0';
    value = eq + 1;
    if (!strcmp(key, "format")) {
        if (!chain_once(&p->have_format, key, line, errp)) {
            return false;
        }
        if (strcmp(value, G_STRINGIFY(VMA_CHAIN_FORMAT))) {
            return chain_error(errp, line, "unsupported format '%s' "
                               "(this reader knows %d)", value,
                               VMA_CHAIN_FORMAT);
        }
        return true;
    }
    if (!strcmp(key, "uuid")) {
        return chain_once(&p->have_uuid, key, line, errp) &&
               chain_parse_uuid(value, p->uuid, key, line, errp);
    }
    if (!strcmp(key, "depth")) {
        return chain_once(&p->have_depth, key, line, errp) &&
               chain_parse_depth(p, value, line, errp);
    }
    if (!strcmp(key, "base")) {
        return chain_once(&p->have_base, key, line, errp) &&
               chain_parse_uuid(value, p->base, key, line, errp);
    }
    if (!strcmp(key, "chain")) {
        return chain_once(&p->have_chain, key, line, errp) &&
               chain_parse_list(p, value, line, errp);
    }
    if (g_str_has_prefix(key, "disk.")) {
        return chain_parse_disk(p, key + strlen("disk."), value, line, errp);
    }
    return true;    /* a key of a later version */
}

/* What must hold between the lines, once all are read */
static bool chain_check(ChainParse *p, GError **errp)
{
    const uint8_t (*chain)[VMA_UUID_SIZE] = (const void *)p->chain->data;

    if (!p->have_format || !p->have_uuid || !p->have_depth) {
        return chain_error(errp, 0, "'%s' is missing",
                           !p->have_format ? "format" :
                           !p->have_uuid ? "uuid" : "depth");
    }
    if (p->depth == 0) {
        if (p->have_base || p->have_chain) {
            return chain_error(errp, 0, "a full archive (depth 0) has "
                               "neither base nor chain");
        }
        for (unsigned i = 0; i < p->info->disks->len; i++) {
            VmaChainDisk *d = p->info->disks->pdata[i];

            if (d->incremental) {
                return chain_error(errp, 0, "disk '%s' is incremental in a "
                                   "full archive (depth 0)", d->name);
            }
        }
        return true;
    }
    if (!p->have_base || !p->have_chain) {
        return chain_error(errp, 0, "an incremental archive (depth %u) "
                           "needs base and chain", p->depth);
    }
    if (p->chain->len != p->depth) {
        return chain_error(errp, 0, "depth %u, but the chain has %u uuids",
                           p->depth, p->chain->len);
    }
    if (memcmp(chain[p->depth - 1], p->base, VMA_UUID_SIZE)) {
        return chain_error(errp, 0, "base is not the last uuid of the "
                           "chain");
    }
    for (unsigned i = 0; i < p->depth; i++) {
        if (!memcmp(chain[i], p->uuid, VMA_UUID_SIZE)) {
            return chain_error(errp, 0, "the archive's own uuid is in its "
                               "chain");
        }
        for (unsigned j = 0; j < i; j++) {
            if (!memcmp(chain[i], chain[j], VMA_UUID_SIZE)) {
                return chain_error(errp, 0, "uuid %u of the chain is also "
                                   "uuid %u", i + 1, j + 1);
            }
        }
    }
    return true;
}

VmaChainInfo *vma_chain_parse(const void *data, size_t len, GError **errp)
{
    static const uint8_t zero_uuid[VMA_UUID_SIZE];
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    ChainParse p = { 0 };
    bool ok = true;

    if (memchr(data, '\0', len) || !g_utf8_validate(data, len, NULL)) {
        chain_error(errp, 0, "not UTF-8 text");
        return NULL;
    }
    text = g_strndup(data, len);
    lines = g_strsplit(text, "\n", -1);
    p.chain = g_array_new(false, false, VMA_UUID_SIZE);
    p.info = vma_chain_new(zero_uuid, 0, NULL);
    for (unsigned i = 0; ok && lines[i]; i++) {
        const char *l = lines[i];

        if (l[0] == '\0' || l[0] == '#') {
            continue;
        }
        ok = chain_parse_line(&p, lines[i], i + 1, errp);
    }
    ok = ok && chain_check(&p, errp);
    if (ok) {
        memcpy(p.info->uuid, p.uuid, VMA_UUID_SIZE);
        p.info->depth = p.depth;
        g_free(p.info->chain);
        p.info->chain = g_malloc0((size_t)(p.depth ? p.depth : 1) *
                                  VMA_UUID_SIZE);
        if (p.depth) {
            memcpy(p.info->chain, p.chain->data,
                   (size_t)p.depth * VMA_UUID_SIZE);
        }
    } else {
        g_clear_pointer(&p.info, vma_chain_free);
    }
    g_array_unref(p.chain);
    return p.info;
}

bool vma_chain_from_reader(VmaReader *r, bool allow_absent,
                           VmaChainInfo **out, GError **errp)
{
    const VmaConfigInfo *cfg = vma_reader_find_config(r, VMA_CHAIN_CONFIG_NAME);
    uint8_t uuid[VMA_UUID_SIZE];
    VmaChainInfo *c;

    *out = NULL;
    if (!cfg) {
        return true;
    }
    c = vma_chain_parse(cfg->data, cfg->len, errp);
    if (!c) {
        return false;
    }
    vma_reader_get_uuid(r, uuid);
    if (memcmp(uuid, c->uuid, VMA_UUID_SIZE)) {
        vma_chain_free(c);
        return chain_error(errp, 0, "uuid is not the archive's");
    }
    for (unsigned i = 0; i < c->disks->len; i++) {
        const VmaChainDisk *d = c->disks->pdata[i];
        const VmaDeviceInfo *dev = NULL;

        for (unsigned j = 0; j < vma_reader_get_device_count(r); j++) {
            const VmaDeviceInfo *x = vma_reader_get_device(r, j);

            if (!x->is_vmstate && !strcmp(x->name, d->name)) {
                dev = x;
            }
        }
        if (!dev) {
            chain_error(errp, 0, "disk '%s' is not in the archive", d->name);
            vma_chain_free(c);
            return false;
        }
        if (allow_absent && d->incremental &&
            !vma_reader_allow_absent(r, dev->dev_id, errp)) {
            vma_chain_free(c);
            return false;
        }
    }
    for (unsigned j = 0; j < vma_reader_get_device_count(r); j++) {
        const VmaDeviceInfo *x = vma_reader_get_device(r, j);

        if (!x->is_vmstate && !vma_chain_find_disk(c, x->name)) {
            chain_error(errp, 0, "no line for the archive's disk '%s'",
                        x->name);
            vma_chain_free(c);
            return false;
        }
    }
    *out = c;
    return true;
}
