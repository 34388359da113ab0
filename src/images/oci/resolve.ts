/**
 * Resolves a directory path inside the staging root without ever leaving it, the way openat2's
 * RESOLVE_IN_ROOT would if Node had it: every component is lstat'ed, symlinks are followed
 * only when relative and only while they stay below the root. An absolute symlink (`etc ->
 * /host/etc`) is refused rather than reinterpreted inside the root: a layer planted it, and
 * layers built by docker/buildkit never write through symlinks (their diffs list real paths).
 *
 * Only this process writes into the staging directory while layers are applied, so checking
 * then acting is not racy here. Synchronous on purpose: an unpack is thousands of tiny
 * metadata calls, and a thread-pool round trip for each made it several times slower.
 */
import { lstatSync, readlinkSync, type Stats } from "node:fs";
import { join } from "node:path";
import { joinRel, UnsafePathError } from "./paths.js";

const MAX_SYMLINK_HOPS = 40;

export function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export class RootResolver {
  /** Directory paths already resolved to real directories (no symlink left in them). */
  private readonly known = new Map<string, string>();

  constructor(readonly root: string) {}

  /** Call after removing or replacing a directory or symlink: cached resolutions may be stale. */
  forget(): void {
    this.known.clear();
  }

  abs(rel: string): string {
    return rel === "" ? this.root : join(this.root, rel);
  }

  /**
   * The real relative path of the directory `parts` names. Missing directories are created
   * by `create` when given, else the result is undefined (nothing there).
   */
  dir(parts: readonly string[], create?: (rel: string) => void): string | undefined {
    const key = parts.join("/");
    const cached = this.known.get(key);
    if (cached !== undefined) return cached;
    const resolved: string[] = [];
    const queue = [...parts];
    let hops = 0;
    for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
      if (part === "" || part === ".") continue;
      if (part === "..") {
        if (resolved.length === 0) throw new UnsafePathError(`"${key}" resolves above the root`);
        resolved.pop();
        continue;
      }
      const rel = joinRel(resolved.join("/"), part);
      const st = lstatOrUndefined(this.abs(rel));
      if (st === undefined) {
        if (create === undefined) return undefined;
        create(rel);
      } else if (st.isSymbolicLink()) {
        const target = readlinkSync(this.abs(rel));
        if (target.startsWith("/")) {
          throw new UnsafePathError(`"${rel}" is a symlink to the absolute path "${target}"`);
        }
        if (++hops > MAX_SYMLINK_HOPS) throw new UnsafePathError(`too many symlinks in "${key}"`);
        queue.unshift(...target.split("/"));
        continue;
      } else if (!st.isDirectory()) {
        throw new UnsafePathError(`"${rel}" is not a directory`);
      }
      resolved.push(part);
    }
    const real = resolved.join("/");
    this.known.set(key, real);
    return real;
  }
}
