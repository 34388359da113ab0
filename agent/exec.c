/*
 * The exec op: resolve the user, build the environment, start the command (spawn.c), then one
 * poll loop over the socket, the child's three pipes and a SIGCHLD self-pipe (exec-io.c moves
 * the bytes) until the command exited and its output drained; the exit frame ends it.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int sigchld_pipe[2] = {-1, -1};

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  ssize_t r = write(sigchld_pipe[1], "c", 1);
  (void)r;
  errno = saved;
}

static void reap(pid_t pid, int *status) {
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

/* Closes both ends of a pipe and marks them closed. */
static void close_pair(int p[2]) {
  agent_close_fd(&p[0]);
  agent_close_fd(&p[1]);
}

/* Returns 1 when the command ran and its exit frame was sent; 0 after a failure or a
 * disconnect (the connection is then over). */
int agent_op_exec(int sock, struct request *rq, unsigned char *buf) {
  if (rq->argc == 0) {
    agent_send_fail(sock, "BAD_REQUEST", NULL, "exec needs at least one arg");
    return 0;
  }
  struct ident id, *idp = NULL;
  char home[PATH_MAX] = "/root";
  if (rq->user) {
    const char *e = agent_resolve_user(rq->user, &id);
    if (e) {
      agent_send_fail(sock, "NO_SUCH_USER", "user", "user \"%s\": %s", rq->user, e);
      return 0;
    }
    idp = &id;
    snprintf(home, sizeof home, "%s", id.home);
  } else {
    struct ident self;
    memset(&self, 0, sizeof self);
    if (agent_passwd_lookup(NULL, getuid(), &self) == 0)
      snprintf(home, sizeof home, "%s", self.home);
  }
  char home_kv[PATH_MAX + 8];
  snprintf(home_kv, sizeof home_kv, "HOME=%s", home);
  char **envp = agent_build_env(rq, home_kv);
  int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1};
  if (!envp || pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(out_p, O_CLOEXEC) < 0 ||
      pipe2(err_p, O_CLOEXEC) < 0 || pipe2(rep_p, O_CLOEXEC) < 0 ||
      (rq->stdin_stream ? pipe2(in_p, O_CLOEXEC) : (in_p[0] = open("/dev/null", O_RDONLY | O_CLOEXEC))) < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "setup", "exec setup: %s", strerror(errno));
    return 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  pid_t pid = agent_start_child(rq, idp, envp, in_p[0], out_p[1], err_p[1], rep_p[1]);
  free(envp);
  if (pid < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "setup", "fork: %s", strerror(errno));
    close_pair(in_p);
    close_pair(out_p);
    close_pair(err_p);
    close_pair(rep_p);
    close_pair(sigchld_pipe);
    return 0;
  }
  agent_close_fd(&in_p[0]);
  agent_close_fd(&out_p[1]);
  agent_close_fd(&err_p[1]);
  agent_close_fd(&rep_p[1]);

  /* EOF on the report pipe means exec succeeded (it is close-on-exec). */
  struct child_err ce;
  ssize_t got;
  while ((got = read(rep_p[0], &ce, sizeof ce)) < 0 && errno == EINTR) {
  }
  agent_close_fd(&rep_p[0]);
  if (got == (ssize_t)sizeof ce) {
    int status;
    reap(pid, &status);
    close_pair(in_p);
    close_pair(out_p);
    close_pair(err_p);
    close_pair(sigchld_pipe);
    if (ce.stage == 2)
      agent_send_fail(sock, agent_errno_code(ce.err), "exec", "exec \"%s\": %s", rq->argv[0],
                      strerror(ce.err));
    else if (ce.stage == 1)
      agent_send_fail(sock, agent_errno_code(ce.err), "cwd", "cwd \"%s\": %s",
                      rq->cwd ? rq->cwd : "", strerror(ce.err));
    else if (ce.stage == 0)
      agent_send_fail(sock, agent_errno_code(ce.err), "user", "switch to user \"%s\": %s",
                      rq->user, strerror(ce.err));
    else
      agent_send_fail(sock, agent_errno_code(ce.err), "setup", "exec setup: %s", strerror(ce.err));
    return 0;
  }

  struct exec_io io;
  memset(&io, 0, sizeof io);
  io.sock = sock;
  io.pipes[0] = out_p[0];
  io.pipes[1] = err_p[0];
  io.in_fd = rq->stdin_stream ? in_p[1] : -1;
  io.in_buf = buf;
  agent_set_nonblock(sock, 1);
  agent_set_nonblock(io.pipes[0], 1);
  agent_set_nonblock(io.pipes[1], 1);
  if (io.in_fd >= 0) agent_set_nonblock(io.in_fd, 1);

  int64_t deadline = rq->has_timeout ? agent_now_ms() + (int64_t)rq->timeout_ms : -1;
  int timed_out = 0, exited = 0, status = 0, violation = 0;
  int64_t drain_until = -1;

  for (;;) {
    struct pollfd p[5];
    int np = 0, i_sock = -1, i_pipe[2] = {-1, -1}, i_in = -1, i_chld;
    int out_pending = io.out_off < io.out_len;
    short sev = POLLRDHUP;
    if (!exited && io.in_len == 0) sev |= POLLIN;
    if (out_pending) sev |= POLLOUT;
    p[np] = (struct pollfd){.fd = sock, .events = sev};
    i_sock = np++;
    if (!out_pending)
      for (int k = 0; k < 2; k++)
        if (io.pipes[k] >= 0) {
          p[np] = (struct pollfd){.fd = io.pipes[k], .events = POLLIN};
          i_pipe[k] = np++;
        }
    if (io.in_fd >= 0 && io.in_len > 0) {
      p[np] = (struct pollfd){.fd = io.in_fd, .events = POLLOUT};
      i_in = np++;
    }
    p[np] = (struct pollfd){.fd = sigchld_pipe[0], .events = POLLIN};
    i_chld = np++;

    int timeout = -1;
    int64_t now = agent_now_ms();
    if (exited) {
      /* Draining: done once nothing more is readable right now. */
      if (!out_pending && io.pipes[0] < 0 && io.pipes[1] < 0) break;
      timeout = out_pending ? -1 : 0;
      if (!out_pending && now >= drain_until) break;
    } else if (deadline >= 0) {
      if (now >= deadline && !timed_out) {
        timed_out = 1;
        kill(-pid, SIGKILL);
      }
      /* poll takes an int: wake at least hourly for long deadlines. */
      if (!timed_out) timeout = deadline - now > 3600000 ? 3600000 : (int)(deadline - now);
    }
    int r = poll(p, (nfds_t)np, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (exited && r == 0) break;
    short sre = p[i_sock].revents;
    if (sre & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) goto disconnect;
    if (sre & POLLOUT && agent_exec_flush_out(&io) < 0) goto disconnect;
    if (sre & POLLIN) {
      int rr = agent_exec_read_sock(&io, pid, rq->stdin_stream);
      if (rr == -1) goto disconnect;
      if (rr == -2) {
        violation = 1;
        goto disconnect;
      }
    }
    if (i_in >= 0 && p[i_in].revents) agent_exec_write_stdin(&io);
    else if (io.in_fd >= 0 && io.in_len > 0) agent_exec_write_stdin(&io);
    if (!(io.out_off < io.out_len)) {
      for (int t = 0; t < 2; t++) {
        int k = (io.next_pipe + t) % 2;
        int readable = i_pipe[k] >= 0 && p[i_pipe[k]].revents;
        if (!readable) continue;
        int fr = agent_exec_fill_out(&io, k);
        if (fr == 1) {
          io.next_pipe = (k + 1) % 2;
          if (agent_exec_flush_out(&io) < 0) goto disconnect;
          break;
        }
        if (fr == 0 && exited) agent_close_fd(&io.pipes[k]);
      }
    }
    if (p[i_chld].revents & POLLIN) {
      char drain[64];
      while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {
      }
    }
    if (!exited) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = 1;
        drain_until = agent_now_ms() + DRAIN_LIMIT_MS;
        agent_close_fd(&io.in_fd);
        io.in_len = io.in_off = 0;
      }
    }
  }
  agent_close_fd(&io.pipes[0]);
  agent_close_fd(&io.pipes[1]);
  agent_set_nonblock(sock, 0);
  struct kv kv = {.len = 0};
  if (WIFSIGNALED(status)) agent_kv_addu(&kv, "signal", (uint64_t)WTERMSIG(status));
  else agent_kv_addu(&kv, "code", (uint64_t)WEXITSTATUS(status));
  if (timed_out) agent_kv_add(&kv, "timeout", "1");
  close_pair(sigchld_pipe);
  return agent_send_frame(sock, 'X', kv.buf, (uint32_t)kv.len) == 0;

disconnect:
  /* The host is gone (or broke the protocol): nobody will read the output, stop everything. */
  kill(-pid, SIGKILL);
  if (!exited) reap(pid, &status);
  agent_close_fd(&io.in_fd);
  agent_close_fd(&io.pipes[0]);
  agent_close_fd(&io.pipes[1]);
  close_pair(sigchld_pipe);
  if (violation) agent_send_fail(sock, "BAD_REQUEST", NULL, "unexpected frame during exec");
  return 0;
}
