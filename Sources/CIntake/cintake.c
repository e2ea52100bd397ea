#define _GNU_SOURCE
#include "cintake.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static int openat2_or_enosys(int dirfd, const char *path, int flags, unsigned long long resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/// Component by component with O_NOFOLLOW: the fallback for kernels older than 5.6.
static int walk_nofollow(int dirfd, const char *path, int flags) {
    char buffer[4096];
    size_t length = strlen(path);
    if (length >= sizeof buffer) { errno = ENAMETOOLONG; return -1; }
    memcpy(buffer, path, length + 1);
    int current = dirfd;
    char *save = NULL;
    char *part = strtok_r(buffer, "/", &save);
    if (part == NULL) { errno = EINVAL; return -1; }
    for (;;) {
        char *next = strtok_r(NULL, "/", &save);
        if (strcmp(part, "..") == 0) { if (current != dirfd) close(current); errno = EXDEV; return -1; }
        int fd = next == NULL
            ? openat(current, part, flags | O_NOFOLLOW | O_CLOEXEC)
            : openat(current, part, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        if (current != dirfd) close(current);
        if (fd < 0) { errno = saved; return -1; }
        if (next == NULL) return fd;
        current = fd;
        part = next;
    }
}

int twinbrain_open_beneath(int dirfd, const char *path, int flags) {
    int fd = openat2_or_enosys(dirfd, path, flags | O_NOFOLLOW,
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
    return walk_nofollow(dirfd, path, flags);
}

int twinbrain_open_directory_nofollow(const char *path) {
    if (path[0] != '/') { errno = EINVAL; return -1; }
    int fd = openat2_or_enosys(AT_FDCWD, path, O_RDONLY | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
    if (path[1] == '\0') return open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return -1;
    fd = walk_nofollow(root, path + 1, O_RDONLY | O_DIRECTORY);
    int saved = errno;
    close(root);
    errno = saved;
    return fd;
}

const char *twinbrain_dirent_name(const struct dirent *entry) { return entry->d_name; }

int twinbrain_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

int twinbrain_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
