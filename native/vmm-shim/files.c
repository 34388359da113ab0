/*
 * The files the host reads: the state file (pids and start times, rewritten when the sidecar
 * is replaced) and the exit file (why the VM ended), both written atomically as JSON.
 */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

/* Writes `data` to `path` so readers see the old content or the new one, never a torn one. */
static int write_atomic(const char *path, const char *data) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof tmp) {
    logmsg("path too long: %s", path);
    return -1;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    logmsg("cannot create %s: %s", tmp, strerror(errno));
    return -1;
  }
  size_t len = strlen(data), off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      logmsg("cannot write %s: %s", tmp, strerror(errno));
      close(fd);
      unlink(tmp);
      return -1;
    }
    off += (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
    logmsg("cannot commit %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Appends `s` as a JSON string literal; reasons may carry paths and strerror text. */
static void json_str(char *out, size_t cap, const char *s) {
  size_t o = strlen(out);
  if (o + 2 >= cap) return;
  out[o++] = '"';
  for (; *s && o + 8 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
}

static void json_status(char *out, size_t cap, const struct child *c) {
  size_t o = strlen(out);
  if (c->pid <= 0 || !c->exited) {
    snprintf(out + o, cap - o, "null");
  } else if (WIFEXITED(c->status)) {
    snprintf(out + o, cap - o, "{\"exitCode\":%d,\"signal\":null}", WEXITSTATUS(c->status));
  } else {
    snprintf(out + o, cap - o, "{\"exitCode\":null,\"signal\":%d}", WTERMSIG(c->status));
  }
}

static int write_exit_file(const struct child *vmm, const struct child *sidecar,
                           const char *reason, int stop_requested) {
  char buf[8192] = "{\"vmm\":";
  json_status(buf, sizeof buf, vmm);
  strncat(buf, ",\"sidecar\":", sizeof buf - strlen(buf) - 1);
  json_status(buf, sizeof buf, sidecar);
  strncat(buf, ",\"reason\":", sizeof buf - strlen(buf) - 1);
  json_str(buf, sizeof buf, reason);
  size_t o = strlen(buf);
  snprintf(buf + o, sizeof buf - o, ",\"stopRequested\":%s,\"atMs\":%lld}\n",
           stop_requested ? "true" : "false", now_ms(CLOCK_REALTIME));
  return write_atomic(opt.exit_file, buf);
}

/*
 * The sidecar's start time lets the host tell it from a process that reused its pid (a
 * generic check: the host need not know what the sidecar's executable is called).
 */
static int write_state(const struct child *vmm, const struct child *sidecar,
                       const char *start_time) {
  char state[640];
  char sidecar_pid[32] = "null";
  char sidecar_start[72] = "null";
  if (sidecar->pid > 0 && !sidecar->exited) {
    char t[64];
    snprintf(sidecar_pid, sizeof sidecar_pid, "%d", (int)sidecar->pid);
    if (read_start_time(sidecar->pid, t, sizeof t) == 0)
      snprintf(sidecar_start, sizeof sidecar_start, "\"%s\"", t);
  }
  snprintf(state, sizeof state,
           "{\"shimPid\":%d,\"vmmPid\":%d,\"sidecarPid\":%s,\"sidecarStartTime\":%s,"
           "\"vmmStartTime\":\"%s\"}\n",
           (int)getpid(), (int)vmm->pid, sidecar_pid, sidecar_start, start_time);
  return write_atomic(opt.state_file, state);
}
