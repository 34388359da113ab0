/*
 * exec's pumps, all non-blocking: frames from the host (stdin data, EOF, signals), stdin to
 * the child, and the child's stdout/stderr to the host, at most one frame buffered.
 */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

/* Returns 0 to continue, -1 on disconnect, -2 on protocol violation. */
int agent_exec_read_sock(struct exec_io *io, pid_t pgid, int stdin_stream) {
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
      if (io->in_len == io->in_off) agent_close_fd(&io->in_fd);
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

void agent_exec_write_stdin(struct exec_io *io) {
  while (io->in_off < io->in_len) {
    ssize_t w = write(io->in_fd, io->in_buf + io->in_off, io->in_len - io->in_off);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      /* The child closed its stdin: drop what the host sends from now on. */
      agent_close_fd(&io->in_fd);
      io->in_len = io->in_off = 0;
      return;
    }
    io->in_off += (uint32_t)w;
  }
  io->in_len = io->in_off = 0;
  if (io->host_eof) agent_close_fd(&io->in_fd);
}

/* Reads one chunk from pipe idx into the out buffer. Returns 1 data, 0 would block, -1 EOF. */
int agent_exec_fill_out(struct exec_io *io, int idx) {
  for (;;) {
    ssize_t n = read(io->pipes[idx], io->out + 5, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) {
      agent_close_fd(&io->pipes[idx]);
      return -1;
    }
    agent_put_header(io->out, idx == 0 ? '1' : '2', (uint32_t)n);
    io->out_len = 5 + (uint32_t)n;
    io->out_off = 0;
    return 1;
  }
}

/* Returns 0, or -1 when the host is gone. */
int agent_exec_flush_out(struct exec_io *io) {
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
