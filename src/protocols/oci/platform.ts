/**
 * Platform selection in an index, following the OCI image spec and containerd's
 * normalisation: `aarch64` is `arm64`, whose default variant is `v8` (so `arm64` and
 * `arm64/v8` are the same thing); `x86_64` is `amd64` (default variant `v1`).
 */
import { CorralError } from "../../errors.js";
import type { Descriptor, Platform } from "./manifest.js";

export type { Platform };

export const DEFAULT_PLATFORM: Platform = { os: "linux", architecture: "amd64" };

const ARCH_ALIASES: Record<string, string> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  aarch64: "arm64",
  armhf: "arm",
  armel: "arm",
  i386: "386",
  i686: "386",
};

const DEFAULT_VARIANT: Record<string, string> = { arm64: "v8", amd64: "v1", arm: "v7" };

export function normalizePlatform(p: Platform): Required<Platform> {
  const os = p.os.toLowerCase();
  const architecture = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  if (p.architecture.toLowerCase() === "armel" && variant === undefined) variant = "v6";
  if (architecture === "arm64" && variant === "8") variant = "v8";
  return { os, architecture, variant: variant ?? DEFAULT_VARIANT[architecture] ?? "" };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== "").join("/");
}

/** Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split("/");
  const [os, architecture, variant] = parts;
  if (parts.length < 2 || parts.length > 3 || !os || !architecture || variant === "") {
    throw new CorralError("INVALID_ARGUMENT", `invalid platform "${text}"`, {
      hint: "write os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8",
    });
  }
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  return w.os === h.os && w.architecture === h.architecture && w.variant === h.variant;
}

/** Entries that describe a runnable image (not attestations, which say `unknown/unknown`). */
export function availablePlatforms(manifests: Descriptor[]): Platform[] {
  return manifests
    .map((m) => m.platform)
    .filter((p): p is Platform => p !== undefined && p.os !== "unknown");
}

/**
 * The first entry for `want`; an exact (un-normalised) variant match is preferred so that an
 * index listing both `arm64` and `arm64/v8` picks the one the user spelt.
 */
export function selectPlatform(manifests: Descriptor[], want: Platform, what: string): Descriptor {
  const candidates = manifests.filter(
    (m) => m.platform !== undefined && platformMatches(want, m.platform),
  );
  const exact = candidates.find((m) => m.platform?.variant === want.variant);
  const chosen = exact ?? candidates[0];
  if (chosen !== undefined) return chosen;
  const available = availablePlatforms(manifests).map(formatPlatform);
  throw new CorralError(
    "REGISTRY_NOT_FOUND",
    `${what} has no image for ${formatPlatform(want)} (available: ${available.join(", ") || "none"})`,
    {
      hint: "choose one of the available platforms with --platform",
      details: { available },
    },
  );
}
