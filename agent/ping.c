/* The two small ops: ping (version, kernel, uptime) and set_time (the clock after a pause). */
#include "agent.h"

#include <errno.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

int agent_op_ping(int sock) {
  struct kv kv = {.len = 0};
  struct utsname u;
  struct timespec ts;
  agent_kv_add(&kv, "version", AGENT_VERSION);
  agent_kv_add(&kv, "protocol", PROTOCOL_VERSION);
  agent_kv_add(&kv, "features", "keep");
  if (uname(&u) == 0) {
    agent_kv_add(&kv, "kernel", u.release);
    agent_kv_add(&kv, "hostname", u.nodename);
  } else {
    agent_kv_add(&kv, "kernel", "unknown");
    agent_kv_add(&kv, "hostname", "");
  }
  clock_gettime(CLOCK_BOOTTIME, &ts);
  agent_kv_addu(&kv, "uptime_ms", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
  return agent_send_frame(sock, 'P', kv.buf, (uint32_t)kv.len) == 0;
}

/* The guest's clock stands still while its VM is paused or snapshotted; the host sets it
 * back to the real time on resume. */
int agent_op_set_time(int sock, const struct request *rq) {
  if (!rq->has_time) {
    agent_send_fail(sock, "BAD_REQUEST", NULL, "set_time needs time_ms");
    return 0;
  }
  struct timespec ts = {.tv_sec = (time_t)(rq->time_ms / 1000),
                        .tv_nsec = (long)(rq->time_ms % 1000) * 1000000L};
  if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
    agent_send_fail(sock, agent_errno_code(errno), "set_time", "clock_settime: %s",
                    strerror(errno));
    return 0;
  }
  struct kv kv = {.len = 0};
  agent_kv_addu(&kv, "time_ms", rq->time_ms);
  return agent_send_frame(sock, 'Z', kv.buf, (uint32_t)kv.len) == 0;
}
