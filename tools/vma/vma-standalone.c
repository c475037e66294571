/*
 * vma tool: the standalone build's back ends
 *
 * Without QEMU's block layer the tool reads and writes raw images only:
 * regular files and block devices.  The QEMU build uses vma-qemu.c instead
 * of this file.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "vma-ops.h"

/* Raw is the only format here, so there is nothing to probe or get wrong */
const char *vma_default_source_format(void)
{
    return "raw";
}

const char *vma_unknown_format_hint(void)
{
    return "; other formats need the vma tool built with QEMU";
}

bool vma_backends_init(const char *argv0, GError **errp)
{
    vma_register_source("raw", &vma_source_raw_ops);
    vma_register_target("raw", &vma_target_raw_ops);
    return true;
}
