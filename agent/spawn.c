/*
 * exec's child: its environment, and the start itself (vfork, or fork to switch users), which
 * sets up stdio, signals, the user and the working directory, then execvp; a failure before
 * exec is reported through a close-on-exec pipe.
 */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* Signals the agent inherited as ignored (besides SIGPIPE, which it ignores itself). Ignored
 * dispositions survive exec, so a command must get them back as default; handled ones are
 * reset by exec itself. */
static uint64_t inherited_ignored;

void agent_note_inherited_ignored(void) {
  for (int s = 1; s < 65; s++) {
    struct sigaction old;
    if (s != SIGPIPE && sigaction(s, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
      inherited_ignored |= (uint64_t)1 << (s - 1);
  }
}

static void child_fail(int fd, int stage, int err) {
  struct child_err ce = {stage, err};
  ssize_t r = write(fd, &ce, sizeof ce);
  (void)r;
  _exit(127);
}

/*
 * Runs in the child of fork() or vfork(). Under vfork it shares the handler's memory until it
 * execs, so it only makes system calls, writes its own stack and `environ` (which the
 * handler restores).
 */
static void child_main(const struct request *rq, const struct ident *id, char **envp,
                       int in_fd, int out_fd, int err_fd, int report_fd) {
  if (setsid() < 0) child_fail(report_fd, 3, errno);
  if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
    child_fail(report_fd, 3, errno);
  signal(SIGPIPE, SIG_DFL);
  for (int s = 1; s < 65; s++)
    if (inherited_ignored & ((uint64_t)1 << (s - 1))) signal(s, SIG_DFL);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  if (id && agent_become(id) < 0) child_fail(report_fd, 0, errno);
  if (rq->cwd) {
    if (chdir(rq->cwd) < 0) child_fail(report_fd, 1, errno);
  } else {
    const char *home = NULL;
    for (char **e = envp; *e; e++)
      if (!strncmp(*e, "HOME=", 5)) home = *e + 5;
    if (!home || chdir(home) < 0) {
      if (chdir("/") < 0) child_fail(report_fd, 1, errno);
    }
  }
  /* execvp searches the PATH of the calling process, so hand it the child's env first. */
  environ = envp;
  execvp(rq->argv[0], rq->argv);
  child_fail(report_fd, 2, errno);
}

/* Builds the child's environment: defaults first, request entries override by key. */
/* `home_kv` ("HOME=...") and the request's strings are owned by the caller: only the array is
 * allocated here (a request's HOME replaces the default's slot). */
char **agent_build_env(const struct request *rq, char *home_kv) {
  char **envp = calloc((size_t)rq->envc + 3, sizeof(char *));
  if (!envp) return NULL;
  int n = 0;
  envp[n++] = home_kv;
  envp[n++] = "PATH=" DEFAULT_PATH;
  for (int i = 0; i < rq->envc; i++) {
    size_t kl = (size_t)(strchr(rq->env[i], '=') - rq->env[i]) + 1;
    int j;
    for (j = 0; j < n; j++)
      if (!strncmp(envp[j], rq->env[i], kl)) break;
    envp[j] = rq->env[i];
    if (j == n) n++;
  }
  envp[n] = NULL;
  return envp;
}

/*
 * vfork: no page tables to copy and no copy-on-write faults afterwards, which is most of what a
 * process start costs under TCG. Switching users needs set*id calls that are not safe while
 * sharing the handler's memory, so that case forks. Its own function, so that nothing of the
 * caller's lives in registers across the vfork.
 */
__attribute__((noinline)) pid_t agent_start_child(const struct request *rq,
                                                  const struct ident *id, char **envp,
                                                  int in_fd, int out_fd, int err_fd,
                                                  int report_fd) {
  char **saved_environ = environ;
  pid_t pid = id ? fork() : vfork();
  if (pid == 0) child_main(rq, id, envp, in_fd, out_fd, err_fd, report_fd);
  environ = saved_environ;
  return pid;
}
