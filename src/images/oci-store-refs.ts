/**
 * The pulled-image index: `images/oci/refs.json` maps normalized references to manifest
 * digests. Writers serialize on `refs.lock` and replace the file atomically, so readers (no
 * lock) always see a whole index. Pulls in progress leave a marker under `.pulls/` (written
 * under the same lock) naming the digests they are about to use, so a concurrent prune never
 * deletes a blob or rootfs between its download and the moment the pull records its ref.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { writeFileAtomicSync } from "../base/atomic.js";
import { acquireLock } from "../base/lock.js";
import { isAlive, processStartTime } from "../base/process.js";
import { CorralError } from "../errors.js";
import { cachePaths } from "../paths/layout.js";
import { formatReference, parseReference } from "../protocols/oci/reference.js";

const refEntrySchema = z.object({
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  pulledAt: z.string(),
});
const refsSchema = z.object({
  version: z.literal(1),
  refs: z.record(z.string(), refEntrySchema),
});

export type RefEntry = z.infer<typeof refEntrySchema>;
export type RefsIndex = z.infer<typeof refsSchema>;

export const ociStorePaths = {
  root: () => join(cachePaths.images(), "oci"),
  refs: () => join(cachePaths.images(), "oci", "refs.json"),
  lock: () => join(cachePaths.images(), "oci", "refs.lock"),
  pulls: () => join(cachePaths.images(), "oci", ".pulls"),
  imageDir: (digest: string) => join(cachePaths.images(), "oci", digestHex(digest)),
};

export function digestHex(digest: string): string {
  const match = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (match?.[1] === undefined) {
    throw new CorralError("INVALID_ARGUMENT", `not a sha256 manifest digest: ${digest}`);
  }
  return match[1];
}

function emptyIndex(): RefsIndex {
  return { version: 1, refs: {} };
}

/** A missing index is empty; a corrupt one too, rather than bricking every image command. */
export function readRefs(): RefsIndex {
  let text: string;
  try {
    text = readFileSync(ociStorePaths.refs(), "utf8");
  } catch {
    return emptyIndex();
  }
  try {
    const parsed = refsSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : emptyIndex();
  } catch {
    return emptyIndex();
  }
}

/** Runs `fn` on the index under the store lock and persists what it leaves. */
export async function updateRefs<T>(fn: (index: RefsIndex) => T | Promise<T>): Promise<T> {
  mkdirSync(ociStorePaths.root(), { recursive: true });
  const release = await acquireLock(ociStorePaths.lock(), "the OCI image store");
  try {
    const index = readRefs();
    const before = JSON.stringify(index);
    const result = await fn(index);
    const after = `${JSON.stringify(index, null, 2)}\n`;
    if (JSON.stringify(index) !== before) writeFileAtomicSync(ociStorePaths.refs(), after);
    return result;
  } finally {
    release();
  }
}

export interface RefMatch {
  /** Every ref the input selects (one for a reference, all of a digest's for a digest). */
  refs: string[];
  digest: string;
}

const DIGEST_PREFIX = /^(?:sha256:)?([0-9a-f]{12,64})$/;

/**
 * What `input` names in the index: the reference as typed, its normalized form (`busybox`
 * -> `docker.io/library/busybox:latest`), `name@digest` for a stored tag of that digest,
 * or a manifest digest / unique prefix of at least 12 hex digits. Undefined when nothing
 * matches; a prefix that matches several images is an error.
 */
export function matchRefs(index: RefsIndex, input: string): RefMatch | undefined {
  const text = input.trim();
  const direct = index.refs[text];
  if (direct !== undefined) return { refs: [text], digest: direct.digest };
  let normalized: ReturnType<typeof parseReference> | undefined;
  try {
    normalized = parseReference(text);
  } catch {
    normalized = undefined;
  }
  if (normalized !== undefined) {
    const key = formatReference(normalized);
    const entry = index.refs[key];
    if (entry !== undefined) return { refs: [key], digest: entry.digest };
    const pinned = normalized.digest;
    if (pinned !== undefined) {
      const repo = `${normalized.registry}/${normalized.repository}`;
      const same = Object.entries(index.refs)
        .filter(([ref, e]) => e.digest === pinned && refRepository(ref) === repo)
        .map(([ref]) => ref)
        .sort();
      if (same.length > 0) return { refs: same, digest: pinned };
    }
  }
  const hex = DIGEST_PREFIX.exec(text)?.[1];
  if (hex === undefined) return undefined;
  const digests = new Set(
    Object.values(index.refs)
      .map((e) => e.digest)
      .filter((d) => d.slice("sha256:".length).startsWith(hex)),
  );
  if (digests.size > 1) {
    throw new CorralError("INVALID_ARGUMENT", `"${text}" matches ${digests.size} images`, {
      hint: "give more digits of the digest, or the image reference",
      details: { digests: [...digests].sort() },
    });
  }
  const [digest] = digests;
  if (digest === undefined) return undefined;
  return { refs: refsOf(index, digest), digest };
}

/** `registry/path` of a stored ref (without tag or digest). */
export function refRepository(ref: string): string {
  try {
    const parsed = parseReference(ref);
    return `${parsed.registry}/${parsed.repository}`;
  } catch {
    return ref;
  }
}

export function refsOf(index: RefsIndex, digest: string): string[] {
  return Object.entries(index.refs)
    .filter(([, e]) => e.digest === digest)
    .map(([ref]) => ref)
    .sort();
}

const markerSchema = z.object({
  pid: z.number().int(),
  startTime: z.string().optional(),
  digests: z.array(z.string()),
});

/**
 * Announces that this process is about to use `digests` (manifest + layers). Returns the
 * function that withdraws the announcement.
 */
export async function markPull(digests: string[]): Promise<() => void> {
  const file = join(ociStorePaths.pulls(), `${process.pid}-${randomBytes(4).toString("hex")}.json`);
  await updateRefs(() => {
    mkdirSync(ociStorePaths.pulls(), { recursive: true });
    const startTime = processStartTime(process.pid);
    writeFileAtomicSync(
      file,
      JSON.stringify({
        pid: process.pid,
        ...(startTime === undefined ? {} : { startTime }),
        digests,
      }),
    );
  });
  return () => rmSync(file, { force: true });
}

/** Digests that live pulls announced; markers of dead processes are removed. Call under the lock. */
export function digestsInUseByPulls(): Set<string> {
  const out = new Set<string>();
  let names: string[];
  try {
    names = readdirSync(ociStorePaths.pulls());
  } catch {
    return out;
  }
  for (const name of names) {
    if (!name.endsWith(".json") || name.startsWith(".")) continue;
    const path = join(ociStorePaths.pulls(), name);
    let marker: z.infer<typeof markerSchema> | undefined;
    try {
      const parsed = markerSchema.safeParse(JSON.parse(readFileSync(path, "utf8")));
      marker = parsed.success ? parsed.data : undefined;
    } catch {
      marker = undefined;
    }
    if (marker === undefined || !isAlive(marker.pid, marker.startTime)) {
      rmSync(path, { force: true });
      continue;
    }
    for (const d of marker.digests) out.add(d);
  }
  return out;
}
