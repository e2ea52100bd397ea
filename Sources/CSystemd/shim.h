// libsystemd for twinbraind: sd_notify, sd_listen_fds, sd_journal_sendv.
// (No _GNU_SOURCE here: it changes glibc structs and breaks Swift's Glibc module.)
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

// Swift cannot see struct ucred without _GNU_SOURCE; this mirrors it for SO_PEERCRED.
typedef struct {
    int pid;
    unsigned int uid;
    unsigned int gid;
} twinbrain_ucred;
