/**
 * Layer entry names made safe, and the whiteout naming convention of the OCI image spec.
 * Nothing here touches the disk: resolve.ts checks what the names point at.
 */

/** A layer entry that would land outside the root; apply.ts names the layer and entry. */
export class UnsafePathError extends Error {
  override name = "UnsafePathError";
}

/**
 * An entry name as path components relative to the root. A leading "/" is stripped, as
 * Docker does; any ".." is refused, even a harmless-looking "a/../b", because whether it
 * stays inside depends on what "a" is on disk by then.
 */
export function entryParts(name: string): string[] {
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new UnsafePathError(`"${name}" has a ".." component`);
  return parts;
}

export const WHITEOUT_PREFIX = ".wh.";
export const OPAQUE_MARKER = ".wh..wh..opq";

export type WhiteoutKind =
  | { kind: "none" }
  | { kind: "opaque" }
  /** aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): never part of the image. */
  | { kind: "meta" }
  | { kind: "whiteout"; name: string };

export function whiteoutOf(base: string): WhiteoutKind {
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: "none" };
  if (base === OPAQUE_MARKER) return { kind: "opaque" };
  if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return { kind: "meta" };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === "" || name === "." || name === "..") {
    throw new UnsafePathError(`whiteout "${base}" names no entry`);
  }
  return { kind: "whiteout", name };
}

export function joinRel(parent: string, name: string): string {
  return parent === "" ? name : `${parent}/${name}`;
}

/** True for `path` itself and everything below it. */
export function isAtOrBelow(candidate: string, path: string): boolean {
  return (
    path === "" ||
    candidate === path ||
    (candidate.startsWith(path) && candidate[path.length] === "/")
  );
}
