#ifndef TWINBRAIN_CINTAKE_H
#define TWINBRAIN_CINTAKE_H

#include <dirent.h>
#include <spawn.h>
#include <sys/stat.h>

/// Opens `path` relative to `dirfd` without following a symlink in any component and without
/// leaving `dirfd`'s tree (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS). On kernels without openat2 it walks the components with O_NOFOLLOW,
/// refusing "..". Returns a descriptor or -1 with errno set (ELOOP for a symlink).
int twinbrain_open_beneath(int dirfd, const char *path, int flags);

/// Opens an absolute directory path without following a symlink in any component.
int twinbrain_open_directory_nofollow(const char *path);

/// The name of a directory entry (d_name is a fixed array Swift imports as a tuple).
const char *twinbrain_dirent_name(const struct dirent *entry);

/// prctl(PR_SET_NO_NEW_PRIVS, 1): nothing this process executes can gain privileges (prctl is
/// variadic, so Swift cannot call it directly). Returns 0 or -1 with errno.
int twinbrain_no_new_privs(void);

/// posix_spawn_file_actions_addclosefrom_np (glibc ≥ 2.34, declared only under _GNU_SOURCE):
/// the spawned program gets no descriptor from `from` up. Returns 0 or an error number.
int twinbrain_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

#endif
