/*
 * vma tool: where `vma create` writes the archive
 *
 * Copyright (c) the VMA backup authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "vma-output.h"
#include "vma-ops.h"

#define EXEC_PREFIX "exec:"

struct VmaOutput {
    char *target;
    int fd;
    bool created;       /* a new file: remove it on failure */
    pid_t child;        /* exec: the command, else 0 */
};

static bool output_errno(GError **errp, int err, const char *what,
                         const char *target)
{
    g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                "%s '%s': %s", what, target, g_strerror(err));
    return false;
}

/* The command's stdin is a pipe we write; its stdout and stderr are ours */
static bool output_exec(VmaOutput *out, const char *cmd, GError **errp)
{
    int fds[2];
    pid_t pid;

    if (!*cmd) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "'exec:' needs a command");
        return false;
    }
    if (pipe2(fds, O_CLOEXEC) < 0) {
        return output_errno(errp, errno, "cannot run", cmd);
    }
    pid = fork();
    if (pid < 0) {
        int err = errno;

        close(fds[0]);
        close(fds[1]);
        return output_errno(errp, err, "cannot run", cmd);
    }
    if (pid == 0) {
        /* The command sees SIGPIPE as usual, not our SIG_IGN */
        signal(SIGPIPE, SIG_DFL);
        if (dup2(fds[0], STDIN_FILENO) < 0) {
            _exit(127);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    out->fd = fds[1];
    out->child = pid;
    return true;
}

/* A FIFO someone reads: open it without waiting for a reader forever */
static bool output_fifo(VmaOutput *out, GError **errp)
{
    int flags;

    out->fd = open(out->target, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (out->fd < 0) {
        if (errno == ENXIO) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NXIO,
                        "FIFO '%s' has no reader", out->target);
            return false;
        }
        return output_errno(errp, errno, "cannot open", out->target);
    }
    /* From now on, writes wait for the reader */
    flags = fcntl(out->fd, F_GETFL);
    if (flags < 0 || fcntl(out->fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return output_errno(errp, errno, "cannot open", out->target);
    }
    return true;
}

static bool output_open(VmaOutput *out, GError **errp)
{
    const char *target = out->target;
    struct stat st;

    if (g_str_has_prefix(target, EXEC_PREFIX)) {
        return output_exec(out, target + strlen(EXEC_PREFIX), errp);
    }
    if (!strcmp(target, "-")) {
        if (isatty(STDOUT_FILENO)) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                        "refusing to write an archive to a terminal");
            return false;
        }
        out->fd = STDOUT_FILENO;
        return true;
    }
    if (stat(target, &st) == 0 && S_ISFIFO(st.st_mode)) {
        return output_fifo(out, errp);
    }
    /* Never O_DIRECT: it fails on tmpfs and loses data on pipes */
    out->fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (out->fd < 0) {
        return output_errno(errp, errno, "cannot create", target);
    }
    out->created = true;
    return true;
}

VmaOutput *vma_output_open(const char *target, GError **errp)
{
    VmaOutput *out = g_new0(VmaOutput, 1);

    out->target = g_strdup(target);
    out->fd = -1;
    if (!output_open(out, errp)) {
        vma_output_close(out, false, NULL);
        return NULL;
    }
    return out;
}

int vma_output_fd(VmaOutput *out)
{
    return out->fd;
}

/* Wait for the command; false with @errp set if it did not succeed */
static bool output_wait_child(VmaOutput *out, GError **errp)
{
    const char *cmd = out->target + strlen(EXEC_PREFIX);
    int status;
    pid_t ret;

    do {
        ret = waitpid(out->child, &status, 0);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0) {
        return output_errno(errp, errno, "cannot wait for", cmd);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return true;
    }
    if (WIFEXITED(status)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "command '%s' failed with exit status %d", cmd,
                    WEXITSTATUS(status));
    } else {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "command '%s' was killed by signal %d", cmd,
                    WTERMSIG(status));
    }
    return false;
}

void vma_output_explain(VmaOutput *out, GError *err)
{
    g_autoptr(GError) cmd_err = NULL;
    char *msg;

    if (!out || out->child <= 0 || !err) {
        return;
    }
    close(out->fd);
    out->fd = -1;
    if (!output_wait_child(out, &cmd_err)) {
        msg = g_strdup_printf("%s (%s)", cmd_err->message, err->message);
        g_free(err->message);
        err->message = msg;
    }
    out->child = 0;
}

bool vma_output_close(VmaOutput *out, bool commit, GError **errp)
{
    bool ok = true;

    if (!out) {
        return true;
    }
    if (out->fd >= 0 && out->fd != STDOUT_FILENO && close(out->fd) < 0 &&
        commit) {
        ok = output_errno(errp, errno, "cannot write", out->target);
    }
    /* The command gets its end of file first, then we wait for it */
    if (out->child > 0) {
        GError *err = NULL;

        if (!output_wait_child(out, commit && ok ? errp : &err)) {
            ok = false;
        }
        g_clear_error(&err);
    }
    if ((!commit || !ok) && out->created) {
        unlink(out->target);
    }
    g_free(out->target);
    g_free(out);
    return ok || !commit;
}

/* All of @buf, whatever write() does; 0 or a negative errno */
int vma_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR && !vma_interrupted) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        p += n;
        len -= n;
    }
    return 0;
}
