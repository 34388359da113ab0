/**
 * The ISO writer's input as a tree: the root and at most one level of directories, files
 * validated (names, data, modes), and each entry's ISO 9660 and Joliet identifiers. Where an
 * entry lands in each tree (`location`, `number`) is filled in by the writer.
 */
import { CorralError } from "../../errors.js";
import { ucs2 } from "./encode.js";
import { isoIdentifiers, splitPath } from "./names.js";

export interface IsoFile {
  /** "name" or "dir/name" (one directory level). */
  name: string;
  data: Uint8Array;
  /** Permission bits (default 0o644); the file type is always a regular file. */
  mode?: number;
}

const S_IFREG = 0o100000;

export interface FileNode {
  name: string;
  path: string;
  data: Uint8Array;
  mode: number;
  isoId: string;
  jolietId: Buffer;
  location: number;
}

export interface DirNode {
  name: string;
  parent: DirNode | undefined;
  files: FileNode[];
  dirs: DirNode[];
  isoId: string;
  jolietId: Buffer;
  iso: TreePlacement;
  joliet: TreePlacement;
}

export interface TreePlacement {
  location: number;
  sectors: number;
  /** 1-based directory number in this tree's path table. */
  number: number;
}

export type Child = { kind: "file"; node: FileNode } | { kind: "dir"; node: DirNode };

function emptyPlacement(): TreePlacement {
  return { location: 0, sectors: 0, number: 0 };
}

function newDir(name: string, parent: DirNode | undefined): DirNode {
  return {
    name,
    parent,
    files: [],
    dirs: [],
    isoId: "",
    jolietId: ucs2(name),
    iso: emptyPlacement(),
    joliet: emptyPlacement(),
  };
}

export function buildTree(files: readonly IsoFile[]): DirNode {
  if (!Array.isArray(files)) throw new CorralError("ISO", "files: expected an array");
  const root = newDir("", undefined);
  const seen = new Map<string, "file" | "dir">();
  files.forEach((file, i) => {
    const field = `files[${i}].name`;
    const { dir, base } = splitPath(file?.name, field);
    if (!(file.data instanceof Uint8Array)) {
      throw new CorralError("ISO", `files[${i}].data: expected a Buffer`);
    }
    const mode = file.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw new CorralError(
        "ISO",
        `files[${i}].mode: ${mode} is not a permission mode (0 to 0o7777)`,
        {
          hint: "pass permission bits only, e.g. 0o644 or 0o755",
        },
      );
    }
    let parent = root;
    if (dir !== undefined) {
      if (seen.get(dir) === "file") {
        throw new CorralError("ISO", `${field}: "${dir}" is already a file`);
      }
      let d = root.dirs.find((x) => x.name === dir);
      if (d === undefined) {
        d = newDir(dir, root);
        root.dirs.push(d);
        seen.set(dir, "dir");
      }
      parent = d;
    }
    const path = dir === undefined ? base : `${dir}/${base}`;
    if (seen.has(path)) {
      const what = seen.get(path) === "dir" ? "a directory" : "given twice";
      throw new CorralError("ISO", `${field}: "${path}" is ${what}`);
    }
    seen.set(path, "file");
    parent.files.push({
      name: base,
      path,
      data: file.data,
      mode: S_IFREG | mode,
      isoId: "",
      jolietId: ucs2(base),
      location: 0,
    });
  });
  return root;
}

export function assignIdentifiers(dir: DirNode): void {
  const entries = [
    ...dir.dirs.map((d) => ({ name: d.name, dir: true })),
    ...dir.files.map((f) => ({ name: f.name, dir: false })),
  ];
  const ids = isoIdentifiers(entries);
  dir.dirs.forEach((d, i) => {
    d.isoId = ids[i]!;
  });
  dir.files.forEach((f, i) => {
    f.isoId = ids[dir.dirs.length + i]!;
  });
  for (const d of dir.dirs) assignIdentifiers(d);
}

export function allFiles(dir: DirNode): FileNode[] {
  return [...dir.files, ...dir.dirs.flatMap(allFiles)];
}

export function children(dir: DirNode): Child[] {
  return [
    ...dir.dirs.map((node): Child => ({ kind: "dir", node })),
    ...dir.files.map((node): Child => ({ kind: "file", node })),
  ];
}

export function links(dir: DirNode): number {
  return 2 + dir.dirs.length;
}
