/* Small helpers: the shim's log line, clocks, and a child's end in words. */
/* Part of vmm-shim.c, which includes it: the shim is one translation unit (see shim.h). */
#include "shim.h"

static void logmsg(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "vmm-shim: %s\n", buf);
  fflush(stderr);
}

static long long now_ms(int clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void describe(char *out, size_t cap, const char *who, int status) {
  if (WIFEXITED(status))
    snprintf(out, cap, "%s exited with code %d", who, WEXITSTATUS(status));
  else
    snprintf(out, cap, "%s killed by signal %d", who, WTERMSIG(status));
}
