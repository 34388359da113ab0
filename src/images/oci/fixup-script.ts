/**
 * Turns the staged tree plus its recorded fixups into debugfs commands: device nodes in
 * place of their placeholders, xattrs, and (when staging could not chown) every inode's
 * owner and any mode the host would not let us stage.
 */
import { DebugfsScript, debugfsQuote as q } from "./debugfs.js";
import type { DeviceKind, Fixups, InodeFixup } from "./fixups.js";
import type { StagedEntry } from "./measure.js";
import type { OwnershipMode } from "./tree.js";

const TYPE_BITS: Record<DeviceKind, number> = { char: 0o020000, block: 0o060000, fifo: 0o010000 };
const FILE_TYPE_MASK = 0o170000;

const octal = (n: number) => `0${n.toString(8)}`;

function addDevice(script: DebugfsScript, rel: string, fix: InodeFixup): void {
  const device = fix.device!;
  const at = rel.lastIndexOf("/");
  const dir = at < 0 ? "/" : `/${rel.slice(0, at)}`;
  const name = rel.slice(at + 1);
  script.add("rm", q(`/${rel}`));
  // debugfs's mknod takes a name in the current directory, not a path.
  script.add("cd", q(dir));
  if (device.kind === "fifo") script.add("mknod", q(name), "p");
  else
    script.add(
      "mknod",
      q(name),
      device.kind === "char" ? "c" : "b",
      `${device.major}`,
      `${device.minor}`,
    );
  script.add("cd", "/");
  const path = q(`/${rel}`);
  script.add("sif", path, "mode", octal(TYPE_BITS[device.kind] | (fix.mode ?? 0o600)));
  script.add("sif", path, "uid", `${fix.uid ?? 0}`);
  script.add("sif", path, "gid", `${fix.gid ?? 0}`);
  if (fix.mtime !== undefined) script.add("sif", path, "mtime", `@${fix.mtime}`);
}

export function fixupScript(
  entries: readonly StagedEntry[],
  fixups: Fixups,
  ownership: OwnershipMode,
): DebugfsScript {
  const script = new DebugfsScript();
  // mke2fs leaves the root's mtime at "now"; debugfs's rm/mknod bump their directory's.
  const restoreMtime = new Set<string>([""]);
  for (const { rel, st } of entries) {
    const fix = fixups.get(rel);
    const path = `/${rel}`;
    if (fix?.device !== undefined && st.isFile() && st.size === 0) {
      addDevice(script, rel, fix);
      restoreMtime.add(rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");
    } else {
      // The image's root is 0:0 (mke2fs root_owner) whoever staged it.
      const staged = rel === "" ? { uid: 0, gid: 0 } : st;
      const fallback = ownership === "record" ? 0 : undefined;
      const uid = fix?.uid ?? fallback;
      const gid = fix?.gid ?? fallback;
      if (uid !== undefined && uid !== staged.uid) script.add("sif", q(path), "uid", `${uid}`);
      if (gid !== undefined && gid !== staged.gid) script.add("sif", q(path), "gid", `${gid}`);
      // mke2fs never takes the root's mode from the source directory.
      const stagedMode = rel === "" ? -1 : st.mode & 0o7777;
      if (fix?.mode !== undefined && !st.isSymbolicLink() && fix.mode !== stagedMode) {
        script.add("sif", q(path), "mode", octal((st.mode & FILE_TYPE_MASK) | fix.mode));
      }
    }
    for (const [name, value] of Object.entries(fix?.xattrs ?? {})) {
      script.setXattr(path, name, value);
    }
  }
  for (const { rel, st } of entries) {
    if (restoreMtime.has(rel) && st.isDirectory()) {
      script.add("sif", q(`/${rel}`), "mtime", `@${Math.floor(st.mtimeMs / 1000)}`);
    }
  }
  return script;
}
