/**
 * Kernel modules for the initramfs. Debian's kernel packages ship no modules.dep (depmod runs
 * in postinst), so dependencies come from each module's own .modinfo section: `depends=` is
 * what modpost resolved from symbols (the data depmod uses too) and `softdep=` names modules
 * loaded alongside (ext4 needs a crc32c implementation).
 */
import { CorralError } from "../../errors.js";
import { readDebFiles } from "../debian/extract.js";

export interface ModuleInfo {
  name: string;
  /** Path relative to lib/modules/<release>/. */
  path: string;
  depends: string[];
  softdepPre: string[];
  aliases: string[];
}

export interface KernelModules {
  release: string;
  modules: Map<string, ModuleInfo>;
  /** Names of modules built into the kernel image. */
  builtin: Set<string>;
  /** Other files the caller asked to keep from the same pass (e.g. boot/vmlinuz-*). */
  kept: Map<string, Buffer>;
}

export function moduleName(name: string): string {
  return name.replace(/-/g, "_");
}

/** Key/value pairs of an ELF64 little-endian object's .modinfo section. */
export function parseModinfo(ko: Buffer): Array<[string, string]> {
  if (ko.length < 64 || ko.readUInt32BE(0) !== 0x7f454c46 || ko[4] !== 2 || ko[5] !== 1) {
    throw new CorralError("IMAGE_BUILD", "kernel module is not an ELF64 little-endian object");
  }
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: ko.readUInt32LE(at),
      offset: Number(ko.readBigUInt64LE(at + 0x18)),
      size: Number(ko.readBigUInt64LE(at + 0x20)),
    };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const name = ko.toString("latin1", nameStart, ko.indexOf(0, nameStart));
    if (name !== ".modinfo") continue;
    return ko
      .toString("utf8", s.offset, s.offset + s.size)
      .split("\0")
      .filter((kv) => kv.includes("="))
      .map((kv) => {
        const eq = kv.indexOf("=");
        return [kv.slice(0, eq), kv.slice(eq + 1)];
      });
  }
  return [];
}

function infoFrom(path: string, ko: Buffer): ModuleInfo {
  const pairs = parseModinfo(ko);
  const get = (key: string) => pairs.filter(([k]) => k === key).map(([, v]) => v);
  const file = path.split("/").pop() ?? path;
  const name = moduleName(get("name")[0] ?? file.replace(/\.ko(\.\w+)?$/, ""));
  const softdepPre: string[] = [];
  for (const softdep of get("softdep")) {
    // "pre: a b post: c": only "pre" modules must be present before this one works.
    const m = /pre:\s*([^:]*?)(?:\s+post:.*)?$/.exec(softdep.trim());
    if (m?.[1] !== undefined) softdepPre.push(...m[1].split(/\s+/).filter(Boolean));
  }
  return {
    name,
    path,
    depends: get("depends")
      .flatMap((d) => d.split(","))
      .filter(Boolean)
      .map(moduleName),
    softdepPre,
    aliases: get("alias"),
  };
}

const MODULE_FILE = /^lib\/modules\/([^/]+)\/(kernel\/.*\.ko|modules\.builtin)$/;

/**
 * Reads every module's metadata from the kernel .deb in one streaming pass (decompressing
 * the package is the slow part, so files in `keep` are collected in the same pass).
 */
export async function readKernelModules(
  debPath: string,
  keep: (path: string) => boolean = () => false,
): Promise<KernelModules> {
  const modules = new Map<string, ModuleInfo>();
  const builtin = new Set<string>();
  const releases = new Set<string>();
  const kept = new Map<string, Buffer>();
  await readDebFiles(
    debPath,
    (p) => MODULE_FILE.test(p) || keep(p),
    (p, data) => {
      const m = MODULE_FILE.exec(p);
      if (m === null) {
        kept.set(p, data);
        return;
      }
      const [, release = "", rel = ""] = m;
      releases.add(release);
      if (rel === "modules.builtin") {
        for (const line of data.toString("utf8").split("\n")) {
          const file = line.trim().split("/").pop();
          if (file) builtin.add(moduleName(file.replace(/\.ko$/, "")));
        }
        return;
      }
      const info = infoFrom(rel, data);
      modules.set(info.name, info);
    },
  );
  const [release, ...others] = [...releases];
  if (release === undefined || others.length > 0) {
    throw new CorralError(
      "IMAGE_BUILD",
      `expected modules of exactly one kernel in ${debPath}, found: ${[...releases].join(", ") || "none"}`,
    );
  }
  return { release, modules, builtin, kept };
}

function resolveSoftdep(km: KernelModules, wanted: string): ModuleInfo | undefined {
  const direct = km.modules.get(moduleName(wanted));
  if (direct !== undefined) return direct;
  // Soft dependencies name a capability ("crc32c"); prefer the portable generic provider.
  const providers = [...km.modules.values()]
    .filter((m) => m.aliases.includes(wanted) || m.aliases.includes(`crypto-${wanted}`))
    .sort((a, b) => Number(b.name.includes("generic")) - Number(a.name.includes("generic")));
  return providers[0];
}

export interface LoadPlan {
  /** Modules in load order, dependencies first. */
  order: ModuleInfo[];
  /** Requested modules that are built into the kernel (nothing to load). */
  builtin: string[];
}

/** Dependency-first load order for the requested modules and everything they need. */
export function planModuleLoad(km: KernelModules, requested: readonly string[]): LoadPlan {
  const order: ModuleInfo[] = [];
  const builtin: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (raw: string, chain: string[], soft: boolean) => {
    const name = moduleName(raw);
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      throw new CorralError(
        "IMAGE_BUILD",
        `module dependency cycle: ${[...chain, name].join(" -> ")}`,
      );
    }
    const info = soft ? resolveSoftdep(km, raw) : km.modules.get(name);
    if (info === undefined) {
      if (km.builtin.has(name)) {
        state.set(name, "done");
        if (chain.length === 0) builtin.push(name);
        return;
      }
      if (soft) return; // an optional helper this kernel doesn't have
      throw new CorralError(
        "IMAGE_BUILD",
        `kernel ${km.release} has no module ${name}${chain.length > 0 ? ` (needed by ${chain.join(" -> ")})` : ""}`,
      );
    }
    if (state.get(info.name) === "done") return;
    state.set(name, "visiting");
    state.set(info.name, "visiting");
    for (const dep of info.depends) visit(dep, [...chain, info.name], false);
    for (const dep of info.softdepPre) visit(dep, [...chain, info.name], true);
    state.set(name, "done");
    state.set(info.name, "done");
    order.push(info);
  };
  for (const name of requested) visit(name, [], false);
  return { order, builtin };
}

/**
 * A modules.dep for the subset, so modprobe inside the guest also works: like depmod's, each
 * line lists the module's whole dependency closure, the module to load last first.
 */
export function modulesDep(plan: LoadPlan): string {
  const byName = new Map(plan.order.map((m) => [m.name, m]));
  const position = new Map(plan.order.map((m, i) => [m.name, i]));
  const closure = (m: ModuleInfo, seen: Set<string>) => {
    for (const d of m.depends) {
      const dep = byName.get(d);
      if (dep === undefined || seen.has(dep.name)) continue;
      seen.add(dep.name);
      closure(dep, seen);
    }
    return seen;
  };
  return plan.order
    .map((m) => {
      const deps = [...closure(m, new Set())]
        .sort((a, b) => (position.get(b) ?? 0) - (position.get(a) ?? 0))
        .map((d) => byName.get(d)?.path ?? d);
      return `${m.path}:${deps.length > 0 ? ` ${deps.join(" ")}` : ""}\n`;
    })
    .join("");
}
