/*
 * Children: spawning (exec errors reported through a close-on-exec pipe, death with the shim,
 * an optional read-only bind for --aux helpers, the --vmm-fd for the VMM alone), reaping and
 * stopping.
 */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

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
