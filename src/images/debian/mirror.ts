import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CorralError } from "../../errors.js";
import { setting } from "../../paths/roots.js";

const SOURCES_DIR = "/etc/apt/sources.list.d";
const SOURCES_LIST = "/etc/apt/sources.list";

interface Candidate {
  uri: string;
  suites: string[];
}

function fromDeb822(text: string): Candidate[] {
  const out: Candidate[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    let uris: string[] = [];
    let suites: string[] = [];
    let types: string[] = ["deb"];
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m === null) continue;
      const values = (m[2] ?? "").trim().split(/\s+/).filter(Boolean);
      const key = (m[1] ?? "").toLowerCase();
      if (key === "uris") uris = values;
      else if (key === "suites") suites = values;
      else if (key === "types") types = values;
    }
    if (!types.includes("deb")) continue;
    for (const uri of uris) out.push({ uri, suites });
  }
  return out;
}

function fromOneLine(text: string): Candidate[] {
  const out: Candidate[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    // Options in brackets ("[arch=amd64 signed-by=...]") sit between the type and the URI.
    const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m !== null) out.push({ uri: m[1] ?? "", suites: [m[2] ?? ""] });
  }
  return out;
}

function isMainArchive(c: Candidate): boolean {
  if (!/^https?:\/\//.test(c.uri)) return false;
  if (c.uri.includes("security")) return false;
  return !c.suites.some((s) => s.endsWith("-security"));
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Candidate archive URIs in apt's configuration, in the order apt reads them. */
export function aptMirrorCandidates(
  sourcesDir = SOURCES_DIR,
  sourcesList = SOURCES_LIST,
): string[] {
  const candidates: Candidate[] = [];
  const list = readIfExists(sourcesList);
  if (list !== undefined) candidates.push(...fromOneLine(list));
  let names: string[] = [];
  try {
    names = readdirSync(sourcesDir).sort();
  } catch {
    names = [];
  }
  for (const name of names) {
    const text = readIfExists(join(sourcesDir, name));
    if (text === undefined) continue;
    if (name.endsWith(".sources")) candidates.push(...fromDeb822(text));
    else if (name.endsWith(".list")) candidates.push(...fromOneLine(text));
  }
  return candidates.filter(isMainArchive).map((c) => c.uri);
}

/**
 * The Debian mirror to download from: $CORRAL_DEBIAN_MIRROR, else the machine's own apt
 * configuration, so corral uses whatever mirror (or proxy) this host is allowed to reach.
 */
export function debianMirror(sourcesDir = SOURCES_DIR, sourcesList = SOURCES_LIST): string {
  const fromEnv = setting("CORRAL_DEBIAN_MIRROR");
  const uri =
    fromEnv !== undefined && fromEnv !== ""
      ? fromEnv
      : aptMirrorCandidates(sourcesDir, sourcesList)[0];
  if (uri === undefined) {
    throw new CorralError("SETUP", "no Debian mirror configured", {
      hint:
        "set CORRAL_DEBIAN_MIRROR to a Debian archive URL (the directory holding dists/ and pool/), " +
        "or add one to /etc/apt/sources.list.d/*.sources",
    });
  }
  return uri.replace(/\/+$/, "");
}
