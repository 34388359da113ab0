/*
 * The macOS-only parts: signals through a kqueue (no sigtimedwait), a process's start time
 * (sysctl), and the watcher that stands in for PR_SET_PDEATHSIG. Not compiled or run by the
 * Linux test suite, only syntax-checked against stub headers, so keep it small.
 */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

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
