/*
 * The vmm shim's shared declarations: constants, the children and helpers it supervises, its
 * options and state, and every function the parts share.
 *
 * The shim is one translation unit: native/vmm-shim.c includes this header, then each part
 * (vmm-shim/<part>.c), then defines main(). So the parts are not compiled on their own, the
 * functions stay static, and `cc vmm-shim.c` alone still builds the whole shim (corral's build
 * and test/unit/vmm-shim.test.ts do exactly that). The prototypes below let the parts be
 * included in any order.
 */
#ifndef VMM_SHIM_H
#define VMM_SHIM_H

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

/* util.c */
static void logmsg(const char *fmt, ...);
static long long now_ms(int clock);
static void describe(char *out, size_t cap, const char *who, int status);

/* args.c */
static void usage(const char *msg);
static void parse_args(int argc, char **argv);

/* files.c */
static int write_atomic(const char *path, const char *data);
static int write_exit_file(const struct child *vmm, const struct child *sidecar,
                           const char *reason, int stop_requested);
static int write_state(const struct child *vmm, const struct child *sidecar,
                       const char *start_time);

/* children.c */
static int pipe_cloexec(int fds[2]);
static pid_t spawn_child(char **argv, int out_fd, const char *ro_bind, int keep_fd, char *err,
                         size_t errcap);
static void reap_one(struct child *c);
static void reap(struct child *a, struct child *b);
static void stop_child(struct child *c, struct child *other, const sigset_t *set);
static void kill_and_reap(struct child *c);

/* helpers.c */
static int start_sidecar(struct child *sidecar, struct child *vmm, const sigset_t *set,
                         char *reason, size_t cap);
static int start_aux(struct aux *x, const sigset_t *set, char *reason, size_t cap);
static void reap_auxes(void);

/* linux.c or darwin.c */
static int wait_signal(const sigset_t *set, long long ms);
static int read_start_time(pid_t pid, char *out, size_t cap);
#ifdef __APPLE__
static int watch_signals(const int *sigs, int n);
static int start_watcher(struct child *w, char *err, size_t errcap);
#else
static int make_readonly(const char *dir);
#endif

#endif
