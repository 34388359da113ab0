/**
 * A tiny static guest program for the network benchmark, so the sender inside the guest is
 * the same code (64 KiB write() calls from memory) whatever the transport under test:
 *
 *   bench-net vsock-serve PORT BYTES         listen on AF_VSOCK PORT, send BYTES to one peer
 *   bench-net tcp-serve PORT BYTES           listen on TCP PORT, send BYTES to one peer
 *   bench-net connect-send PROXY TARGET BYTES
 *                                            CONNECT TARGET through 127.0.0.1:PROXY, wait for
 *                                            the 200, then send BYTES
 *   bench-net connect-latency PROXY TARGET N N CONNECTs one after the other; prints each
 *                                            one's time to the end of the 200 reply in us
 *
 * A sender shuts its side down after the last byte and then waits for the peer to close, so
 * no byte is lost to an early close. Compiled on the host with musl-gcc (static), copied into
 * the guest with the agent's write_file.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { requireTool } from "../../src/host/tools.js";

const SOURCE = String.raw`
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* musl ships no <linux/vm_sockets.h>; the ABI is stable (as in agent/agent.h). */
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
struct sockaddr_vm {
  sa_family_t svm_family;
  unsigned short svm_reserved1;
  unsigned int svm_port;
  unsigned int svm_cid;
  unsigned char svm_zero[4];
};
#define VMADDR_CID_ANY 0xFFFFFFFFu

static char buf[65536];

static void die(const char *what) {
  fprintf(stderr, "bench-net: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void send_all(int fd, unsigned long long bytes) {
  while (bytes > 0) {
    size_t n = bytes < sizeof buf ? (size_t)bytes : sizeof buf;
    ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    bytes -= (unsigned long long)w;
  }
  shutdown(fd, SHUT_WR);
  while (read(fd, buf, sizeof buf) > 0) {
  }
  close(fd);
}

static int serve_one(int family, unsigned port) {
  int s = socket(family, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  int one = 1;
  if (family == AF_VSOCK) {
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK;
    a.svm_cid = VMADDR_CID_ANY;
    a.svm_port = port;
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind vsock");
  } else {
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons((unsigned short)port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind tcp");
  }
  if (listen(s, 1) < 0) die("listen");
  printf("listening\n");
  fflush(stdout);
  int c = accept(s, NULL, NULL);
  if (c < 0) die("accept");
  close(s);
  return c;
}

/* Connects to 127.0.0.1:proxy, sends CONNECT target, reads up to the end of the reply head. */
static int tunnel(unsigned proxy, const char *target) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((unsigned short)proxy);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect proxy");
  char req[512];
  int n = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
  if (write(s, req, (size_t)n) != n) die("write CONNECT");
  char head[4096];
  size_t got = 0;
  for (;;) {
    ssize_t r = read(s, head + got, 1);
    if (r <= 0) die("read reply");
    got += (size_t)r;
    if (got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0) break;
    if (got == sizeof head) {
      errno = EPROTO;
      die("reply head too long");
    }
  }
  if (got < 12 || memcmp(head, "HTTP/1.1 200", 12) != 0) {
    fprintf(stderr, "bench-net: proxy said: %.*s\n", (int)got, head);
    exit(1);
  }
  return s;
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "vsock-serve")) {
    send_all(serve_one(AF_VSOCK, (unsigned)atoi(argv[2])), strtoull(argv[3], NULL, 10));
  } else if (argc == 4 && !strcmp(argv[1], "tcp-serve")) {
    send_all(serve_one(AF_INET, (unsigned)atoi(argv[2])), strtoull(argv[3], NULL, 10));
  } else if (argc == 5 && !strcmp(argv[1], "connect-send")) {
    send_all(tunnel((unsigned)atoi(argv[2]), argv[3]), strtoull(argv[4], NULL, 10));
  } else if (argc == 5 && !strcmp(argv[1], "connect-latency")) {
    int count = atoi(argv[4]);
    for (int i = 0; i < count; i++) {
      double t0 = now_us();
      int s = tunnel((unsigned)atoi(argv[2]), argv[3]);
      printf("%.0f\n", now_us() - t0);
      close(s);
    }
  } else {
    fprintf(stderr, "usage: bench-net vsock-serve|tcp-serve PORT BYTES | "
                    "connect-send|connect-latency PROXY TARGET BYTES|N\n");
    return 2;
  }
  return 0;
}
`;

/** Compiles the tool into `dir`; returns the binary's path. */
export function buildGuestTool(dir: string): string {
  const source = join(dir, "bench-net.c");
  const binary = join(dir, "bench-net");
  writeFileSync(source, SOURCE);
  const cc = requireTool("musl-gcc");
  const r = spawnSync(cc, ["-static", "-O2", "-s", "-Wall", "-Werror", "-o", binary, source], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`musl-gcc failed: ${r.stderr}`);
  return binary;
}
