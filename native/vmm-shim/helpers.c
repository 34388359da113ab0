/*
 * The processes started before the VMM: the vsock sidecar (also restarted on SIGUSR1) and the
 * --aux helpers, each awaited until its socket path exists.
 */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

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
