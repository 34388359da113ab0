/*
 * Byte relays: tcp_connect (a port forward: a TCP connection inside the guest carried over the
 * host's vsock stream) and the egress relay (a guest program's connection to the proxy port,
 * carried to the host's proxy over vsock).
 */
#include "agent.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

/* One direction of a relay: bytes read from `from` wait in buf until `to` took them. */
struct pipe_dir {
  int from, to;
  unsigned char buf[CHUNK];
  size_t len, off;
  int eof;  /* `from` reached EOF (or failed): shut down `to` for writing once buf is empty */
  int done; /* `to` was shut down */
};

/*
 * Copies bytes both ways between two stream sockets until both directions ended, keeping
 * half-closes (EOF one way shuts down writing the other way). At most one chunk per direction
 * is buffered: a slow reader slows the writer (the transports' own flow control).
 */
static void relay(int a, int b) {
  static struct pipe_dir d[2];
  memset(d, 0, sizeof d);
  d[0].from = a, d[0].to = b;
  d[1].from = b, d[1].to = a;
  agent_set_nonblock(a, 1);
  agent_set_nonblock(b, 1);
  while (!d[0].done || !d[1].done) {
    struct pollfd pfd[2] = {{.fd = a}, {.fd = b}};
    for (int i = 0; i < 2; i++) {
      if (d[i].done) continue;
      struct pollfd *in = d[i].from == a ? &pfd[0] : &pfd[1];
      struct pollfd *out = d[i].to == a ? &pfd[0] : &pfd[1];
      if (d[i].len > d[i].off) out->events |= POLLOUT;
      else if (!d[i].eof) in->events |= POLLIN;
    }
    /* An fd nobody waits on is left out: an error or hang-up it still reports (a reset
       socket does so forever) would otherwise make poll return at once, spinning a CPU. */
    for (int k = 0; k < 2; k++)
      if (pfd[k].events == 0) pfd[k].fd = -1;
    int r = poll(pfd, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    /* A socket in error (reset, invalid) ends the relay: nothing more can go through it. */
    if ((pfd[0].revents | pfd[1].revents) & (POLLERR | POLLNVAL)) return;
    for (int i = 0; i < 2; i++) {
      struct pipe_dir *p = &d[i];
      if (p->done) continue;
      struct pollfd *in = p->from == a ? &pfd[0] : &pfd[1];
      struct pollfd *out = p->to == a ? &pfd[0] : &pfd[1];
      if (p->len == p->off && !p->eof && (in->revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(p->from, p->buf, sizeof p->buf);
        if (n > 0) {
          p->len = (size_t)n;
          p->off = 0;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          p->eof = 1;
        }
      }
      if (p->len > p->off && (out->revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = write(p->to, p->buf + p->off, p->len - p->off);
        if (n > 0) {
          p->off += (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          /* The receiver is gone: nothing more can go this way; stop reading it too. */
          p->len = p->off = 0;
          p->eof = 1;
          shutdown(p->from, SHUT_RD);
        }
      }
      if (p->eof && p->len == p->off) {
        shutdown(p->to, SHUT_WR);
        p->done = 1;
      }
    }
  }
}

/* Connects to a TCP address in the guest with a timeout. Returns the fd or -1 (errno set). */
static int tcp_connect(const char *host, unsigned port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    errno = EINVAL;
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    if (errno != EINPROGRESS) {
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r;
    do r = poll(&pfd, 1, TCP_CONNECT_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    int err = 0;
    socklen_t el = sizeof err;
    if (r == 0) err = ETIMEDOUT;
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
    if (err) {
      close(fd);
      errno = err;
      return -1;
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Port forwards: the host asks for a TCP connection inside the guest, then the vsock stream
 * carries its bytes. Only IPv4 literals: the guest's resolver is not the host's business. */
void agent_op_tcp_connect(int sock, const struct request *rq) {
  if (!rq->port) {
    agent_send_fail(sock, "BAD_REQUEST", NULL, "tcp_connect needs port");
    return;
  }
  const char *host = rq->host ? rq->host : "127.0.0.1";
  int fd = tcp_connect(host, (unsigned)rq->port);
  if (fd < 0) {
    agent_send_fail(sock, errno == EINVAL ? "BAD_REQUEST" : agent_errno_code(errno), "connect",
                    "connect to %s:%u in the guest: %s", host, (unsigned)rq->port,
                    strerror(errno));
    return;
  }
  struct kv kv = {.len = 0};
  agent_kv_add(&kv, "host", host);
  agent_kv_addu(&kv, "port", rq->port);
  if (agent_send_frame(sock, 'C', kv.buf, (uint32_t)kv.len) < 0) {
    close(fd);
    return;
  }
  relay(sock, fd);
  close(fd);
}

/* A guest program's connection to the egress proxy port: relayed to the host's proxy. */
void agent_relay_egress(int client, unsigned vsock_port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct agent_sockaddr_vm sa;
  memset(&sa, 0, sizeof sa);
  sa.svm_family = AF_VSOCK;
  sa.svm_port = vsock_port;
  sa.svm_cid = AGENT_VMADDR_CID_HOST;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    /* No proxy on the host: this VM has no egress. The client sees a closed connection. */
    close(fd);
    return;
  }
  relay(client, fd);
  close(fd);
}
