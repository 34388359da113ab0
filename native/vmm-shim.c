/*
 * vmm-shim: one tiny process per VM (like conmon / containerd-shim) so VMs outlive the CLI
 * without a Node.js process per VM. It starts the vsock sidecar and the VMM, records their
 * pids, watches them and writes why the VM ended.
 *
 * usage: vmm-shim --state-file PATH --exit-file PATH
 *                 [--ready-file PATH --ready-timeout-ms N]
 *                 [--sidecar-wait-path PATH] [--sidecar-log PATH] [--sidecar ARG... ]
 *                 --vmm ARG...
 *
 * Children die with the shim: a SIGKILLed shim must not orphan a VMM that would spin a core
 * forever under TCG. On Linux each child gets PR_SET_PDEATHSIG(SIGKILL). macOS has no such
 * thing, so there the shim first forks a watcher that waits for the shim's exit (kqueue,
 * EVFILT_PROC NOTE_EXIT) and then kills the shim's process group, which every child stays in
 * (see start_watcher). The macOS code is under __APPLE__; it is not compiled or run by the
 * Linux test suite, only syntax-checked against stub headers, so keep it small.
 *
 * `--aux WAIT-PATH RO-BIND ARG... --aux-end` (repeatable, before --sidecar/--vmm) runs more
 * helpers the VMM needs (virtiofsd per shared folder): started before the VMM, each awaited
 * until WAIT-PATH exists, and like the sidecar their death kills the VMM. RO-BIND (or "-")
 * is a directory the helper sees read-only: the shim bind-mounts it read-only in a mount
 * namespace of the helper's own before exec (root only), so the host enforces `:ro`.
 *
 * `--vmm-fd N`: descriptor N (inherited from the launcher, e.g. a snapshot's memory file for
 * QEMU's `-incoming fd:N`) is passed to the VMM only: the sidecar and helpers, which are
 * started first or later, never hold it, and the shim closes its own copy once the VMM runs.
 *
 * SIGUSR1 replaces the sidecar with a fresh one (same argv) without touching the VMM: a
 * snapshot unplugs the vsock device, whose sidecar cannot serve a second device, and plugs a
 * new one in. The state file then names the new sidecar; the VMM is not killed meanwhile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __APPLE__
#include <sys/types.h>
#include <sys/event.h>
#include <sys/proc.h>
#include <sys/sysctl.h>
#else
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIDECAR_WAIT_MS 5000
#define SIDECAR_POLL_MS 2
#define SIDECAR_GRACE_MS 1000
#define SIDECAR_RACE_MS 200

struct child {
  const char *name;
  pid_t pid;
  int exited;
  int status;
};

#define MAX_AUX 16

struct aux {
  const char *wait_path;
  const char *ro_bind;
  char **argv;
  struct child c;
  long long seen_exit_ms;
};

static struct aux auxes[MAX_AUX];
static int naux;

static struct {
  const char *state_file;
  const char *exit_file;
  const char *ready_file;
  long ready_timeout_ms;
  int vmm_fd;
  const char *sidecar_wait_path;
  const char *sidecar_log;
  char **sidecar_argv;
  char **vmm_argv;
} opt = {.ready_timeout_ms = -1, .vmm_fd = -1};

static sigset_t orig_mask;

static void logmsg(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "vmm-shim: %s\n", buf);
  fflush(stderr);
}

static long long now_ms(int clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(const char *msg) {
  logmsg("%s", msg);
  fprintf(stderr,
          "usage: vmm-shim --state-file PATH --exit-file PATH [--ready-file PATH "
          "--ready-timeout-ms N] [--sidecar-wait-path PATH] [--sidecar-log PATH] "
          "[--vmm-fd N] [--sidecar ARG...] --vmm ARG...\n");
  exit(2);
}

static void parse_args(int argc, char **argv) {
  int i = 1;
  while (i < argc) {
    const char *a = argv[i];
    if (strcmp(a, "--aux") == 0) {
      if (naux >= MAX_AUX) usage("too many --aux helpers");
      if (i + 3 >= argc) usage("--aux needs WAIT-PATH RO-BIND ARG...");
      int j = i + 3;
      while (j < argc && strcmp(argv[j], "--aux-end") != 0) j++;
      if (j >= argc || j == i + 3) usage("--aux needs a command and --aux-end");
      argv[j] = NULL;
      struct aux *x = &auxes[naux++];
      x->wait_path = argv[i + 1];
      x->ro_bind = strcmp(argv[i + 2], "-") == 0 ? NULL : argv[i + 2];
#ifdef __APPLE__
      /* A read-only view for one process needs a mount namespace: Linux only. */
      if (x->ro_bind != NULL) usage("--aux RO-BIND is not supported on macOS (pass -)");
#endif
      x->argv = &argv[i + 3];
      x->c.name = "helper";
      x->c.pid = -1;
      x->seen_exit_ms = -1;
      i = j + 1;
      continue;
    }
    if (strcmp(a, "--vmm") == 0) {
      if (i + 1 >= argc) usage("--vmm needs a command");
      opt.vmm_argv = &argv[i + 1];
      return;
    }
    if (strcmp(a, "--sidecar") == 0) {
      int j = i + 1;
      while (j < argc && strcmp(argv[j], "--vmm") != 0) j++;
      if (j == i + 1) usage("--sidecar needs a command");
      if (j >= argc) usage("--sidecar must be followed by --vmm");
      argv[j] = NULL; /* terminates the sidecar's argv in place */
      opt.sidecar_argv = &argv[i + 1];
      if (j + 1 >= argc) usage("--vmm needs a command");
      opt.vmm_argv = &argv[j + 1];
      return;
    }
    if (i + 1 >= argc) usage("option needs a value");
    const char *v = argv[i + 1];
    if (strcmp(a, "--state-file") == 0) opt.state_file = v;
    else if (strcmp(a, "--exit-file") == 0) opt.exit_file = v;
    else if (strcmp(a, "--ready-file") == 0) opt.ready_file = v;
    else if (strcmp(a, "--sidecar-wait-path") == 0) opt.sidecar_wait_path = v;
    else if (strcmp(a, "--sidecar-log") == 0) opt.sidecar_log = v;
    else if (strcmp(a, "--vmm-fd") == 0) {
      char *end;
      errno = 0;
      long fd = strtol(v, &end, 10);
      if (errno != 0 || *end != '\0' || end == v || fd < 3 || fd > 1024)
        usage("--vmm-fd must be a descriptor number of at least 3");
      /* Close-on-exec from now on: the sidecar and helpers must not inherit it. */
      if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0) usage("--vmm-fd is not an open descriptor");
      opt.vmm_fd = (int)fd;
    }
    else if (strcmp(a, "--ready-timeout-ms") == 0) {
      char *end;
      errno = 0;
      opt.ready_timeout_ms = strtol(v, &end, 10);
      if (errno != 0 || *end != '\0' || end == v || opt.ready_timeout_ms < 0)
        usage("--ready-timeout-ms must be a non-negative integer");
    } else {
      usage("unknown option");
    }
    i += 2;
  }
  usage("--vmm is required");
}

/* Writes `data` to `path` so readers see the old content or the new one, never a torn one. */
static int write_atomic(const char *path, const char *data) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof tmp) {
    logmsg("path too long: %s", path);
    return -1;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    logmsg("cannot create %s: %s", tmp, strerror(errno));
    return -1;
  }
  size_t len = strlen(data), off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      logmsg("cannot write %s: %s", tmp, strerror(errno));
      close(fd);
      unlink(tmp);
      return -1;
    }
    off += (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
    logmsg("cannot commit %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Appends `s` as a JSON string literal; reasons may carry paths and strerror text. */
static void json_str(char *out, size_t cap, const char *s) {
  size_t o = strlen(out);
  if (o + 2 >= cap) return;
  out[o++] = '"';
  for (; *s && o + 8 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
}

static void json_status(char *out, size_t cap, const struct child *c) {
  size_t o = strlen(out);
  if (c->pid <= 0 || !c->exited) {
    snprintf(out + o, cap - o, "null");
  } else if (WIFEXITED(c->status)) {
    snprintf(out + o, cap - o, "{\"exitCode\":%d,\"signal\":null}", WEXITSTATUS(c->status));
  } else {
    snprintf(out + o, cap - o, "{\"exitCode\":null,\"signal\":%d}", WTERMSIG(c->status));
  }
}

static int write_exit_file(const struct child *vmm, const struct child *sidecar,
                           const char *reason, int stop_requested) {
  char buf[8192] = "{\"vmm\":";
  json_status(buf, sizeof buf, vmm);
  strncat(buf, ",\"sidecar\":", sizeof buf - strlen(buf) - 1);
  json_status(buf, sizeof buf, sidecar);
  strncat(buf, ",\"reason\":", sizeof buf - strlen(buf) - 1);
  json_str(buf, sizeof buf, reason);
  size_t o = strlen(buf);
  snprintf(buf + o, sizeof buf - o, ",\"stopRequested\":%s,\"atMs\":%lld}\n",
           stop_requested ? "true" : "false", now_ms(CLOCK_REALTIME));
  return write_atomic(opt.exit_file, buf);
}

static void describe(char *out, size_t cap, const char *who, int status) {
  if (WIFEXITED(status))
    snprintf(out, cap, "%s exited with code %d", who, WEXITSTATUS(status));
  else
    snprintf(out, cap, "%s killed by signal %d", who, WTERMSIG(status));
}

#ifndef __APPLE__
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
#endif

/* A pipe with both ends close-on-exec. macOS has no pipe2; the shim has a single thread, so
   no exec can happen between pipe() and fcntl(). */
static int pipe_cloexec(int fds[2]) {
#ifdef __APPLE__
  if (pipe(fds) != 0) return -1;
  if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    errno = e;
    return -1;
  }
  return 0;
#else
  return pipe2(fds, O_CLOEXEC);
#endif
}

/*
 * Forks and execs argv. A close-on-exec pipe carries the child's exec errno back, so a
 * missing binary is reported as such instead of as a puzzling "exited with code 127".
 */
static pid_t spawn_child(char **argv, int out_fd, const char *ro_bind, int keep_fd, char *err,
                         size_t errcap) {
  int pfd[2];
  if (pipe_cloexec(pfd) != 0) {
    snprintf(err, errcap, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errcap, "fork: %s", strerror(errno));
    close(pfd[0]);
    close(pfd[1]);
    return -1;
  }
  if (pid == 0) {
    close(pfd[0]);
    int e = 0;
#ifndef __APPLE__
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) e = errno;
#endif
    /* The shim may have died between fork() and prctl(): then nothing would kill us. (On
       macOS the watcher kills this child with the shim's group; exiting early is harmless.) */
    if (getppid() != parent) _exit(1);
    if (e == 0 && out_fd >= 0 && (dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)) e = errno;
    /* The shim holds keep_fd close-on-exec: only this child gets it across exec. */
    if (e == 0 && keep_fd >= 0 && fcntl(keep_fd, F_SETFD, 0) != 0) e = errno;
#ifdef __APPLE__
    (void)ro_bind; /* refused by parse_args */
#else
    /* A read-only view of one directory, for this child only: its own mount namespace (no
       propagation back to the host), the directory bind-mounted over itself, read-only. */
    if (e == 0 && ro_bind != NULL &&
        (unshare(CLONE_NEWNS) != 0 ||
         mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
         mount(ro_bind, ro_bind, NULL, MS_BIND | MS_REC, NULL) != 0 || make_readonly(ro_bind) != 0))
      e = errno;
#endif
    if (e == 0) {
      signal(SIGHUP, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
      sigprocmask(SIG_SETMASK, &orig_mask, NULL);
      execvp(argv[0], argv);
      e = errno;
    }
    ssize_t w = write(pfd[1], &e, sizeof e);
    (void)w;
    _exit(127);
  }
  close(pfd[1]);
  int child_errno = 0;
  ssize_t n;
  do n = read(pfd[0], &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  close(pfd[0]);
  if (n > 0) {
    waitpid(pid, NULL, 0);
    snprintf(err, errcap, "cannot run %s: %s", argv[0], strerror(child_errno));
    return -1;
  }
  return pid;
}

/* Reaps a child if it exited (non-blocking). */
static void reap_one(struct child *c) {
  if (c->pid <= 0 || c->exited) return;
  int st;
  pid_t r;
  do r = waitpid(c->pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == c->pid) {
    c->exited = 1;
    c->status = st;
  }
}

/* Reaps whichever of our children exited. */
static void reap(struct child *a, struct child *b) {
  reap_one(a);
  reap_one(b);
}

#ifdef __APPLE__
/*
 * macOS has no sigtimedwait. The signals stay blocked as on Linux; a kqueue reports each one
 * sent (EVFILT_SIGNAL records every delivery attempt, blocked or not) and its timeout is the
 * wait. Set up in main before any child exists, so none is missed; not inherited by fork().
 */
static int signal_kq = -1;

static int watch_signals(const int *sigs, int n) {
  signal_kq = kqueue();
  if (signal_kq < 0) return -1;
  for (int k = 0; k < n; k++) {
    struct kevent ev;
    EV_SET(&ev, sigs[k], EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
    if (kevent(signal_kq, &ev, 1, NULL, 0, NULL) != 0) return -1;
  }
  return 0;
}

static int wait_signal(const sigset_t *set, long long ms) {
  (void)set; /* the kqueue watches the same signals */
  if (ms < 0) ms = 0;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  struct kevent ev;
  int n = kevent(signal_kq, NULL, 0, &ev, 1, &ts);
  return n == 1 && ev.filter == EVFILT_SIGNAL ? (int)ev.ident : 0;
}
#else
/* Sleeps until a signal arrives or `ms` pass; returns the signal number or 0. */
static int wait_signal(const sigset_t *set, long long ms) {
  if (ms < 0) ms = 0;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  int sig = sigtimedwait(set, NULL, &ts);
  return sig < 0 ? 0 : sig;
}
#endif

/* SIGTERM, then SIGKILL after the grace period; always reaps. */
static void stop_child(struct child *c, struct child *other, const sigset_t *set) {
  if (c->pid <= 0 || c->exited) return;
  kill(c->pid, SIGTERM);
  long long deadline = now_ms(CLOCK_MONOTONIC) + SIDECAR_GRACE_MS;
  for (;;) {
    reap(c, other);
    if (c->exited) return;
    long long left = deadline - now_ms(CLOCK_MONOTONIC);
    if (left <= 0) break;
    wait_signal(set, left < 10 ? left : 10);
  }
  kill(c->pid, SIGKILL);
  int st;
  while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
  }
  c->exited = 1;
  c->status = st;
}

static void kill_and_reap(struct child *c) {
  if (c->pid <= 0 || c->exited) return;
  kill(c->pid, SIGKILL);
  int st;
  while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
  }
  c->exited = 1;
  c->status = st;
}

#ifdef __APPLE__
/* The start time in seconds since the epoch, which tells a live VMM from a reused pid; the
   host reads the same value with ps (src/base/processes-darwin.ts). */
static int read_start_time(pid_t pid, char *out, size_t cap) {
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, (int)pid};
  struct kinfo_proc kp;
  size_t len = sizeof kp;
  memset(&kp, 0, sizeof kp);
  /* No such process: success with len 0. */
  if (sysctl(mib, 4, &kp, &len, NULL, 0) != 0 || len != sizeof kp) return -1;
  if (kp.kp_proc.p_stat == SZOMB) return -1;
  int n = snprintf(out, cap, "%ld", (long)kp.kp_proc.p_starttime.tv_sec);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}
#else
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
#endif

/*
 * Starts the sidecar and waits for its socket. 0: running; 1: failed (reason set);
 * 2: stopped by a signal before it was ready (reason set).
 */
static int start_sidecar(struct child *sidecar, struct child *vmm, const sigset_t *set,
                         char *reason, size_t cap) {
  char err[1024];
  int log_fd = -1;
  if (opt.sidecar_log != NULL) {
    log_fd = open(opt.sidecar_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      snprintf(reason, cap, "cannot open sidecar log %s: %s", opt.sidecar_log, strerror(errno));
      return 1;
    }
  }
  if (opt.sidecar_wait_path != NULL) unlink(opt.sidecar_wait_path);
  sidecar->pid = spawn_child(opt.sidecar_argv, log_fd, NULL, -1, err, sizeof err);
  sidecar->exited = 0;
  if (log_fd >= 0) close(log_fd);
  if (sidecar->pid < 0) {
    snprintf(reason, cap, "vsock sidecar failed to start: %s", err);
    return 1;
  }
  logmsg("started vsock sidecar pid %d", (int)sidecar->pid);
  if (opt.sidecar_wait_path == NULL) return 0;
  long long deadline = now_ms(CLOCK_MONOTONIC) + SIDECAR_WAIT_MS;
  while (access(opt.sidecar_wait_path, F_OK) != 0) {
    reap(sidecar, vmm);
    if (sidecar->exited) {
      describe(reason, cap, "vsock sidecar", sidecar->status);
      return 1;
    }
    if (now_ms(CLOCK_MONOTONIC) >= deadline) {
      snprintf(reason, cap, "vsock sidecar did not create %s within %d ms",
               opt.sidecar_wait_path, SIDECAR_WAIT_MS);
      return 1;
    }
    int sig = wait_signal(set, SIDECAR_POLL_MS);
    if (sig == SIGTERM || sig == SIGINT) {
      snprintf(reason, cap, "stopped (signal %d) before the vmm started", sig);
      return 2;
    }
  }
  return 0;
}

/*
 * The sidecar's start time lets the host tell it from a process that reused its pid (a
 * generic check: the host need not know what the sidecar's executable is called).
 */
static int write_state(const struct child *vmm, const struct child *sidecar,
                       const char *start_time) {
  char state[640];
  char sidecar_pid[32] = "null";
  char sidecar_start[72] = "null";
  if (sidecar->pid > 0 && !sidecar->exited) {
    char t[64];
    snprintf(sidecar_pid, sizeof sidecar_pid, "%d", (int)sidecar->pid);
    if (read_start_time(sidecar->pid, t, sizeof t) == 0)
      snprintf(sidecar_start, sizeof sidecar_start, "\"%s\"", t);
  }
  snprintf(state, sizeof state,
           "{\"shimPid\":%d,\"vmmPid\":%d,\"sidecarPid\":%s,\"sidecarStartTime\":%s,"
           "\"vmmStartTime\":\"%s\"}\n",
           (int)getpid(), (int)vmm->pid, sidecar_pid, sidecar_start, start_time);
  return write_atomic(opt.state_file, state);
}

/* Starts one --aux helper (its output goes to the shim's log) and waits for its socket. */
static int start_aux(struct aux *x, const sigset_t *set, char *reason, size_t cap) {
  char err[1024];
  unlink(x->wait_path);
  x->c.pid = spawn_child(x->argv, -1, x->ro_bind, -1, err, sizeof err);
  if (x->c.pid < 0) {
    snprintf(reason, cap, "%s failed to start: %s", x->argv[0], err);
    return -1;
  }
  logmsg("started %s pid %d", x->argv[0], (int)x->c.pid);
  long long deadline = now_ms(CLOCK_MONOTONIC) + SIDECAR_WAIT_MS;
  while (access(x->wait_path, F_OK) != 0) {
    int st;
    if (waitpid(x->c.pid, &st, WNOHANG) == x->c.pid) {
      x->c.exited = 1;
      x->c.status = st;
      describe(reason, cap, x->argv[0], st);
      return -1;
    }
    if (now_ms(CLOCK_MONOTONIC) >= deadline) {
      snprintf(reason, cap, "%s did not create %s within %d ms", x->argv[0], x->wait_path,
               SIDECAR_WAIT_MS);
      return -1;
    }
    int sig = wait_signal(set, SIDECAR_POLL_MS);
    if (sig == SIGTERM || sig == SIGINT) {
      snprintf(reason, cap, "stopped (signal %d) before the vmm started", sig);
      return -1;
    }
  }
  return 0;
}

static void reap_auxes(void) {
  for (int k = 0; k < naux; k++) reap_one(&auxes[k].c);
}

#ifdef __APPLE__
/*
 * macOS has no PR_SET_PDEATHSIG, and nothing in a SIGKILLed shim runs, so another process
 * must notice its death. The watcher, forked before any other child, waits for the shim's
 * exit with kqueue (EVFILT_PROC, NOTE_EXIT) and then SIGKILLs the shim's process group: the
 * sidecar, helpers and VMM, forked later, are in it (main makes the shim its leader, and
 * none of them leaves it), and so is the watcher, which goes with them. The group id cannot
 * be reused meanwhile: the watcher itself keeps the group alive until then.
 *
 * There is no window: XNU reparents a dying process's children before it posts NOTE_EXIT,
 * so a watcher that registers too late either gets ESRCH or finds its parent changed.
 * If the watcher dies first, the shim kills the VMM rather than run it unguarded (main).
 * Only SIGKILL ends the watcher early: it inherits the shim's blocked SIGTERM/SIGINT/SIGUSR1
 * and ignored SIGHUP/SIGPIPE.
 */
static int start_watcher(struct child *w, char *err, size_t errcap) {
  int pfd[2];
  if (pipe_cloexec(pfd) != 0) {
    snprintf(err, errcap, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t shim = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errcap, "fork: %s", strerror(errno));
    close(pfd[0]);
    close(pfd[1]);
    return -1;
  }
  if (pid == 0) {
    close(pfd[0]);
    if (opt.vmm_fd >= 0) close(opt.vmm_fd); /* the VMM's alone */
    int e = 0;
    int kq = kqueue();
    struct kevent ev;
    EV_SET(&ev, shim, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
    if (kq < 0 || kevent(kq, &ev, 1, NULL, 0, NULL) != 0) e = errno;
    if (e == ESRCH || getppid() != shim) {
      killpg(shim, SIGKILL); /* the shim is already gone */
      _exit(0);
    }
    ssize_t wr = write(pfd[1], &e, sizeof e);
    (void)wr;
    close(pfd[1]);
    if (e != 0) _exit(1); /* the shim reports it and starts nothing */
    while (kevent(kq, NULL, 0, &ev, 1, NULL) < 0 && errno == EINTR) {
    }
    killpg(shim, SIGKILL);
    _exit(0);
  }
  close(pfd[1]);
  w->pid = pid;
  w->exited = 0;
  int e = 0;
  ssize_t n;
  do n = read(pfd[0], &e, sizeof e);
  while (n < 0 && errno == EINTR);
  close(pfd[0]);
  if (n != (ssize_t)sizeof e || e != 0) {
    snprintf(err, errcap, "cannot watch the shim's exit: %s",
             n == (ssize_t)sizeof e ? strerror(e) : "the watcher died");
    kill_and_reap(w);
    return -1;
  }
  return 0;
}
#endif

static int start_failed(struct child *vmm, struct child *sidecar, const char *reason) {
  logmsg("%s", reason);
  kill_and_reap(sidecar);
  write_exit_file(vmm, sidecar, reason, 0);
  return 1;
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  if (opt.state_file == NULL || opt.exit_file == NULL)
    usage("--state-file and --exit-file are required");
  if ((opt.ready_file == NULL) != (opt.ready_timeout_ms < 0))
    usage("--ready-file and --ready-timeout-ms go together");
  if (opt.sidecar_wait_path != NULL && opt.sidecar_argv == NULL)
    usage("--sidecar-wait-path needs --sidecar");

  /* Sockets, logs and state files the VMM and sidecar create are the user's alone. */
  umask(077);

  /* Signals are taken synchronously with sigtimedwait, so there are no handler races. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, &orig_mask);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  struct child sidecar = {.name = "vsock sidecar", .pid = -1};
  struct child vmm = {.name = "vmm", .pid = -1};
  char reason[2048] = "", err[1024];
  int stop_requested = 0;

#ifdef __APPLE__
  static const int watched[] = {SIGCHLD, SIGTERM, SIGINT, SIGUSR1};
  if (watch_signals(watched, 4) != 0) {
    snprintf(reason, sizeof reason, "cannot watch signals: %s", strerror(errno));
    return start_failed(&vmm, &sidecar, reason);
  }
  /* The watcher kills the shim's process group: it must be the shim's own, not the
     launcher's (corral starts the shim in a new session, which already makes it so). */
  if (getpgrp() != getpid() && setpgid(0, 0) != 0) {
    snprintf(reason, sizeof reason, "cannot lead a process group: %s", strerror(errno));
    return start_failed(&vmm, &sidecar, reason);
  }
  struct child watcher = {.name = "watcher", .pid = -1};
  if (start_watcher(&watcher, err, sizeof err) != 0) {
    snprintf(reason, sizeof reason, "%s", err);
    return start_failed(&vmm, &sidecar, reason);
  }
#endif

  if (opt.sidecar_argv != NULL) {
    int r = start_sidecar(&sidecar, &vmm, &set, reason, sizeof reason);
    if (r == 1) return start_failed(&vmm, &sidecar, reason);
    if (r == 2) {
      logmsg("%s", reason);
      kill_and_reap(&sidecar);
      write_exit_file(&vmm, &sidecar, reason, 1);
      return 1;
    }
  }

  for (int k = 0; k < naux; k++) {
    if (start_aux(&auxes[k], &set, reason, sizeof reason) != 0) {
      for (int m = 0; m <= k; m++) kill_and_reap(&auxes[m].c);
      return start_failed(&vmm, &sidecar, reason);
    }
  }

  vmm.pid = spawn_child(opt.vmm_argv, -1, NULL, opt.vmm_fd, err, sizeof err);
  if (opt.vmm_fd >= 0) close(opt.vmm_fd);
  if (vmm.pid < 0) {
    snprintf(reason, sizeof reason, "vmm failed to start: %s", err);
    return start_failed(&vmm, &sidecar, reason);
  }
  long long vmm_started = now_ms(CLOCK_MONOTONIC);
  logmsg("started vmm pid %d", (int)vmm.pid);

  char start_time[64];
  if (read_start_time(vmm.pid, start_time, sizeof start_time) != 0) {
    /* Only possible if the VMM is already gone and reaped by nobody yet: fall through to
       the watch loop, which will record how it ended. */
    snprintf(start_time, sizeof start_time, "0");
  }
  if (write_state(&vmm, &sidecar, start_time) != 0) {
    /* The host cannot find the VMM without the state file: do not leave it running. */
    kill_and_reap(&vmm);
    return start_failed(&vmm, &sidecar, "cannot write the state file");
  }

  int watchdog_armed = opt.ready_file != NULL;
  int vmm_killed = 0;
  long long sidecar_seen_ms = -1;
  for (;;) {
    reap(&vmm, &sidecar);
    reap_auxes();
    if (vmm.exited) {
      if (reason[0] == '\0') describe(reason, sizeof reason, "vmm", vmm.status);
      break;
    }
    long long wait_ms = 60000;
    if (sidecar.pid > 0 && sidecar.exited && !vmm_killed) {
      /* A sidecar may exit because the VMM is already exiting (its vhost-user peer went
         away): let the VMM's own exit win that race, so a clean poweroff reads as one. */
      long long now = now_ms(CLOCK_MONOTONIC);
      if (sidecar_seen_ms < 0) sidecar_seen_ms = now;
      if (now - sidecar_seen_ms < SIDECAR_RACE_MS) {
        wait_ms = SIDECAR_RACE_MS - (now - sidecar_seen_ms);
      } else {
        describe(reason, sizeof reason, "vsock sidecar", sidecar.status);
        logmsg("%s; killing the vmm", reason);
        kill(vmm.pid, SIGKILL);
        vmm_killed = 1;
        continue;
      }
    }
    for (int k = 0; k < naux && !vmm_killed; k++) {
      struct aux *x = &auxes[k];
      if (!x->c.exited) continue;
      long long now = now_ms(CLOCK_MONOTONIC);
      if (x->seen_exit_ms < 0) x->seen_exit_ms = now;
      if (now - x->seen_exit_ms < SIDECAR_RACE_MS) {
        long long left = SIDECAR_RACE_MS - (now - x->seen_exit_ms);
        if (left < wait_ms) wait_ms = left;
        continue;
      }
      describe(reason, sizeof reason, x->argv[0], x->c.status);
      logmsg("%s; killing the vmm", reason);
      kill(vmm.pid, SIGKILL);
      vmm_killed = 1;
    }
#ifdef __APPLE__
    reap_one(&watcher);
    if (watcher.exited && !vmm_killed) {
      /* Without its watcher, a SIGKILLed shim would orphan the VMM. */
      describe(reason, sizeof reason, "the shim's watcher", watcher.status);
      logmsg("%s; killing the vmm", reason);
      kill(vmm.pid, SIGKILL);
      vmm_killed = 1;
    }
#endif
    if (vmm_killed && !vmm.exited) {
      wait_signal(&set, 10);
      continue;
    }
    if (watchdog_armed && !vmm_killed) {
      long long left = vmm_started + opt.ready_timeout_ms - now_ms(CLOCK_MONOTONIC);
      if (left <= 0) {
        watchdog_armed = 0;
        if (access(opt.ready_file, F_OK) != 0) {
          snprintf(reason, sizeof reason, "guest not ready within %ld ms", opt.ready_timeout_ms);
          logmsg("%s; killing the vmm", reason);
          kill(vmm.pid, SIGKILL);
          vmm_killed = 1;
        }
        continue;
      }
      if (left < wait_ms) wait_ms = left;
    }
    int sig = wait_signal(&set, wait_ms);
    if (sig == SIGUSR1 && opt.sidecar_argv != NULL && !vmm_killed) {
      /* Swap the sidecar: the VMM has unplugged (or will plug) its vsock device. */
      logmsg("replacing the vsock sidecar");
      stop_child(&sidecar, &vmm, &set);
      sidecar_seen_ms = -1;
      char why[1024];
      int started = start_sidecar(&sidecar, &vmm, &set, why, sizeof why);
      if (started == 2) {
        /* Asked to stop while the new sidecar came up: that is a stop, not a failure. */
        stop_requested = 1;
        logmsg("got a stop signal during the sidecar swap, sending SIGTERM to the vmm");
        kill(vmm.pid, SIGTERM);
        continue;
      }
      if (started != 0) {
        snprintf(reason, sizeof reason, "replacing the vsock sidecar failed: %s", why);
        logmsg("%s; killing the vmm", reason);
        kill(vmm.pid, SIGKILL);
        vmm_killed = 1;
        continue;
      }
      write_state(&vmm, &sidecar, start_time);
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      stop_requested = 1;
      logmsg("got signal %d, sending SIGTERM to the vmm", sig);
      kill(vmm.pid, SIGTERM);
    }
  }

  logmsg("%s", reason);
  stop_child(&sidecar, &vmm, &set);
  for (int k = 0; k < naux; k++) stop_child(&auxes[k].c, &vmm, &set);
  if (write_exit_file(&vmm, &sidecar, reason, stop_requested) != 0) return 1;
  return 0;
}
