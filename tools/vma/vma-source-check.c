/*
 * vma tool: what `vma create` checks about a source before opening it
 *
 * The signatures are the documented magic numbers of the image formats
 * QEMU knows, at their documented offsets.
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vma-source-check.h"

#define SNIFF_SIZE  1024

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode)) {
        return "a directory";
    }
    if (S_ISCHR(mode)) {
        return "a character device";
    }
    if (S_ISFIFO(mode)) {
        return "a FIFO";
    }
    if (S_ISSOCK(mode)) {
        return "a socket";
    }
    return "not a regular file";
}

bool vma_source_check_kind(const char *path, GError **errp)
{
    struct stat st;

    if (stat(path, &st) < 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
        return true;
    }
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                "'%s' is %s, not a disk image (a regular file or a block "
                "device)", path, file_kind(st.st_mode));
    return false;
}

typedef struct Signature {
    const char *format;     /* what it is, for the message */
    unsigned offset;
    const char *magic;
    unsigned len;
} Signature;

#define SIG(fmt, off, str) { fmt, off, str, sizeof(str) - 1 }

static const Signature signatures[] = {
    SIG("a qcow2 image", 0, "QFI\xfb"),     /* qcow and qcow2 */
    SIG("a qed image", 0, "QED\0"),
    SIG("a vmdk image", 0, "KDMV"),
    SIG("a vmdk image", 0, "COWD"),
    SIG("a vmdk image", 0, "# Disk DescriptorFile"),
    SIG("a vhdx image", 0, "vhdxfile"),
    SIG("a vpc image", 0, "conectix"),
    SIG("a vdi image", 64, "\x7f\x10\xda\xbe"),
    SIG("a luks image", 0, "LUKS\xba\xbe"),
    SIG("a parallels image", 0, "WithoutFreeSpace"),
    SIG("a parallels image", 0, "WithouFreSpacExt"),
    SIG("a bochs image", 0, "Bochs Virtual HD Image"),
    SIG("a cloop image", 0, "#!/bin/sh\n#V2.0 Format\n"),
    SIG("a VMA archive", 0, "VMA\0"),
};

const char *vma_source_looks_like(const char *path)
{
    uint8_t buf[SNIFF_SIZE];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        return NULL;
    }
    do {
        n = pread(fd, buf, sizeof(buf), 0);
    } while (n < 0 && errno == EINTR);
    close(fd);
    for (size_t i = 0; n > 0 && i < G_N_ELEMENTS(signatures); i++) {
        const Signature *s = &signatures[i];

        if (s->offset + s->len <= (size_t)n &&
            !memcmp(buf + s->offset, s->magic, s->len)) {
            return s->format;
        }
    }
    return NULL;
}
