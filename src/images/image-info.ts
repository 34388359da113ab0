/** What a runnable guest image is: a kernel, an initramfs and how to boot them. */
export interface ImageInfo {
  name: string;
  version: string;
  /** sha256 over every input of the build; names the image's cache directory. */
  digest: string;
  dir: string;
  /** Uncompressed PVH vmlinux. */
  kernel: string;
  initrd: string;
  /** Default kernel command line. */
  cmdline: string;
  kernelRelease: string;
  createdAt: string;
  sizeBytes: number;
  inputs: Record<string, unknown>;
}
