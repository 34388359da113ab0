/**
 * Registry credentials: an explicit `user:pass` (`--creds`) or the `auths` section of
 * Docker's config.json. Credential helpers (`credsStore`, `credHelpers`) and identity tokens
 * are not supported. Nothing here ever puts a secret into an error message.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { CorralError } from "../../errors.js";
import { setting } from "../../paths/roots.js";
import { DOCKER_HUB } from "./reference.js";

export interface BasicCredentials {
  username: string;
  password: string;
}

/** `user:pass` as given to `--creds`; the password may itself contain colons. */
export function parseCredentials(text: string): BasicCredentials {
  const colon = text.indexOf(":");
  if (colon <= 0) {
    throw new CorralError("INVALID_ARGUMENT", "--creds must be written user:password", {
      hint: "e.g. --creds alice:secret (or use docker login)",
    });
  }
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function defaultDockerConfigPath(): string {
  const dir = setting("DOCKER_CONFIG");
  // HOME from the settings in force too (os.homedir() reads process.env.HOME at each call).
  const home = setting("HOME") ?? homedir();
  return join(dir !== undefined && dir !== "" ? dir : join(home, ".docker"), "config.json");
}

/**
 * Keys in `auths` are written many ways: `https://index.docker.io/v1/` for Docker Hub,
 * `registry.example.com`, `https://registry.example.com/v2/`. All become a registry name.
 */
export function normalizeAuthKey(key: string): string {
  let host = key.trim().replace(/^[a-z]+:\/\//i, "");
  const slash = host.indexOf("/");
  if (slash >= 0) host = host.slice(0, slash);
  host = host.toLowerCase();
  if (host === "index.docker.io" || host === "registry-1.docker.io") return DOCKER_HUB;
  return host;
}

function decodeEntry(entry: unknown): BasicCredentials | undefined {
  if (typeof entry !== "object" || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  if (typeof e.auth === "string" && e.auth !== "") {
    const decoded = Buffer.from(e.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) return undefined;
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof e.username === "string" && typeof e.password === "string" && e.username !== "") {
    return { username: e.username, password: e.password };
  }
  return undefined;
}

/** Credentials per registry from a parsed config.json. */
export function credentialsFromDockerConfig(config: unknown): Map<string, BasicCredentials> {
  const out = new Map<string, BasicCredentials>();
  if (typeof config !== "object" || config === null) return out;
  const auths = (config as Record<string, unknown>).auths;
  if (typeof auths !== "object" || auths === null) return out;
  for (const [key, entry] of Object.entries(auths)) {
    const creds = decodeEntry(entry);
    const registry = normalizeAuthKey(key);
    // The bare host form wins over a URL form naming the same registry.
    if (creds !== undefined && (!out.has(registry) || !key.includes("://"))) {
      out.set(registry, creds);
    }
  }
  return out;
}

/** A missing or unreadable config means "no credentials", never an error: pulls stay anonymous. */
export function loadDockerConfig(path = defaultDockerConfigPath()): Map<string, BasicCredentials> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return new Map();
  }
  try {
    return credentialsFromDockerConfig(JSON.parse(text));
  } catch {
    return new Map();
  }
}
