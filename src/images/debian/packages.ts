import { CorralError } from "../../errors.js";
import { field, parseDeb822 } from "./deb822.js";
import { compareDebianVersions } from "./version.js";

export interface DebPackage {
  name: string;
  version: string;
  /** Path of the .deb relative to the mirror root (pool/...). */
  filename: string;
  sha256: string;
  size: number;
  depends: string;
  provides: string;
}

export function parsePackages(text: string): DebPackage[] {
  const out: DebPackage[] = [];
  for (const s of parseDeb822(text)) {
    const name = field(s, "Package");
    const version = field(s, "Version");
    const filename = field(s, "Filename");
    const sha256 = field(s, "SHA256");
    const size = Number(field(s, "Size"));
    if (!name || !version || !filename || !sha256 || !Number.isSafeInteger(size)) continue;
    out.push({
      name,
      version,
      filename,
      sha256,
      size,
      depends: [field(s, "Pre-Depends"), field(s, "Depends")].filter(Boolean).join(", "),
      provides: field(s, "Provides") ?? "",
    });
  }
  return out;
}

/** Package names of a Depends/Provides field: "a (>= 1) | b, c" -> [["a", "b"], ["c"]]. */
export function parseRelations(value: string): string[][] {
  return value
    .split(",")
    .map((group) =>
      group
        .split("|")
        .map((alt) => alt.trim().split(/[\s(:[]/)[0] ?? "")
        .filter((n) => n !== ""),
    )
    .filter((g) => g.length > 0);
}

export class PackageIndex {
  private readonly byName = new Map<string, DebPackage[]>();
  private providers: Map<string, DebPackage[]> | undefined;

  constructor(
    readonly suite: string,
    readonly packages: DebPackage[],
  ) {
    for (const p of packages) {
      const list = this.byName.get(p.name);
      if (list === undefined) this.byName.set(p.name, [p]);
      else list.push(p);
    }
  }

  /** Highest version of a real package of that name. */
  get(name: string): DebPackage | undefined {
    const list = this.byName.get(name);
    if (list === undefined) return undefined;
    return [...list].sort((a, b) => compareDebianVersions(b.version, a.version))[0];
  }

  providersOf(name: string): DebPackage[] {
    if (this.providers === undefined) {
      this.providers = new Map();
      for (const p of this.packages) {
        for (const [virtual] of parseRelations(p.provides)) {
          if (virtual === undefined) continue;
          const list = this.providers.get(virtual);
          if (list === undefined) this.providers.set(virtual, [p]);
          else list.push(p);
        }
      }
    }
    return this.providers.get(name) ?? [];
  }

  /**
   * Resolves a name to a concrete package: a real package, else the sole provider of a virtual
   * one. With `followDepends`, a metapackage (e.g. linux-image-amd64) is replaced by the
   * dependency whose name matches, so callers get the package that actually holds the files.
   */
  resolve(name: string, followDepends?: RegExp): DebPackage {
    let pkg = this.get(name);
    if (pkg === undefined) {
      const providers = [...new Set(this.providersOf(name).map((p) => p.name))];
      if (providers.length === 1 && providers[0] !== undefined) pkg = this.get(providers[0]);
      else if (providers.length > 1) {
        throw new CorralError(
          "IMAGE_NOT_FOUND",
          `Debian package ${name} (${this.suite}) is virtual, provided by ${providers.join(", ")}`,
          { hint: "ask for one of the providing packages by name" },
        );
      }
    }
    if (pkg === undefined) {
      throw new CorralError("IMAGE_NOT_FOUND", `no Debian package ${name} in ${this.suite}/main`, {
        hint: "check the package name and suite, or refresh the index",
      });
    }
    if (followDepends === undefined) return pkg;
    for (const group of parseRelations(pkg.depends)) {
      const target = group.find((n) => followDepends.test(n));
      if (target !== undefined && target !== pkg.name) return this.resolve(target, followDepends);
    }
    return pkg;
  }
}
