/*
 * The Linux-only parts: a recursive read-only bind (mount_setattr), waiting for a signal
 * (sigtimedwait) and a process's start time (/proc).
 */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

/* mount_setattr(2) (Linux 5.12): read-only for the whole tree, submounts included — a plain
   MS_REMOUNT|MS_RDONLY would leave mounts below the shared directory writable. */
struct shim_mount_attr {
  unsigned long long attr_set, attr_clr, propagation, userns_fd;
};
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define SHIM_MOUNT_ATTR_RDONLY 0x00000001ULL
#define SHIM_AT_RECURSIVE 0x8000

static int make_readonly(const char *dir) {
  struct shim_mount_attr attr = {.attr_set = SHIM_MOUNT_ATTR_RDONLY};
  return (int)syscall(SYS_mount_setattr, AT_FDCWD, dir, SHIM_AT_RECURSIVE, &attr, sizeof attr);
}

/* Sleeps until a signal arrives or `ms` pass; returns the signal number or 0. */
static int wait_signal(const sigset_t *set, long long ms) {
  if (ms < 0) ms = 0;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  int sig = sigtimedwait(set, NULL, &ts);
  return sig < 0 ? 0 : sig;
}

/* Field 22 of /proc/<pid>/stat: the start time, which tells a live VMM from a reused pid. */
static int read_start_time(pid_t pid, char *out, size_t cap) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  /* comm (field 2) may contain spaces and parentheses: count from the last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL) return -1;
  p++;
  for (int field = 3; field <= 22; field++) {
    while (*p == ' ') p++;
    char *start = p;
    while (*p && *p != ' ') p++;
    if (field == 22) {
      size_t len = (size_t)(p - start);
      if (len == 0 || len >= cap) return -1;
      memcpy(out, start, len);
      out[len] = '\0';
      return 0;
    }
  }
  return -1;
}
