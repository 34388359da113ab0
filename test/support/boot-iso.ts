/**
 * Boot ISOs for the UEFI tests, made with grub-mkrescue (BIOS + UEFI El Torito, and a hybrid
 * image that also boots as a disk): GRUB loads corral's own kernel (the bzImage from the
 * cached linux-image .deb: GRUB needs the setup header the PVH vmlinux lacks) and initramfs.
 * `marker` goes on the kernel command line, so a test can tell which medium booted.
 */
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { readDebFiles } from "../../src/images/debian/extract.js";
import { findDefaultImage } from "../../src/images/default-image.js";
import { cachePaths } from "../../src/paths/layout.js";

const run = promisify(execFile);

export async function buildBootIso(dir: string, name: string, marker: string): Promise<string> {
  const image = findDefaultImage();
  const kernelDeb = (image?.inputs.kernel as { sha256?: string } | undefined)?.sha256;
  if (image === undefined || kernelDeb === undefined) {
    throw new Error("the default image is not built: run `corral setup` first");
  }
  const tree = join(dir, `${name}-tree`);
  mkdirSync(join(tree, "boot", "grub"), { recursive: true });
  let found = false;
  await readDebFiles(
    cachePaths.deb(kernelDeb),
    (path) => /^boot\/vmlinuz-/.test(path),
    (_path, data) => {
      writeFileSync(join(tree, "boot", "vmlinuz"), data);
      found = true;
    },
  );
  if (!found) throw new Error("no /boot/vmlinuz-* in the kernel .deb");
  await copyFile(image.initrd, join(tree, "boot", "initrd.img"));
  writeFileSync(
    join(tree, "boot", "grub", "grub.cfg"),
    [
      "set timeout=0",
      "set default=0",
      'menuentry "corral" {',
      // GRUB has no corral to add the usual arguments: the data disk's driver is asked for here.
      `  linux /boot/vmlinuz ${image.cmdline} corral.modules=virtio_blk ${marker}`,
      "  initrd /boot/initrd.img",
      "}",
      "",
    ].join("\n"),
  );
  const iso = join(dir, `${name}.iso`);
  await run("grub-mkrescue", ["-o", iso, tree], { timeout: 120_000 });
  return iso;
}
