import { CorralError } from "../errors.js";

const UNITS: Record<string, number> = {
  "": 1024 * 1024, // a bare number is MiB, as in QEMU's -m
  B: 1,
  K: 1024,
  KB: 1024,
  KIB: 1024,
  M: 1024 ** 2,
  MB: 1024 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1024 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TB: 1024 ** 4,
  TIB: 1024 ** 4,
};

/**
 * Parses "512M", "2G", "1.5GiB", "256" (MiB) into bytes. Units are binary (K = 1024), as
 * users of `docker run --memory` and QEMU expect.
 */
export function parseSize(input: string | number, field: string): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input <= 0) throw badSize(String(input), field);
    return Math.round(input * 1024 * 1024);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (match === null) throw badSize(input, field);
  const unit = UNITS[(match[2] ?? "").toUpperCase()];
  if (unit === undefined) throw badSize(input, field);
  const bytes = Math.round(Number(match[1]) * unit);
  if (bytes <= 0) throw badSize(input, field);
  return bytes;
}

function badSize(input: string, field: string): CorralError {
  return new CorralError("INVALID_ARGUMENT", `${field}: cannot parse size "${input}"`, {
    hint: `write ${field} as a number with a unit, e.g. 512M or 2G (K, M, G, T; binary units)`,
  });
}

export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 10 ? 0 : 1)}${units[unit]}`;
}
