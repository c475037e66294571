/*
 * vma tool: the registry of source and target back ends
 *
 * The QEMU build adds its BlockBackend back ends here; the front end only
 * ever asks for a format by name.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <string.h>
#include "vma-ops.h"

static const VmaSourceOps *const source_backends[] = {
    &vma_source_raw_ops,
};

static const VmaTargetOps *const target_backends[] = {
    &vma_target_raw_ops,
};

const VmaSourceOps *vma_find_source_ops(const char *format)
{
    for (size_t i = 0; i < G_N_ELEMENTS(source_backends); i++) {
        if (!strcmp(source_backends[i]->format, format)) {
            return source_backends[i];
        }
    }
    return NULL;
}

const VmaTargetOps *vma_find_target_ops(const char *format)
{
    for (size_t i = 0; i < G_N_ELEMENTS(target_backends); i++) {
        if (!strcmp(target_backends[i]->format, format)) {
            return target_backends[i];
        }
    }
    return NULL;
}

const char *vma_known_formats(void)
{
    static char *formats;

    if (!formats) {
        GString *s = g_string_new(NULL);

        for (size_t i = 0; i < G_N_ELEMENTS(source_backends); i++) {
            g_string_append_printf(s, "%s%s", i ? ", " : "",
                                   source_backends[i]->format);
        }
        formats = g_string_free(s, false);
    }
    return formats;
}
