/*
 * vma tool: the registry of source and target back ends
 *
 * The build registers its back ends at start (vma-standalone.c: raw files;
 * vma-qemu.c: QEMU BlockBackends, which open any format QEMU knows); the
 * front end only ever asks for a format by name.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>
#include "vma-ops.h"

#define MAX_BACKENDS    8

typedef struct Backend {
    const char *format;                 /* NULL: the fallback */
    bool (*accepts)(const char *format);
    const char *what;
    const void *ops;
} Backend;

typedef struct Registry {
    Backend backends[MAX_BACKENDS];
    unsigned count;
    char *known;                        /* cached vma_known_*_formats() */
} Registry;

static Registry sources, targets;

static void registry_add(Registry *reg, const char *format,
                         bool (*accepts)(const char *format),
                         const char *what, const void *ops)
{
    g_assert(reg->count < MAX_BACKENDS);
    reg->backends[reg->count++] = (Backend) {
        .format = format,
        .accepts = accepts,
        .what = what,
        .ops = ops,
    };
    g_clear_pointer(&reg->known, g_free);
}

/* The first back end registered for @format whose ops satisfy @usable */
static const void *registry_find(Registry *reg, const char *format,
                                 bool (*usable)(const void *ops, bool arg),
                                 bool arg)
{
    for (unsigned i = 0; i < reg->count; i++) {
        const Backend *b = &reg->backends[i];

        if (usable && !usable(b->ops, arg)) {
            continue;
        }
        if (b->format ? !strcmp(b->format, format) : b->accepts(format)) {
            return b->ops;
        }
    }
    return NULL;
}

static bool registry_has_earlier(Registry *reg, unsigned index)
{
    for (unsigned i = 0; i < index; i++) {
        if (reg->backends[i].format &&
            !strcmp(reg->backends[i].format, reg->backends[index].format)) {
            return true;
        }
    }
    return false;
}

/* "raw, qcow2 or any other format QEMU opens", of the usable back ends */
static const char *registry_describe(Registry *reg,
                                     bool (*usable)(const void *ops, bool arg),
                                     bool arg)
{
    g_autoptr(GString) s = NULL;
    const char *fallback = NULL;

    if (reg->known) {
        return reg->known;
    }
    s = g_string_new(NULL);
    for (unsigned i = 0; i < reg->count; i++) {
        const Backend *b = &reg->backends[i];

        if (usable && !usable(b->ops, arg)) {
            continue;
        }
        if (!b->format) {
            fallback = b->what;
        } else if (!registry_has_earlier(reg, i)) {
            g_string_append_printf(s, "%s%s", s->len ? ", " : "", b->format);
        }
    }
    if (fallback) {
        g_string_append_printf(s, " or %s", fallback);
    }
    reg->known = g_string_free(g_steal_pointer(&s), false);
    return reg->known;
}

void vma_register_source(const char *format, const VmaSourceOps *ops)
{
    registry_add(&sources, format, NULL, NULL, ops);
}

void vma_register_target(const char *format, const VmaTargetOps *ops)
{
    registry_add(&targets, format, NULL, NULL, ops);
}

void vma_register_source_fallback(bool (*accepts)(const char *format),
                                  const char *what, const VmaSourceOps *ops)
{
    registry_add(&sources, NULL, accepts, what, ops);
}

void vma_register_target_fallback(bool (*accepts)(const char *format),
                                  const char *what, const VmaTargetOps *ops)
{
    registry_add(&targets, NULL, accepts, what, ops);
}

const VmaSourceOps *vma_find_source_ops(const char *format)
{
    return registry_find(&sources, format, NULL, false);
}

static bool target_can(const void *ops, bool create)
{
    const VmaTargetOps *t = ops;

    return create ? t->create != NULL : t->open != NULL;
}

const VmaTargetOps *vma_find_target_ops(const char *format, bool create)
{
    return registry_find(&targets, format, target_can, create);
}

const char *vma_known_source_formats(void)
{
    return registry_describe(&sources, NULL, false);
}

/* Of the targets the restore map can name */
const char *vma_known_target_formats(void)
{
    return registry_describe(&targets, target_can, false);
}
