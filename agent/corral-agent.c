/*
 * corral-agent: the guest side of corral's host <-> guest channel.
 *
 * Listens on AF_VSOCK (or a unix socket for host-side tests), forks one handler per
 * connection, and serves exactly one operation per connection. The wire protocol is
 * documented in docs/agent-protocol.md; keep the two in sync.
 *
 * This file is the process: options, the listening sockets, the readiness notice and the
 * accept loop. The rest, one concept a file, with the shared declarations in agent.h:
 *   handler.c   a connection: its requests, the dispatch to the ops, the lingering close
 *   protocol.c  frames in and out, key=value replies and failures, request parsing
 *   ping.c      ping and set_time
 *   files.c     read_file and write_file
 *   exec.c      exec: the poll loop over the socket, the pipes and SIGCHLD; the exit frame
 *   exec-io.c   exec's pumps: frames from the host, the child's stdin, output frames
 *   spawn.c     exec's child: environment, user, cwd, signals, vfork or fork, execvp
 *   users.c     /etc/passwd and /etc/group without NSS
 *   relay.c     tcp_connect (port forwards) and the egress relay
 *   grow-fs.c   --grow-fs (online ext4 resize)
 *   util.c      clock, descriptors, numbers, errno names
 *
 * Build (in agent/): musl-gcc -static -Os -Wall -Wextra -Werror -o corral-agent *.c
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>

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
      if (agent_parse_u64(argv[++i], UINT32_MAX, &port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--ready-port") && i + 1 < argc) {
      if (agent_parse_u64(argv[++i], UINT32_MAX, &ready_port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--egress-port") && i + 1 < argc) {
      if (agent_parse_u64(argv[++i], 65535, &egress_port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--egress-vsock-port") && i + 1 < argc) {
      if (agent_parse_u64(argv[++i], UINT32_MAX, &egress_vsock_port)) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--grow-fs") && i + 2 < argc) {
      return agent_grow_fs(argv[i + 1], argv[i + 2]);
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
  agent_note_inherited_ignored();
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
        agent_relay_egress(c, (unsigned)egress_vsock_port);
        close(c);
      } else {
        agent_handle(c);
        agent_linger_close(c);
      }
      _exit(0);
    }
    close(c);
  }
}
