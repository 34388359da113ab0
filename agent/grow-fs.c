/* `corral-agent --grow-fs`: the root filesystem grown online to fill its (larger) disk. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

/* ext4's online resize: the kernel grows a mounted filesystem to the given block count. */
#define AGENT_EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)

/*
 * `--grow-fs MOUNTPOINT DEVICE`: grows the ext4 mounted at MOUNTPOINT to fill DEVICE (an
 * image's root disk whose overlay is larger than the image, `--disk-size`). No resize2fs in
 * the initramfs: the kernel does the work, this only asks.
 */
int agent_grow_fs(const char *mountpoint, const char *device) {
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
