/* read_file and write_file: a file streamed in data frames; a write lands by rename. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void agent_op_read_file(int sock, const struct request *rq, unsigned char *buf) {
  int fd = open(rq->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "open", "open \"%s\": %s", rq->path,
                    strerror(errno));
    return;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    agent_send_fail(sock, "NOT_REGULAR", "open", "\"%s\" is not a regular file", rq->path);
    close(fd);
    return;
  }
  agent_set_nonblock(fd, 0);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      agent_send_fail(sock, agent_errno_code(errno), "read", "read \"%s\": %s", rq->path,
                      strerror(errno));
      close(fd);
      return;
    }
    if (n == 0) break;
    if (agent_send_frame(sock, 'D', buf, (uint32_t)n) < 0) {
      close(fd);
      return;
    }
    total += (uint64_t)n;
  }
  close(fd);
  struct kv kv = {.len = 0};
  agent_kv_addu(&kv, "size", total);
  agent_send_frame(sock, 'Z', kv.buf, (uint32_t)kv.len);
}

void agent_op_write_file(int sock, const struct request *rq, unsigned char *buf) {
  const char *slash = strrchr(rq->path, '/');
  char tmp[PATH_MAX + 32];
  int dlen = (int)(slash - rq->path);
  if (snprintf(tmp, sizeof tmp, "%.*s/.%s.corral-XXXXXX", dlen, rq->path, slash + 1) >=
      (int)sizeof tmp) {
    agent_send_fail(sock, "ENAMETOOLONG", "open", "path too long");
    return;
  }
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "open", "create \"%s\": %s", rq->path,
                    strerror(errno));
    return;
  }
  uint64_t total = 0;
  for (;;) {
    char type;
    uint32_t len;
    int r = agent_read_frame(sock, &type, buf, &len, -1);
    if (r == -1) goto abandon; /* host went away: leave nothing behind */
    if (r == -3 || (type != 'W' && type != 'E')) {
      agent_send_fail(sock, "BAD_REQUEST", NULL, "expected 'W' or 'E' frame");
      goto abandon;
    }
    if (type == 'E') break;
    if (agent_write_all(fd, buf, len) < 0) {
      agent_send_fail(sock, agent_errno_code(errno), "write", "write \"%s\": %s", rq->path,
                      strerror(errno));
      goto abandon;
    }
    total += len;
  }
  if (fchmod(fd, rq->has_mode ? rq->mode : 0644) < 0 || fsync(fd) < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "write", "write \"%s\": %s", rq->path,
                    strerror(errno));
    goto abandon;
  }
  close(fd);
  fd = -1;
  if (rename(tmp, rq->path) < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "rename", "rename to \"%s\": %s", rq->path,
                    strerror(errno));
    goto abandon;
  }
  struct kv kv = {.len = 0};
  agent_kv_addu(&kv, "size", total);
  agent_send_frame(sock, 'Z', kv.buf, (uint32_t)kv.len);
  return;
abandon:
  if (fd >= 0) close(fd);
  unlink(tmp);
}
