/**
 * Input validation and the three names every entry gets: the real name (Rock Ridge `NM`,
 * what Linux shows), an ISO 9660 level 1 identifier (8.3 d-characters, for readers without
 * extensions) and a Joliet identifier (UCS-2, at most 64 characters).
 */
import { CorralError } from "../../errors.js";

/** Joliet's identifier limit in UCS-2 characters (genisoimage's default). */
export const JOLIET_MAX_NAME = 64;
export const VOLUME_ID_PATTERN = /^[A-Za-z0-9_]{1,32}$/;
/** Characters Joliet identifiers may not contain (besides controls): * / : ; ? \ */
const JOLIET_FORBIDDEN = /[*/:;?\\]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
const SURROGATE = /[\uD800-\uDFFF]/;

const HINT =
  "use short file names of letters, digits, '.', '_' and '-' (at most one 'dir/' level, 64 characters a name)";

function refuse(field: string, message: string): never {
  throw new CorralError("ISO", `${field}: ${message}`, { hint: HINT });
}

export function validateVolumeId(volumeId: string): void {
  if (!VOLUME_ID_PATTERN.test(volumeId)) {
    throw new CorralError(
      "ISO",
      `volumeId: ${JSON.stringify(volumeId)} is not 1 to 32 letters, digits or '_'`,
      { hint: "use a label such as cidata" },
    );
  }
}

/** Checks one path component (a file or directory name). */
export function validateComponent(component: string, field: string): void {
  if (component === "") refuse(field, "empty name (no leading, trailing or double '/')");
  if (component === "." || component === "..") refuse(field, `"${component}" is not a name`);
  if (component.includes("\0")) refuse(field, "names cannot contain NUL");
  if (CONTROL.test(component)) refuse(field, "names cannot contain control characters");
  if (JOLIET_FORBIDDEN.test(component)) {
    refuse(
      field,
      `${JSON.stringify(component)} contains one of * / : ; ? \\ (not allowed by Joliet)`,
    );
  }
  if (SURROGATE.test(component)) {
    refuse(
      field,
      `${JSON.stringify(component)} has characters outside Unicode's BMP (Joliet is UCS-2)`,
    );
  }
  if (component.length > JOLIET_MAX_NAME) {
    refuse(field, `${JSON.stringify(component)} is longer than ${JOLIET_MAX_NAME} characters`);
  }
}

/** Splits "name" or "dir/name", validating each component. */
export function splitPath(name: string, field: string): { dir?: string; base: string } {
  if (typeof name !== "string") refuse(field, "name must be a string");
  const parts = name.split("/");
  if (parts.length > 2)
    refuse(field, `${JSON.stringify(name)}: only one directory level is supported`);
  for (const part of parts) validateComponent(part, field);
  return parts.length === 2 ? { dir: parts[0]!, base: parts[1]! } : { base: parts[0]! };
}

function dChars(text: string): string {
  let out = "";
  for (const c of text) {
    if (c >= "a" && c <= "z") out += c.toUpperCase();
    else if ((c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c === "_") out += c;
    else out += "_";
  }
  return out;
}

/**
 * Assigns ISO 9660 level 1 identifiers to the names of one directory: files `NAME.EXT;1`
 * (8.3), directories `NAME` (8). Collisions get a numeric suffix; the real names are
 * processed in sorted order, so the result is deterministic.
 */
export function isoIdentifiers(entries: readonly { name: string; dir: boolean }[]): string[] {
  const taken = new Set<string>();
  const out = new Array<string>(entries.length);
  const order = entries.map((e, i) => ({ ...e, i })).sort((a, b) => compareStrings(a.name, b.name));
  for (const e of order) {
    const dot = e.dir ? -1 : e.name.lastIndexOf(".");
    let base = dChars(dot > 0 ? e.name.slice(0, dot) : e.name).slice(0, 8);
    const ext = dot > 0 ? dChars(e.name.slice(dot + 1)).slice(0, 3) : "";
    if (base === "") base = "_";
    const make = (b: string) => (e.dir ? b : `${b}.${ext};1`);
    let id = make(base);
    for (let n = 1; taken.has(id); n++) {
      const suffix = String(n);
      id = make(base.slice(0, 8 - suffix.length) + suffix);
    }
    taken.add(id);
    out[e.i] = id;
  }
  return out;
}

/** Orders ISO identifiers as ECMA-119 9.3: name, then extension, each padded with spaces. */
export function compareIsoIdentifiers(a: string, b: string): number {
  const split = (id: string) => {
    const noVersion = id.split(";")[0]!;
    const dot = noVersion.indexOf(".");
    return dot < 0 ? [noVersion, ""] : [noVersion.slice(0, dot), noVersion.slice(dot + 1)];
  };
  const [an, ae] = split(a);
  const [bn, be] = split(b);
  const width = (x: string, y: string) => Math.max(x.length, y.length);
  const nw = width(an!, bn!);
  const byName = compareStrings(an!.padEnd(nw, " "), bn!.padEnd(nw, " "));
  if (byName !== 0) return byName;
  const ew = width(ae!, be!);
  return compareStrings(ae!.padEnd(ew, " "), be!.padEnd(ew, " "));
}

/** Code-unit order, independent of locale. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
