import { CorralError } from "../../errors.js";
import { field, parseDeb822 } from "./deb822.js";

export interface ReleaseFile {
  sha256: string;
  size: number;
}

export interface Release {
  suite: string | undefined;
  codename: string | undefined;
  date: string | undefined;
  /** path relative to dists/<suite>/ -> checksum */
  files: Map<string, ReleaseFile>;
}

/** Strips the OpenPGP clearsign armor of an InRelease file (RFC 4880 section 7). */
export function stripClearsign(text: string): string {
  if (!text.startsWith("-----BEGIN PGP SIGNED MESSAGE-----")) return text;
  const lines = text.split("\n");
  let i = 1;
  // Armor headers ("Hash: SHA512") end at the first empty line.
  while (i < lines.length && (lines[i] ?? "").trim() !== "") i++;
  const body: string[] = [];
  for (i++; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (line.startsWith("-----BEGIN PGP SIGNATURE-----")) break;
    body.push(line.startsWith("- ") ? line.slice(2) : line);
  }
  return `${body.join("\n")}\n`;
}

export function parseRelease(text: string): Release {
  const stanza = parseDeb822(stripClearsign(text))[0];
  if (stanza === undefined) {
    throw new CorralError("DOWNLOAD", "the Debian Release file is empty");
  }
  const files = new Map<string, ReleaseFile>();
  for (const line of (field(stanza, "SHA256") ?? "").split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3) continue;
    const [sha256, size, path] = parts as [string, string, string];
    if (!/^[0-9a-f]{64}$/.test(sha256)) continue;
    files.set(path, { sha256, size: Number(size) });
  }
  if (files.size === 0) {
    throw new CorralError("DOWNLOAD", "the Debian Release file has no SHA256 section", {
      hint: "check that CORRAL_DEBIAN_MIRROR points at a Debian archive",
    });
  }
  return {
    suite: field(stanza, "Suite"),
    codename: field(stanza, "Codename"),
    date: field(stanza, "Date"),
    files,
  };
}
