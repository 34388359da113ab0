/* A connection's handler: its requests read, dispatched to the ops, and the lingering close. */
#include "agent.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Serves one request. Returns 1 when the host asked to keep the connection (keep=1) and the
 * operation ended with its success frame, so the next request may follow on the same
 * connection; only ops that leave this process as it was (ping, set_time, exec) qualify.
 */
static int serve(int sock, struct request *rq, unsigned char *buf) {
  if (rq->keep && strcmp(rq->op, "ping") && strcmp(rq->op, "exec") && strcmp(rq->op, "set_time")) {
    agent_send_fail(sock, "BAD_REQUEST", NULL,
                    "keep=1 is only allowed with ping, set_time and exec");
    return 0;
  }
  int ok = 0;
  if (!strcmp(rq->op, "ping")) {
    ok = agent_op_ping(sock);
  } else if (!strcmp(rq->op, "exec")) {
    ok = agent_op_exec(sock, rq, buf);
  } else if (!strcmp(rq->op, "set_time")) {
    ok = agent_op_set_time(sock, rq);
  } else if (!strcmp(rq->op, "tcp_connect")) {
    agent_op_tcp_connect(sock, rq);
  } else if (!strcmp(rq->op, "read_file") || !strcmp(rq->op, "write_file")) {
    if (!rq->path || rq->path[0] != '/') {
      agent_send_fail(sock, "BAD_REQUEST", NULL, "path must be absolute");
      return 0;
    }
    if (rq->user) {
      /* Switching identity in this per-connection process makes the kernel apply the user's
       * permissions and ownership, exactly as for a program the user ran. */
      struct ident id;
      const char *e = agent_resolve_user(rq->user, &id);
      if (e) {
        agent_send_fail(sock, "NO_SUCH_USER", "user", "user \"%s\": %s", rq->user, e);
        return 0;
      }
      if (agent_become(&id) < 0) {
        agent_send_fail(sock, agent_errno_code(errno), "user", "switch to user \"%s\": %s",
                        rq->user, strerror(errno));
        return 0;
      }
    }
    if (rq->op[0] == 'r') agent_op_read_file(sock, rq, buf);
    else agent_op_write_file(sock, rq, buf);
  } else {
    agent_send_fail(sock, "BAD_REQUEST", NULL, "unknown op \"%s\"", rq->op);
  }
  return ok && rq->keep;
}

/* A connection's life: one request, or a series of them while the host keeps it. A kept
 * handler is a warm process: its pages are already faulted in, which under TCG is worth more
 * than the fork it saves. */
void agent_handle(int sock) {
  unsigned char *buf = malloc(MAX_IN_PAYLOAD + 1);
  if (!buf) return;
  int64_t wait_ms = REQUEST_TIMEOUT_MS;
  for (;;) {
    char type;
    uint32_t len;
    int r = agent_read_frame(sock, &type, buf, &len, agent_now_ms() + wait_ms);
    if (r == -1 || r == -2) break;
    if (r == -3 || type != 'R') {
      agent_send_fail(sock, "BAD_REQUEST", NULL,
                      r == -3 ? "frame too large" : "expected a request frame");
      break;
    }
    /* The request strings point into this copy; buf is reused for data frames. */
    char *req = malloc(len + 1);
    if (!req) break;
    memcpy(req, buf, len);
    req[len] = '\0';
    struct request rq;
    const char *err = agent_parse_request(req, len, &rq);
    int kept = 0;
    if (err) agent_send_fail(sock, "BAD_REQUEST", NULL, "%s", err);
    else kept = serve(sock, &rq, buf);
    free(rq.argv);
    free(rq.env);
    free(req);
    if (!kept) break;
    wait_ms = KEEP_IDLE_MS;
  }
  free(buf);
}

/* Closing with unread input makes the host's pending writes fail (EPIPE/RST) and can discard
 * the reply it has not read yet. So: signal end-of-replies, then swallow whatever the host
 * still sends until it closes, for a bounded time. */
void agent_linger_close(int sock) {
  static unsigned char sink[16384];
  agent_set_nonblock(sock, 0);
  shutdown(sock, SHUT_WR);
  int64_t deadline = agent_now_ms() + 5000;
  for (;;) {
    int64_t left = deadline - agent_now_ms();
    if (left <= 0) break;
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    int r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = read(sock, sink, sizeof sink);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
  close(sock);
}
