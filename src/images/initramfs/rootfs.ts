/** The guest's root filesystem layout: what goes into the default image's initramfs. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { CpioEntry } from "./cpio.js";
import type { LoadPlan } from "./modules.js";

export interface RootfsInputs {
  /** Static busybox binary on the host. */
  busybox: string;
  /** Output of `busybox --list-full`: applet paths such as "sbin/init". */
  applets: string[];
  /** Static guest agent binary on the host. */
  agent: string;
  /** Directory holding inittab, rc, passwd, group, hosts, power-button (agent/init). */
  initDir: string;
  kernelRelease: string;
  modules: LoadPlan;
  /** The subset init loads at every boot; the rest load on demand (`corral.modules=`). */
  bootModules: LoadPlan;
  /** Host directory the planned modules were extracted to (holds lib/modules/<release>/...). */
  modulesRoot: string;
  modulesDep: string;
}

export const MODULE_LIST_PATH = "etc/corral/modules";

export async function rootfsEntries(r: RootfsInputs): Promise<CpioEntry[]> {
  const init = (name: string) => readFile(join(r.initDir, name));
  const moduleDir = `lib/modules/${r.kernelRelease}`;
  const entries: CpioEntry[] = [
    ...["proc", "sys", "dev", "tmp", "run", "mnt", "var/log"].map(
      (path): CpioEntry => ({ path, type: "directory", mode: path === "tmp" ? 0o1777 : 0o755 }),
    ),
    { path: "root", type: "directory", mode: 0o700 },
    // The kernel opens /dev/console for PID 1 before anything can mount devtmpfs.
    { path: "dev/console", type: "char", mode: 0o600, major: 5, minor: 1 },
    { path: "dev/null", type: "char", mode: 0o666, major: 1, minor: 3 },
    { path: "var/run", type: "symlink", target: "../run" },
    { path: "bin/busybox", type: "file", mode: 0o755, source: r.busybox },
    // argv[0] "init" makes busybox run as init.
    { path: "init", type: "symlink", target: "bin/busybox" },
    { path: "sbin/corral-agent", type: "file", mode: 0o755, source: r.agent },
    { path: "etc/inittab", type: "file", mode: 0o644, data: await init("inittab") },
    { path: "etc/corral/rc", type: "file", mode: 0o755, data: await init("rc") },
    { path: "etc/corral/agent", type: "file", mode: 0o755, data: await init("agent") },
    { path: "etc/corral/udhcpc", type: "file", mode: 0o755, data: await init("udhcpc") },
    { path: "etc/passwd", type: "file", mode: 0o644, data: await init("passwd") },
    { path: "etc/group", type: "file", mode: 0o644, data: await init("group") },
    { path: "etc/hosts", type: "file", mode: 0o644, data: await init("hosts") },
    { path: "etc/acpi/PWRF/00000080", type: "file", mode: 0o755, data: await init("power-button") },
    {
      path: MODULE_LIST_PATH,
      type: "file",
      mode: 0o644,
      data: Buffer.from(r.bootModules.order.map((m) => `/${moduleDir}/${m.path}\n`).join("")),
    },
    {
      path: `${moduleDir}/modules.dep`,
      type: "file",
      mode: 0o644,
      data: Buffer.from(r.modulesDep),
    },
    ...r.modules.order.map(
      (m): CpioEntry => ({
        path: `${moduleDir}/${m.path}`,
        type: "file",
        mode: 0o644,
        source: join(r.modulesRoot, moduleDir, m.path),
      }),
    ),
  ];
  const taken = new Set(entries.map((e) => e.path));
  for (const applet of r.applets) {
    const path = applet.replace(/^\/+/, "");
    // linuxrc is for initrd images; /init is already ours.
    if (path === "" || path === "linuxrc" || taken.has(path)) continue;
    taken.add(path);
    entries.push({ path, type: "symlink", target: "/bin/busybox" });
  }
  return entries;
}
