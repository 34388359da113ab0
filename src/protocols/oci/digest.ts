import { createHash, type Hash } from "node:crypto";
import { CorralError } from "../../errors.js";

/** The algorithms the OCI image spec registers; anything else cannot be verified. */
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

export const DIGEST_PATTERN = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export interface ParsedDigest {
  algorithm: "sha256" | "sha512";
  hex: string;
}

/** Validates a digest that came from a registry (it ends up in file paths and URLs). */
export function parseDigest(digest: string, what = "digest"): ParsedDigest {
  const [algorithm, hex] = digest.split(":");
  const length = algorithm === undefined ? undefined : HEX_LENGTH[algorithm];
  if (length === undefined || hex === undefined || !DIGEST_PATTERN.test(digest)) {
    throw new CorralError("REGISTRY", `${what} ${JSON.stringify(digest)} is not a valid digest`, {
      hint: "the registry sent a malformed manifest; only sha256 and sha512 digests are supported",
    });
  }
  return { algorithm: algorithm as ParsedDigest["algorithm"], hex };
}

export function digestHasher(digest: string): Hash {
  return createHash(parseDigest(digest).algorithm);
}

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Digest of `data` with the same algorithm as `expected`. */
export function digestLike(expected: string, data: Uint8Array): string {
  const { algorithm } = parseDigest(expected);
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
}

/** `sha256:0123456789ab`: enough to tell layers apart in progress output. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return colon < 0 ? digest.slice(0, 12) : digest.slice(colon + 1, colon + 13);
}
