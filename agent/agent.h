/*
 * corral-agent's shared declarations: the protocol's numbers, the request, reply and exec
 * state types, and the functions the files share (named agent_*, grouped by the file that
 * defines them). Every agent .c file includes it first: it defines _GNU_SOURCE.
 */
#ifndef CORRAL_AGENT_H
#define CORRAL_AGENT_H

#define _GNU_SOURCE
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

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

/* A key=value list being built for a reply; replies are small and bounded. */
struct kv {
  char buf[4096];
  size_t len;
};

/* A parsed request; its strings point into the handler's copy of the request frame. */
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

/* Who a command or file op runs as (users.c). */
struct ident {
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_GROUPS];
  int ngroups;
  char home[PATH_MAX];
  char name[256];
};

/* What the forked child reports through its close-on-exec pipe when it cannot exec. */
struct child_err {
  int stage; /* 0 user, 1 cwd, 2 exec, 3 setup */
  int err;
};

/* The state of one exec's poll loop (exec.c, exec-io.c). */
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

/* util.c */
int64_t agent_now_ms(void);
void agent_set_nonblock(int fd, int on);
int agent_parse_u64(const char *s, uint64_t max, uint64_t *out);
const char *agent_errno_code(int e);
void agent_close_fd(int *fd);

/* protocol.c */
int agent_write_all(int fd, const void *buf, size_t n);
void agent_put_header(unsigned char *h, char type, uint32_t len);
int agent_send_frame(int fd, char type, const void *payload, uint32_t len);
void agent_kv_add(struct kv *kv, const char *key, const char *value);
void agent_kv_addu(struct kv *kv, const char *key, uint64_t v);
void agent_send_fail(int fd, const char *code, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int agent_read_frame(int fd, char *type, unsigned char *buf, uint32_t *len, int64_t deadline);
const char *agent_parse_request(char *p, uint32_t len, struct request *rq);

/* users.c */
int agent_passwd_lookup(const char *name, uid_t uid, struct ident *id);
const char *agent_resolve_user(const char *spec, struct ident *id);
int agent_become(const struct ident *id);

/* ping.c */
int agent_op_ping(int sock);
int agent_op_set_time(int sock, const struct request *rq);

/* files.c */
void agent_op_read_file(int sock, const struct request *rq, unsigned char *buf);
void agent_op_write_file(int sock, const struct request *rq, unsigned char *buf);

/* spawn.c */
void agent_note_inherited_ignored(void);
char **agent_build_env(const struct request *rq, char *home_kv);
pid_t agent_start_child(const struct request *rq, const struct ident *id, char **envp,
                        int in_fd, int out_fd, int err_fd, int report_fd);

/* exec-io.c */
int agent_exec_read_sock(struct exec_io *io, pid_t pgid, int stdin_stream);
void agent_exec_write_stdin(struct exec_io *io);
int agent_exec_fill_out(struct exec_io *io, int idx);
int agent_exec_flush_out(struct exec_io *io);

/* exec.c */
int agent_op_exec(int sock, struct request *rq, unsigned char *buf);

/* relay.c */
void agent_op_tcp_connect(int sock, const struct request *rq);
void agent_relay_egress(int client, unsigned vsock_port);

/* handler.c */
void agent_handle(int sock);
void agent_linger_close(int sock);

/* grow-fs.c */
int agent_grow_fs(const char *mountpoint, const char *device);

#endif
