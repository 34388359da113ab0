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
 * (see start_watcher). The macOS code is under __APPLE__ and in vmm-shim/darwin.c; it is not
 * compiled or run by the Linux test suite, only syntax-checked against stub headers, so keep
 * it small.
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
 *
 * The shim is one translation unit, split by concept under vmm-shim/ (shim.h declares what the
 * parts share): args.c (the command line), children.c (spawning, reaping, stopping),
 * helpers.c (the sidecar and --aux helpers), files.c (the state and exit files), util.c, and
 * linux.c or darwin.c. This file includes them and is the supervisor itself: main.
 */
#include "vmm-shim/shim.h"

#include "vmm-shim/args.c"
#include "vmm-shim/children.c"
#include "vmm-shim/files.c"
#include "vmm-shim/helpers.c"
#include "vmm-shim/util.c"
#ifdef __APPLE__
#include "vmm-shim/darwin.c"
#else
#include "vmm-shim/linux.c"
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
