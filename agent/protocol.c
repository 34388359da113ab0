/*
 * The wire format (docs/agent-protocol.md): frames out (one write for small ones), key=value
 * replies and failures, frames in (with a deadline), and the request's key=value list.
 */
#include "agent.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- frame output */

int agent_write_all(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, -1);
        continue;
      }
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

void agent_put_header(unsigned char *h, char type, uint32_t len) {
  h[0] = (unsigned char)type;
  h[1] = (unsigned char)(len >> 24);
  h[2] = (unsigned char)(len >> 16);
  h[3] = (unsigned char)(len >> 8);
  h[4] = (unsigned char)len;
}

/* Small frames go out in one write: each write on a vsock socket is a packet of its own, and
 * under TCG every packet costs a virtqueue notification and a wakeup of the host's sidecar. */
int agent_send_frame(int fd, char type, const void *payload, uint32_t len) {
  static unsigned char small[5 + 4096];
  if (len <= sizeof small - 5) {
    agent_put_header(small, type, len);
    if (len) memcpy(small + 5, payload, len);
    return agent_write_all(fd, small, 5 + (size_t)len);
  }
  unsigned char h[5];
  agent_put_header(h, type, len);
  if (agent_write_all(fd, h, 5) < 0) return -1;
  return agent_write_all(fd, payload, len);
}

void agent_kv_add(struct kv *kv, const char *key, const char *value) {
  size_t kl = strlen(key), vl = strlen(value);
  if (kv->len + kl + vl + 2 > sizeof kv->buf) vl = sizeof kv->buf - kv->len - kl - 2;
  memcpy(kv->buf + kv->len, key, kl);
  kv->buf[kv->len + kl] = '=';
  memcpy(kv->buf + kv->len + kl + 1, value, vl);
  kv->buf[kv->len + kl + 1 + vl] = '\0';
  kv->len += kl + vl + 2;
}

void agent_kv_addu(struct kv *kv, const char *key, uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%llu", (unsigned long long)v);
  agent_kv_add(kv, key, b);
}

void agent_send_fail(int fd, const char *code, const char *stage, const char *fmt, ...) {
  struct kv kv = {.len = 0};
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  agent_kv_add(&kv, "code", code);
  agent_kv_add(&kv, "message", msg);
  if (stage) agent_kv_add(&kv, "stage", stage);
  agent_set_nonblock(fd, 0);
  agent_send_frame(fd, 'F', kv.buf, (uint32_t)kv.len);
}

/* -------------------------------------------------------------- frame input */

/* Reads exactly n bytes; 0 on success, -1 on EOF/error, -2 on timeout (deadline_ms < 0: none). */
static int read_full(int fd, void *buf, size_t n, int64_t deadline_ms) {
  unsigned char *p = buf;
  while (n > 0) {
    if (deadline_ms >= 0) {
      int64_t left = deadline_ms - agent_now_ms();
      if (left <= 0) return -2;
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      int r = poll(&pfd, 1, (int)left);
      if (r < 0 && errno != EINTR) return -1;
      if (r <= 0) continue;
    }
    ssize_t got = read(fd, p, n);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, -1);
        continue;
      }
      return -1;
    }
    if (got == 0) return -1;
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

/* Reads one frame into buf (capacity MAX_IN_PAYLOAD). 0 ok, -1 EOF/error, -2 timeout,
 * -3 oversized. */
int agent_read_frame(int fd, char *type, unsigned char *buf, uint32_t *len, int64_t deadline) {
  unsigned char h[5];
  int r = read_full(fd, h, 5, deadline);
  if (r < 0) return r;
  uint32_t n = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
  if (n > MAX_IN_PAYLOAD) return -3;
  *type = (char)h[0];
  *len = n;
  return n ? read_full(fd, buf, n, deadline) : 0;
}

/* ----------------------------------------------------------------- request */

/* Parses the NUL-terminated key=value list in place. Returns NULL or an error message. */
const char *agent_parse_request(char *p, uint32_t len, struct request *rq) {
  memset(rq, 0, sizeof *rq);
  if (len == 0 || p[len - 1] != '\0') return "request is not a NUL-terminated key=value list";
  int count = 0;
  for (uint32_t i = 0; i < len; i++)
    if (p[i] == '\0') count++;
  rq->argv = calloc((size_t)count + 1, sizeof(char *));
  rq->env = calloc((size_t)count + 1, sizeof(char *));
  if (!rq->argv || !rq->env) return "out of memory";
  char *next;
  for (char *s = p; s < p + len; s = next) {
    next = s + strlen(s) + 1; /* before '=' becomes the key's terminator */
    char *eq = strchr(s, '=');
    if (!eq || eq == s) return "malformed key=value entry";
    *eq = '\0';
    const char *k = s, *v = eq + 1;
    uint64_t n;
    if (!strcmp(k, "op")) rq->op = v;
    else if (!strcmp(k, "arg")) rq->argv[rq->argc++] = (char *)v;
    else if (!strcmp(k, "env")) {
      const char *e = strchr(v, '=');
      if (!e || e == v) return "env entries must be K=V";
      rq->env[rq->envc++] = (char *)v;
    } else if (!strcmp(k, "cwd")) rq->cwd = v;
    else if (!strcmp(k, "user")) rq->user = v;
    else if (!strcmp(k, "path")) rq->path = v;
    else if (!strcmp(k, "stdin")) {
      if (strcmp(v, "0") && strcmp(v, "1")) return "stdin must be 0 or 1";
      rq->stdin_stream = v[0] == '1';
    } else if (!strcmp(k, "timeout_ms")) {
      if (agent_parse_u64(v, (uint64_t)1 << 40, &rq->timeout_ms))
        return "timeout_ms must be a number";
      rq->has_timeout = rq->timeout_ms > 0;
    } else if (!strcmp(k, "mode")) {
      n = 0;
      if (!*v || strlen(v) > 4 || strspn(v, "01234567") != strlen(v)) return "mode must be octal";
      for (const char *c = v; *c; c++) n = n * 8 + (uint64_t)(*c - '0');
      rq->mode = (mode_t)n;
      rq->has_mode = 1;
    } else if (!strcmp(k, "time_ms")) {
      if (agent_parse_u64(v, (uint64_t)1 << 52, &rq->time_ms)) return "time_ms must be a number";
      rq->has_time = 1;
    } else if (!strcmp(k, "port")) {
      if (agent_parse_u64(v, 65535, &rq->port) || rq->port == 0) return "port must be 1..65535";
    } else if (!strcmp(k, "host")) {
      rq->host = v;
    } else if (!strcmp(k, "keep")) {
      if (strcmp(v, "0") && strcmp(v, "1")) return "keep must be 0 or 1";
      rq->keep = v[0] == '1';
    } else if (!strcmp(k, "version")) {
      if (strcmp(v, PROTOCOL_VERSION)) return "unsupported protocol version";
    } else {
      return "unknown request key";
    }
  }
  if (!rq->op) return "missing op";
  return NULL;
}
