/*
 * corral-agent: the guest side of corral's host <-> guest channel.
 *
 * Listens on AF_VSOCK (or a unix socket for host-side tests), forks one handler per
 * connection, and serves exactly one operation per connection. The wire protocol is
 * documented in docs/agent-protocol.md; keep the two in sync.
 *
 * Build: musl-gcc -static -Os -Wall -Wextra -Werror -o corral-agent corral-agent.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 0.2.0: kept connections (keep=1), announced as features=keep in the ping reply. */
#define AGENT_VERSION "0.2.0"
#define PROTOCOL_VERSION "1"
#define DEFAULT_PORT 1024
#define MAX_IN_PAYLOAD (1024 * 1024)
#define CHUNK (64 * 1024)
#define REQUEST_TIMEOUT_MS 30000
/* How long a kept connection (keep=1) may sit idle between requests. The host closes its idle
 * connections well before this; the limit only bounds a host that forgot one. */
#define KEEP_IDLE_MS 120000
/* After the child exits, a background grandchild may keep its pipes open: read what is
 * there, but never longer than this. */
#define DRAIN_LIMIT_MS 2000
#define MAX_GROUPS 64
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* musl does not ship <linux/vm_sockets.h>; the ABI is stable, so define it here. */
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
struct agent_sockaddr_vm {
  sa_family_t svm_family;
  unsigned short svm_reserved1;
  unsigned int svm_port;
  unsigned int svm_cid;
  unsigned char svm_zero[4];
};
#define AGENT_VMADDR_CID_ANY 0xFFFFFFFFu
#define AGENT_VMADDR_CID_HOST 2u
#define DEFAULT_READY_PORT 1025
/* Egress: the agent relays TCP connections to 127.0.0.1:<egress port> in the guest to the host
 * on this vsock port, where corral's proxy enforces the VM's allowlist. */
#define DEFAULT_EGRESS_VSOCK_PORT 1026
#define DEFAULT_EGRESS_LISTEN_PORT 3128
#define TCP_CONNECT_TIMEOUT_MS 10000

extern char **environ;

/* ---------------------------------------------------------------- utilities */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return;
  fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

/* Strict unsigned decimal: no sign, no spaces, no overflow past max. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  if (*s == '\0') return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    if (v > (max - (uint64_t)(*s - '0')) / 10) return -1;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return 0;
}

static const char *errno_code(int e) {
  static char buf[24];
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOEXEC: return "ENOEXEC";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case E2BIG: return "E2BIG";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EBUSY: return "EBUSY";
    case ETXTBSY: return "ETXTBSY";
    case EIO: return "EIO";
    case EINVAL: return "EINVAL";
    case EXDEV: return "EXDEV";
    case EMFILE: return "EMFILE";
    case EAGAIN: return "EAGAIN";
    case EDQUOT: return "EDQUOT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNRESET: return "ECONNRESET";
    default: snprintf(buf, sizeof buf, "ERRNO_%d", e); return buf;
  }
}

/* ------------------------------------------------------------- frame output */

static int write_all(int fd, const void *buf, size_t n) {
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

static void put_header(unsigned char *h, char type, uint32_t len) {
  h[0] = (unsigned char)type;
  h[1] = (unsigned char)(len >> 24);
  h[2] = (unsigned char)(len >> 16);
  h[3] = (unsigned char)(len >> 8);
  h[4] = (unsigned char)len;
}

/* Small frames go out in one write: each write on a vsock socket is a packet of its own, and
 * under TCG every packet costs a virtqueue notification and a wakeup of the host's sidecar. */
static int send_frame(int fd, char type, const void *payload, uint32_t len) {
  static unsigned char small[5 + 4096];
  if (len <= sizeof small - 5) {
    put_header(small, type, len);
    if (len) memcpy(small + 5, payload, len);
    return write_all(fd, small, 5 + (size_t)len);
  }
  unsigned char h[5];
  put_header(h, type, len);
  if (write_all(fd, h, 5) < 0) return -1;
  return write_all(fd, payload, len);
}

/* A key=value list being built for a reply; replies are small and bounded. */
struct kv {
  char buf[4096];
  size_t len;
};

static void kv_add(struct kv *kv, const char *key, const char *value) {
  size_t kl = strlen(key), vl = strlen(value);
  if (kv->len + kl + vl + 2 > sizeof kv->buf) vl = sizeof kv->buf - kv->len - kl - 2;
  memcpy(kv->buf + kv->len, key, kl);
  kv->buf[kv->len + kl] = '=';
  memcpy(kv->buf + kv->len + kl + 1, value, vl);
  kv->buf[kv->len + kl + 1 + vl] = '\0';
  kv->len += kl + vl + 2;
}

static void kv_addu(struct kv *kv, const char *key, uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%llu", (unsigned long long)v);
  kv_add(kv, key, b);
}

static void send_fail(int fd, const char *code, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_fail(int fd, const char *code, const char *stage, const char *fmt, ...) {
  struct kv kv = {.len = 0};
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  kv_add(&kv, "code", code);
  kv_add(&kv, "message", msg);
  if (stage) kv_add(&kv, "stage", stage);
  set_nonblock(fd, 0);
  send_frame(fd, 'F', kv.buf, (uint32_t)kv.len);
}

/* -------------------------------------------------------------- frame input */

/* Reads exactly n bytes; 0 on success, -1 on EOF/error, -2 on timeout (deadline_ms < 0: none). */
static int read_full(int fd, void *buf, size_t n, int64_t deadline_ms) {
  unsigned char *p = buf;
  while (n > 0) {
    if (deadline_ms >= 0) {
      int64_t left = deadline_ms - now_ms();
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
static int read_frame(int fd, char *type, unsigned char *buf, uint32_t *len, int64_t deadline) {
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

struct request {
  const char *op;
  char **argv;
  int argc;
  char **env;
  int envc;
  const char *cwd;
  const char *user;
  const char *path;
  int stdin_stream;
  uint64_t timeout_ms;
  int has_timeout;
  mode_t mode;
  int has_mode;
  uint64_t time_ms;
  int has_time;
  uint64_t port;
  const char *host;
  int keep;
};

/* Parses the NUL-terminated key=value list in place. Returns NULL or an error message. */
static const char *parse_request(char *p, uint32_t len, struct request *rq) {
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
      if (parse_u64(v, (uint64_t)1 << 40, &rq->timeout_ms)) return "timeout_ms must be a number";
      rq->has_timeout = rq->timeout_ms > 0;
    } else if (!strcmp(k, "mode")) {
      n = 0;
      if (!*v || strlen(v) > 4 || strspn(v, "01234567") != strlen(v)) return "mode must be octal";
      for (const char *c = v; *c; c++) n = n * 8 + (uint64_t)(*c - '0');
      rq->mode = (mode_t)n;
      rq->has_mode = 1;
    } else if (!strcmp(k, "time_ms")) {
      if (parse_u64(v, (uint64_t)1 << 52, &rq->time_ms)) return "time_ms must be a number";
      rq->has_time = 1;
    } else if (!strcmp(k, "port")) {
      if (parse_u64(v, 65535, &rq->port) || rq->port == 0) return "port must be 1..65535";
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

/* -------------------------------------------------------------------- users */

struct ident {
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_GROUPS];
  int ngroups;
  char home[PATH_MAX];
  char name[256];
};

/* Splits a colon-separated line into at most max fields, in place. */
static int split_colon(char *line, char **f, int max) {
  int n = 0;
  f[n++] = line;
  for (char *c = line; *c && n < max; c++)
    if (*c == ':') {
      *c = '\0';
      f[n++] = c + 1;
    }
  return n;
}

/* Own /etc/passwd parser: static binaries must not depend on NSS. Matches by name, or by
 * uid when name is NULL. */
static int passwd_lookup(const char *name, uid_t uid, struct ident *id) {
  FILE *f = fopen("/etc/passwd", "re");
  if (!f) return -1;
  char line[1024];
  int found = -1;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *fl[7];
    if (split_colon(line, fl, 7) < 7) continue;
    uint64_t u, g;
    if (parse_u64(fl[2], UINT32_MAX, &u) || parse_u64(fl[3], UINT32_MAX, &g)) continue;
    if (name ? strcmp(fl[0], name) != 0 : (uid_t)u != uid) continue;
    id->uid = (uid_t)u;
    id->gid = (gid_t)g;
    snprintf(id->home, sizeof id->home, "%s", fl[5][0] ? fl[5] : "/");
    snprintf(id->name, sizeof id->name, "%s", fl[0]);
    found = 0;
    break;
  }
  fclose(f);
  return found;
}

static void group_lookup(struct ident *id) {
  id->groups[0] = id->gid;
  id->ngroups = 1;
  if (!id->name[0]) return;
  FILE *f = fopen("/etc/group", "re");
  if (!f) return;
  char line[4096];
  while (fgets(line, sizeof line, f) && id->ngroups < MAX_GROUPS) {
    line[strcspn(line, "\n")] = '\0';
    char *fl[4];
    if (split_colon(line, fl, 4) < 4) continue;
    uint64_t g;
    if (parse_u64(fl[2], UINT32_MAX, &g) || (gid_t)g == id->gid) continue;
    for (char *m = strtok(fl[3], ","); m; m = strtok(NULL, ","))
      if (!strcmp(m, id->name)) {
        id->groups[id->ngroups++] = (gid_t)g;
        break;
      }
  }
  fclose(f);
}

/* Resolves "name" or "uid[:gid]". Returns NULL or an error message. */
static const char *resolve_user(const char *spec, struct ident *id) {
  memset(id, 0, sizeof *id);
  const char *colon = strchr(spec, ':');
  if (spec[0] >= '0' && spec[0] <= '9') {
    char ubuf[24];
    size_t ul = colon ? (size_t)(colon - spec) : strlen(spec);
    if (ul >= sizeof ubuf) return "bad uid";
    memcpy(ubuf, spec, ul);
    ubuf[ul] = '\0';
    uint64_t u, g;
    if (parse_u64(ubuf, UINT32_MAX - 1, &u)) return "bad uid";
    if (passwd_lookup(NULL, (uid_t)u, id) < 0) {
      id->uid = (uid_t)u;
      id->gid = (gid_t)u;
      snprintf(id->home, sizeof id->home, "/");
    }
    if (colon) {
      if (parse_u64(colon + 1, UINT32_MAX - 1, &g)) return "bad gid";
      id->gid = (gid_t)g;
      id->name[0] = '\0'; /* an explicit gid means exactly that group */
    }
  } else if (colon || passwd_lookup(spec, 0, id) < 0) {
    return "no such user";
  }
  group_lookup(id);
  return NULL;
}

static int become(const struct ident *id) {
  if (setgroups((size_t)id->ngroups, id->groups) < 0) return -1;
  if (setgid(id->gid) < 0) return -1;
  if (setuid(id->uid) < 0) return -1;
  return 0;
}

/* --------------------------------------------------------------------- ping */

static int op_ping(int sock) {
  struct kv kv = {.len = 0};
  struct utsname u;
  struct timespec ts;
  kv_add(&kv, "version", AGENT_VERSION);
  kv_add(&kv, "protocol", PROTOCOL_VERSION);
  kv_add(&kv, "features", "keep");
  if (uname(&u) == 0) {
    kv_add(&kv, "kernel", u.release);
    kv_add(&kv, "hostname", u.nodename);
  } else {
    kv_add(&kv, "kernel", "unknown");
    kv_add(&kv, "hostname", "");
  }
  clock_gettime(CLOCK_BOOTTIME, &ts);
  kv_addu(&kv, "uptime_ms", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
  return send_frame(sock, 'P', kv.buf, (uint32_t)kv.len) == 0;
}

/* The guest's clock stands still while its VM is paused or snapshotted; the host sets it
 * back to the real time on resume. */
static int op_set_time(int sock, const struct request *rq) {
  if (!rq->has_time) {
    send_fail(sock, "BAD_REQUEST", NULL, "set_time needs time_ms");
    return 0;
  }
  struct timespec ts = {.tv_sec = (time_t)(rq->time_ms / 1000),
                        .tv_nsec = (long)(rq->time_ms % 1000) * 1000000L};
  if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
    send_fail(sock, errno_code(errno), "set_time", "clock_settime: %s", strerror(errno));
    return 0;
  }
  struct kv kv = {.len = 0};
  kv_addu(&kv, "time_ms", rq->time_ms);
  return send_frame(sock, 'Z', kv.buf, (uint32_t)kv.len) == 0;
}

/* ---------------------------------------------------------------- files ops */

static void op_read_file(int sock, const struct request *rq, unsigned char *buf) {
  int fd = open(rq->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    send_fail(sock, errno_code(errno), "open", "open \"%s\": %s", rq->path, strerror(errno));
    return;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    send_fail(sock, "NOT_REGULAR", "open", "\"%s\" is not a regular file", rq->path);
    close(fd);
    return;
  }
  set_nonblock(fd, 0);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      send_fail(sock, errno_code(errno), "read", "read \"%s\": %s", rq->path, strerror(errno));
      close(fd);
      return;
    }
    if (n == 0) break;
    if (send_frame(sock, 'D', buf, (uint32_t)n) < 0) {
      close(fd);
      return;
    }
    total += (uint64_t)n;
  }
  close(fd);
  struct kv kv = {.len = 0};
  kv_addu(&kv, "size", total);
  send_frame(sock, 'Z', kv.buf, (uint32_t)kv.len);
}

static void op_write_file(int sock, const struct request *rq, unsigned char *buf) {
  const char *slash = strrchr(rq->path, '/');
  char tmp[PATH_MAX + 32];
  int dlen = (int)(slash - rq->path);
  if (snprintf(tmp, sizeof tmp, "%.*s/.%s.corral-XXXXXX", dlen, rq->path, slash + 1) >=
      (int)sizeof tmp) {
    send_fail(sock, "ENAMETOOLONG", "open", "path too long");
    return;
  }
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    send_fail(sock, errno_code(errno), "open", "create \"%s\": %s", rq->path, strerror(errno));
    return;
  }
  uint64_t total = 0;
  for (;;) {
    char type;
    uint32_t len;
    int r = read_frame(sock, &type, buf, &len, -1);
    if (r == -1) goto abandon; /* host went away: leave nothing behind */
    if (r == -3 || (type != 'W' && type != 'E')) {
      send_fail(sock, "BAD_REQUEST", NULL, "expected 'W' or 'E' frame");
      goto abandon;
    }
    if (type == 'E') break;
    if (write_all(fd, buf, len) < 0) {
      send_fail(sock, errno_code(errno), "write", "write \"%s\": %s", rq->path, strerror(errno));
      goto abandon;
    }
    total += len;
  }
  if (fchmod(fd, rq->has_mode ? rq->mode : 0644) < 0 || fsync(fd) < 0) {
    send_fail(sock, errno_code(errno), "write", "write \"%s\": %s", rq->path, strerror(errno));
    goto abandon;
  }
  close(fd);
  fd = -1;
  if (rename(tmp, rq->path) < 0) {
    send_fail(sock, errno_code(errno), "rename", "rename to \"%s\": %s", rq->path, strerror(errno));
    goto abandon;
  }
  struct kv kv = {.len = 0};
  kv_addu(&kv, "size", total);
  send_frame(sock, 'Z', kv.buf, (uint32_t)kv.len);
  return;
abandon:
  if (fd >= 0) close(fd);
  unlink(tmp);
}

/* --------------------------------------------------------------------- exec */

static int sigchld_pipe[2] = {-1, -1};

/* Signals the agent inherited as ignored (besides SIGPIPE, which it ignores itself). Ignored
 * dispositions survive exec, so a command must get them back as default; handled ones are
 * reset by exec itself. */
static uint64_t inherited_ignored;

static void note_inherited_ignored(void) {
  for (int s = 1; s < 65; s++) {
    struct sigaction old;
    if (s != SIGPIPE && sigaction(s, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
      inherited_ignored |= (uint64_t)1 << (s - 1);
  }
}

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  ssize_t r = write(sigchld_pipe[1], "c", 1);
  (void)r;
  errno = saved;
}

/* What the forked child reports through its close-on-exec pipe when it cannot exec. */
struct child_err {
  int stage; /* 0 user, 1 cwd, 2 exec, 3 setup */
  int err;
};

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
  if (id && become(id) < 0) child_fail(report_fd, 0, errno);
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
static char **build_env(const struct request *rq, char *home_kv) {
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

struct exec_io {
  int sock;
  int pipes[2];     /* child's stdout, stderr read ends; -1 once closed */
  int in_fd;        /* child's stdin write end; -1 when closed or not streamed */
  int host_eof;     /* host sent 'E' */
  unsigned char *in_buf;
  uint32_t in_len, in_off;
  /* Incoming frame being assembled (non-blocking socket). */
  unsigned char hdr[5];
  uint32_t hdr_got, pay_len, pay_got;
  int in_payload;
  /* Outgoing frame: at most one is buffered, so pipes are read only as fast as the host reads. */
  unsigned char out[5 + CHUNK];
  uint32_t out_len, out_off;
  int next_pipe; /* alternates stdout/stderr for fairness */
};

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* Returns 0 to continue, -1 on disconnect, -2 on protocol violation. */
static int exec_read_sock(struct exec_io *io, pid_t pgid, int stdin_stream) {
  for (;;) {
    ssize_t r;
    if (!io->in_payload) {
      r = read(io->sock, io->hdr + io->hdr_got, 5 - io->hdr_got);
    } else {
      r = read(io->sock, io->in_buf + io->pay_got, io->pay_len - io->pay_got);
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }
    if (r == 0) return -1;
    if (!io->in_payload) {
      io->hdr_got += (uint32_t)r;
      if (io->hdr_got < 5) continue;
      io->pay_len = ((uint32_t)io->hdr[1] << 24) | ((uint32_t)io->hdr[2] << 16) |
                    ((uint32_t)io->hdr[3] << 8) | io->hdr[4];
      if (io->pay_len > MAX_IN_PAYLOAD) return -2;
      io->pay_got = 0;
      io->in_payload = 1;
    } else {
      io->pay_got += (uint32_t)r;
    }
    if (io->pay_got < io->pay_len) continue;
    /* A whole frame has arrived. */
    char type = (char)io->hdr[0];
    io->hdr_got = 0;
    io->in_payload = 0;
    if (type == 'I') {
      if (!stdin_stream || io->host_eof) return -2;
      if (io->in_fd >= 0 && io->pay_len > 0) {
        io->in_len = io->pay_len;
        io->in_off = 0;
        return 0; /* stop reading until this frame is written to the child */
      }
    } else if (type == 'E') {
      if (!stdin_stream || io->host_eof || io->pay_len) return -2;
      io->host_eof = 1;
      if (io->in_len == io->in_off) close_fd(&io->in_fd);
    } else if (type == 'K') {
      if (io->pay_len != 4) return -2;
      uint32_t sig = ((uint32_t)io->in_buf[0] << 24) | ((uint32_t)io->in_buf[1] << 16) |
                     ((uint32_t)io->in_buf[2] << 8) | io->in_buf[3];
      if (sig < 1 || sig > 64) return -2;
      kill(-pgid, (int)sig);
    } else {
      return -2;
    }
  }
}

static void exec_write_stdin(struct exec_io *io) {
  while (io->in_off < io->in_len) {
    ssize_t w = write(io->in_fd, io->in_buf + io->in_off, io->in_len - io->in_off);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      /* The child closed its stdin: drop what the host sends from now on. */
      close_fd(&io->in_fd);
      io->in_len = io->in_off = 0;
      return;
    }
    io->in_off += (uint32_t)w;
  }
  io->in_len = io->in_off = 0;
  if (io->host_eof) close_fd(&io->in_fd);
}

/* Reads one chunk from pipe idx into the out buffer. Returns 1 data, 0 would block, -1 EOF. */
static int exec_fill_out(struct exec_io *io, int idx) {
  for (;;) {
    ssize_t n = read(io->pipes[idx], io->out + 5, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) {
      close_fd(&io->pipes[idx]);
      return -1;
    }
    put_header(io->out, idx == 0 ? '1' : '2', (uint32_t)n);
    io->out_len = 5 + (uint32_t)n;
    io->out_off = 0;
    return 1;
  }
}

/* Returns 0, or -1 when the host is gone. */
static int exec_flush_out(struct exec_io *io) {
  while (io->out_off < io->out_len) {
    ssize_t w = write(io->sock, io->out + io->out_off, io->out_len - io->out_off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }
    io->out_off += (uint32_t)w;
  }
  io->out_len = io->out_off = 0;
  return 0;
}

static void reap(pid_t pid, int *status) {
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

/*
 * vfork: no page tables to copy and no copy-on-write faults afterwards, which is most of what a
 * process start costs under TCG. Switching users needs set*id calls that are not safe while
 * sharing the handler's memory, so that case forks. Its own function, so that nothing of the
 * caller's lives in registers across the vfork.
 */
__attribute__((noinline)) static pid_t start_child(const struct request *rq,
                                                   const struct ident *id, char **envp,
                                                   int in_fd, int out_fd, int err_fd,
                                                   int report_fd) {
  char **saved_environ = environ;
  pid_t pid = id ? fork() : vfork();
  if (pid == 0) child_main(rq, id, envp, in_fd, out_fd, err_fd, report_fd);
  environ = saved_environ;
  return pid;
}

/* Closes both ends of a pipe and marks them closed. */
static void close_pair(int p[2]) {
  close_fd(&p[0]);
  close_fd(&p[1]);
}

/* Returns 1 when the command ran and its exit frame was sent; 0 after a failure or a
 * disconnect (the connection is then over). */
static int op_exec(int sock, struct request *rq, unsigned char *buf) {
  if (rq->argc == 0) {
    send_fail(sock, "BAD_REQUEST", NULL, "exec needs at least one arg");
    return 0;
  }
  struct ident id, *idp = NULL;
  char home[PATH_MAX] = "/root";
  if (rq->user) {
    const char *e = resolve_user(rq->user, &id);
    if (e) {
      send_fail(sock, "NO_SUCH_USER", "user", "user \"%s\": %s", rq->user, e);
      return 0;
    }
    idp = &id;
    snprintf(home, sizeof home, "%s", id.home);
  } else {
    struct ident self;
    memset(&self, 0, sizeof self);
    if (passwd_lookup(NULL, getuid(), &self) == 0) snprintf(home, sizeof home, "%s", self.home);
  }
  char home_kv[PATH_MAX + 8];
  snprintf(home_kv, sizeof home_kv, "HOME=%s", home);
  char **envp = build_env(rq, home_kv);
  int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, rep_p[2] = {-1, -1};
  if (!envp || pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(out_p, O_CLOEXEC) < 0 ||
      pipe2(err_p, O_CLOEXEC) < 0 || pipe2(rep_p, O_CLOEXEC) < 0 ||
      (rq->stdin_stream ? pipe2(in_p, O_CLOEXEC) : (in_p[0] = open("/dev/null", O_RDONLY | O_CLOEXEC))) < 0) {
    send_fail(sock, errno_code(errno), "setup", "exec setup: %s", strerror(errno));
    return 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  pid_t pid = start_child(rq, idp, envp, in_p[0], out_p[1], err_p[1], rep_p[1]);
  free(envp);
  if (pid < 0) {
    send_fail(sock, errno_code(errno), "setup", "fork: %s", strerror(errno));
    close_pair(in_p);
    close_pair(out_p);
    close_pair(err_p);
    close_pair(rep_p);
    close_pair(sigchld_pipe);
    return 0;
  }
  close_fd(&in_p[0]);
  close_fd(&out_p[1]);
  close_fd(&err_p[1]);
  close_fd(&rep_p[1]);

  /* EOF on the report pipe means exec succeeded (it is close-on-exec). */
  struct child_err ce;
  ssize_t got;
  while ((got = read(rep_p[0], &ce, sizeof ce)) < 0 && errno == EINTR) {
  }
  close_fd(&rep_p[0]);
  if (got == (ssize_t)sizeof ce) {
    int status;
    reap(pid, &status);
    close_pair(in_p);
    close_pair(out_p);
    close_pair(err_p);
    close_pair(sigchld_pipe);
    if (ce.stage == 2)
      send_fail(sock, errno_code(ce.err), "exec", "exec \"%s\": %s", rq->argv[0], strerror(ce.err));
    else if (ce.stage == 1)
      send_fail(sock, errno_code(ce.err), "cwd", "cwd \"%s\": %s", rq->cwd ? rq->cwd : "",
                strerror(ce.err));
    else if (ce.stage == 0)
      send_fail(sock, errno_code(ce.err), "user", "switch to user \"%s\": %s", rq->user,
                strerror(ce.err));
    else
      send_fail(sock, errno_code(ce.err), "setup", "exec setup: %s", strerror(ce.err));
    return 0;
  }

  struct exec_io io;
  memset(&io, 0, sizeof io);
  io.sock = sock;
  io.pipes[0] = out_p[0];
  io.pipes[1] = err_p[0];
  io.in_fd = rq->stdin_stream ? in_p[1] : -1;
  io.in_buf = buf;
  set_nonblock(sock, 1);
  set_nonblock(io.pipes[0], 1);
  set_nonblock(io.pipes[1], 1);
  if (io.in_fd >= 0) set_nonblock(io.in_fd, 1);

  int64_t deadline = rq->has_timeout ? now_ms() + (int64_t)rq->timeout_ms : -1;
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
    int64_t now = now_ms();
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
    if (sre & POLLOUT && exec_flush_out(&io) < 0) goto disconnect;
    if (sre & POLLIN) {
      int rr = exec_read_sock(&io, pid, rq->stdin_stream);
      if (rr == -1) goto disconnect;
      if (rr == -2) {
        violation = 1;
        goto disconnect;
      }
    }
    if (i_in >= 0 && p[i_in].revents) exec_write_stdin(&io);
    else if (io.in_fd >= 0 && io.in_len > 0) exec_write_stdin(&io);
    if (!(io.out_off < io.out_len)) {
      for (int t = 0; t < 2; t++) {
        int k = (io.next_pipe + t) % 2;
        int readable = i_pipe[k] >= 0 && p[i_pipe[k]].revents;
        if (!readable) continue;
        int fr = exec_fill_out(&io, k);
        if (fr == 1) {
          io.next_pipe = (k + 1) % 2;
          if (exec_flush_out(&io) < 0) goto disconnect;
          break;
        }
        if (fr == 0 && exited) close_fd(&io.pipes[k]);
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
        drain_until = now_ms() + DRAIN_LIMIT_MS;
        close_fd(&io.in_fd);
        io.in_len = io.in_off = 0;
      }
    }
  }
  close_fd(&io.pipes[0]);
  close_fd(&io.pipes[1]);
  set_nonblock(sock, 0);
  struct kv kv = {.len = 0};
  if (WIFSIGNALED(status)) kv_addu(&kv, "signal", (uint64_t)WTERMSIG(status));
  else kv_addu(&kv, "code", (uint64_t)WEXITSTATUS(status));
  if (timed_out) kv_add(&kv, "timeout", "1");
  close_pair(sigchld_pipe);
  return send_frame(sock, 'X', kv.buf, (uint32_t)kv.len) == 0;

disconnect:
  /* The host is gone (or broke the protocol): nobody will read the output, stop everything. */
  kill(-pid, SIGKILL);
  if (!exited) reap(pid, &status);
  close_fd(&io.in_fd);
  close_fd(&io.pipes[0]);
  close_fd(&io.pipes[1]);
  close_pair(sigchld_pipe);
  if (violation) send_fail(sock, "BAD_REQUEST", NULL, "unexpected frame during exec");
  return 0;
}

/* -------------------------------------------------------------------- relay */

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
  set_nonblock(a, 1);
  set_nonblock(b, 1);
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
static void op_tcp_connect(int sock, const struct request *rq) {
  if (!rq->port) {
    send_fail(sock, "BAD_REQUEST", NULL, "tcp_connect needs port");
    return;
  }
  const char *host = rq->host ? rq->host : "127.0.0.1";
  int fd = tcp_connect(host, (unsigned)rq->port);
  if (fd < 0) {
    send_fail(sock, errno == EINVAL ? "BAD_REQUEST" : errno_code(errno), "connect",
              "connect to %s:%u in the guest: %s", host, (unsigned)rq->port, strerror(errno));
    return;
  }
  struct kv kv = {.len = 0};
  kv_add(&kv, "host", host);
  kv_addu(&kv, "port", rq->port);
  if (send_frame(sock, 'C', kv.buf, (uint32_t)kv.len) < 0) {
    close(fd);
    return;
  }
  relay(sock, fd);
  close(fd);
}

/* A guest program's connection to the egress proxy port: relayed to the host's proxy. */
static void relay_egress(int client, unsigned vsock_port) {
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

/* ------------------------------------------------------------------ handler */

/*
 * Serves one request. Returns 1 when the host asked to keep the connection (keep=1) and the
 * operation ended with its success frame, so the next request may follow on the same
 * connection; only ops that leave this process as it was (ping, set_time, exec) qualify.
 */
static int serve(int sock, struct request *rq, unsigned char *buf) {
  if (rq->keep && strcmp(rq->op, "ping") && strcmp(rq->op, "exec") && strcmp(rq->op, "set_time")) {
    send_fail(sock, "BAD_REQUEST", NULL, "keep=1 is only allowed with ping, set_time and exec");
    return 0;
  }
  int ok = 0;
  if (!strcmp(rq->op, "ping")) {
    ok = op_ping(sock);
  } else if (!strcmp(rq->op, "exec")) {
    ok = op_exec(sock, rq, buf);
  } else if (!strcmp(rq->op, "set_time")) {
    ok = op_set_time(sock, rq);
  } else if (!strcmp(rq->op, "tcp_connect")) {
    op_tcp_connect(sock, rq);
  } else if (!strcmp(rq->op, "read_file") || !strcmp(rq->op, "write_file")) {
    if (!rq->path || rq->path[0] != '/') {
      send_fail(sock, "BAD_REQUEST", NULL, "path must be absolute");
      return 0;
    }
    if (rq->user) {
      /* Switching identity in this per-connection process makes the kernel apply the user's
       * permissions and ownership, exactly as for a program the user ran. */
      struct ident id;
      const char *e = resolve_user(rq->user, &id);
      if (e) {
        send_fail(sock, "NO_SUCH_USER", "user", "user \"%s\": %s", rq->user, e);
        return 0;
      }
      if (become(&id) < 0) {
        send_fail(sock, errno_code(errno), "user", "switch to user \"%s\": %s", rq->user,
                  strerror(errno));
        return 0;
      }
    }
    if (rq->op[0] == 'r') op_read_file(sock, rq, buf);
    else op_write_file(sock, rq, buf);
  } else {
    send_fail(sock, "BAD_REQUEST", NULL, "unknown op \"%s\"", rq->op);
  }
  return ok && rq->keep;
}

/* A connection's life: one request, or a series of them while the host keeps it. A kept
 * handler is a warm process: its pages are already faulted in, which under TCG is worth more
 * than the fork it saves. */
static void handle(int sock) {
  unsigned char *buf = malloc(MAX_IN_PAYLOAD + 1);
  if (!buf) return;
  int64_t wait_ms = REQUEST_TIMEOUT_MS;
  for (;;) {
    char type;
    uint32_t len;
    int r = read_frame(sock, &type, buf, &len, now_ms() + wait_ms);
    if (r == -1 || r == -2) break;
    if (r == -3 || type != 'R') {
      send_fail(sock, "BAD_REQUEST", NULL, r == -3 ? "frame too large" : "expected a request frame");
      break;
    }
    /* The request strings point into this copy; buf is reused for data frames. */
    char *req = malloc(len + 1);
    if (!req) break;
    memcpy(req, buf, len);
    req[len] = '\0';
    struct request rq;
    const char *err = parse_request(req, len, &rq);
    int kept = 0;
    if (err) send_fail(sock, "BAD_REQUEST", NULL, "%s", err);
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
static void linger_close(int sock) {
  static unsigned char sink[16384];
  set_nonblock(sock, 0);
  shutdown(sock, SHUT_WR);
  int64_t deadline = now_ms() + 5000;
  for (;;) {
    int64_t left = deadline - now_ms();
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

/* ------------------------------------------------------------ grow the root */

/* ext4's online resize: the kernel grows a mounted filesystem to the given block count. */
#define AGENT_EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)

/*
 * `--grow-fs MOUNTPOINT DEVICE`: grows the ext4 mounted at MOUNTPOINT to fill DEVICE (an
 * image's root disk whose overlay is larger than the image, `--disk-size`). No resize2fs in
 * the initramfs: the kernel does the work, this only asks.
 */
static int grow_fs(const char *mountpoint, const char *device) {
  struct statfs st;
  if (statfs(mountpoint, &st) < 0) {
    fprintf(stderr, "corral-agent: statfs %s: %s\n", mountpoint, strerror(errno));
    return 1;
  }
  int dev = open(device, O_RDONLY | O_CLOEXEC);
  uint64_t bytes = 0;
  if (dev < 0 || ioctl(dev, BLKGETSIZE64, &bytes) < 0) {
    fprintf(stderr, "corral-agent: size of %s: %s\n", device, strerror(errno));
    return 1;
  }
  close(dev);
  uint64_t blocks = bytes / (uint64_t)st.f_bsize;
  int dir = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0 || ioctl(dir, AGENT_EXT4_IOC_RESIZE_FS, &blocks) < 0) {
    fprintf(stderr, "corral-agent: grow %s to %llu blocks: %s\n", mountpoint,
            (unsigned long long)blocks, strerror(errno));
    return 1;
  }
  close(dir);
  return 0;
}

/* --------------------------------------------------------------------- main */

static int listen_socket(const char *unix_path, unsigned port) {
  int fd;
  if (unix_path) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(unix_path) >= sizeof sa.sun_path) {
      fprintf(stderr, "corral-agent: socket path too long\n");
      return -1;
    }
    strcpy(sa.sun_path, unix_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    unlink(unix_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  } else {
    struct agent_sockaddr_vm sa;
    memset(&sa, 0, sizeof sa);
    sa.svm_family = AF_VSOCK;
    sa.svm_port = port;
    sa.svm_cid = AGENT_VMADDR_CID_ANY;
    fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return -1;
  }
  if (listen(fd, 64) < 0) return -1;
  return fd;
}

static void usage(void) {
  fprintf(stderr,
          "usage: corral-agent [--port N] [--ready-port N] [--egress-port N] "
          "[--egress-vsock-port N] [--chroot DIR] [--listen-unix PATH] [--version]\n"
          "       corral-agent --grow-fs MOUNTPOINT DEVICE\n");
}

/*
 * Tells the host we listen, by connecting to it (host CID 2) on the ready port. The host
 * waits for this instead of polling CONNECT during boot: requests that reach a guest whose
 * vsock driver is still initialising were seen to wedge the channel. Best effort: a host
 * that does not listen just gets no notice.
 */
static void notify_host_ready(unsigned port) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct agent_sockaddr_vm sa;
  memset(&sa, 0, sizeof sa);
  sa.svm_family = AF_VSOCK;
  sa.svm_port = port;
  sa.svm_cid = AGENT_VMADDR_CID_HOST;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    char line[64];
    int n = snprintf(line, sizeof line, "READY %s %s\n", AGENT_VERSION, PROTOCOL_VERSION);
    if (write(fd, line, (size_t)n) != n) {
      /* the host sees a short line and keeps waiting; nothing to do here */
    }
  }
  close(fd);
}

int main(int argc, char **argv) {
  const char *unix_path = NULL;
  uint64_t port = DEFAULT_PORT;
  uint64_t ready_port = DEFAULT_READY_PORT;
  uint64_t egress_port = 0;
  uint64_t egress_vsock_port = DEFAULT_EGRESS_VSOCK_PORT;
  const char *root = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--version")) {
      printf("corral-agent %s (protocol %s)\n", AGENT_VERSION, PROTOCOL_VERSION);
      return 0;
    } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      if (parse_u64(argv[++i], UINT32_MAX, &port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--ready-port") && i + 1 < argc) {
      if (parse_u64(argv[++i], UINT32_MAX, &ready_port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--egress-port") && i + 1 < argc) {
      if (parse_u64(argv[++i], 65535, &egress_port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--egress-vsock-port") && i + 1 < argc) {
      if (parse_u64(argv[++i], UINT32_MAX, &egress_vsock_port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--grow-fs") && i + 2 < argc) {
      return grow_fs(argv[i + 1], argv[i + 2]);
    } else if (!strcmp(argv[i], "--chroot") && i + 1 < argc) {
      root = argv[++i];
    } else if (!strcmp(argv[i], "--listen-unix") && i + 1 < argc) {
      unix_path = argv[++i];
    } else {
      usage();
      return 2;
    }
  }
  /* Pipes and sockets must never land on 0-2, or the child's dup2 shuffle breaks. */
  int nullfd;
  while ((nullfd = open("/dev/null", O_RDWR)) >= 0 && nullfd < 3) {
  }
  if (nullfd >= 0) close(nullfd);
  signal(SIGPIPE, SIG_IGN);
  /* Handlers are never waited for: let the kernel reap them. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sa.sa_flags = SA_NOCLDWAIT;
  sigaction(SIGCHLD, &sa, NULL);
  note_inherited_ignored();
  umask(022);

  int lfd = listen_socket(unix_path, (unsigned)port);
  if (lfd < 0) {
    fprintf(stderr, "corral-agent: listen: %s\n", strerror(errno));
    return 1;
  }
  /* An image's root filesystem: every exec, file path and /etc/passwd lookup happens inside
   * it. The vsock socket is already open, so the image needs nothing of ours. */
  if (root != NULL && (chroot(root) < 0 || chdir("/") < 0)) {
    fprintf(stderr, "corral-agent: chroot %s: %s\n", root, strerror(errno));
    return 1;
  }
  /* The egress proxy port, loopback only: programs in the guest reach it, nothing else can. */
  int efd = -1;
  if (egress_port != 0 && unix_path == NULL) {
    efd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in ea;
    memset(&ea, 0, sizeof ea);
    ea.sin_family = AF_INET;
    ea.sin_port = htons((uint16_t)egress_port);
    ea.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    if (efd >= 0) setsockopt(efd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (efd < 0 || bind(efd, (struct sockaddr *)&ea, sizeof ea) < 0 || listen(efd, 64) < 0) {
      /* Exec and files still work without it; say why egress will not. */
      fprintf(stderr, "corral-agent: egress listen on 127.0.0.1:%u: %s\n",
              (unsigned)egress_port, strerror(errno));
      if (efd >= 0) close(efd);
      efd = -1;
    }
  }
  if (unix_path == NULL && ready_port != 0) notify_host_ready((unsigned)ready_port);
  for (;;) {
    struct pollfd lp[2] = {{.fd = lfd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
    if (poll(lp, efd >= 0 ? 2 : 1, -1) < 0) continue;
    int egress = efd >= 0 && (lp[1].revents & POLLIN);
    if (!egress && !(lp[0].revents & POLLIN)) {
      /* An error on a listening socket without a connection to accept: do not spin. */
      usleep(100000);
      continue;
    }
    int c = accept4(egress ? efd : lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      /* EMFILE and friends are transient: back off rather than spin or die. */
      usleep(100000);
      continue;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(lfd);
      if (efd >= 0) close(efd);
      struct sigaction dfl;
      memset(&dfl, 0, sizeof dfl);
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGCHLD, &dfl, NULL);
      if (egress) {
        relay_egress(c, (unsigned)egress_vsock_port);
        close(c);
      } else {
        handle(c);
        linger_close(c);
      }
      _exit(0);
    }
    close(c);
  }
}
