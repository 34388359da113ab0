import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { which } from "../../host/which.js";
import { setting } from "../../paths/roots.js";

export const DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** gpgv and the Debian keyring, when this host has both; else signatures can't be checked. */
export function signatureVerifier(): { gpgv: string; keyring: string } | undefined {
  const keyring = setting("CORRAL_DEBIAN_KEYRING") ?? DEBIAN_KEYRING;
  const gpgv = which("gpgv");
  if (gpgv === undefined || !readable(keyring)) return undefined;
  return { gpgv, keyring };
}

/** Runs gpgv on files already on disk; resolves true only for a good signature. */
export function gpgvVerify(
  verifier: { gpgv: string; keyring: string },
  files: string[],
): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(verifier.gpgv, ["--keyring", verifier.keyring, "--", ...files], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.on("error", (err) => resolve({ ok: false, output: err.message }));
    child.on("close", (code) => resolve({ ok: code === 0, output }));
  });
}
