/* The command line (usage in vmm-shim.c's header comment). */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

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
