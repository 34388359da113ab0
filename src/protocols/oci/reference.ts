/**
 * Image references with Docker's rules (github.com/distribution/reference): a registry host
 * is the first path component only when it looks like one (has `.` or `:`, or is
 * `localhost`), otherwise the image lives on Docker Hub, whose one-component names are in
 * `library/`.
 */
import { CorralError } from "../../errors.js";
import { DIGEST_PATTERN } from "./digest.js";

export interface Repository {
  /** Registry as the user names it: `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Path inside the registry: `library/alpine`. */
  repository: string;
}

export interface Reference extends Repository {
  /** Absent only when the reference is pinned by digest alone. */
  tag?: string;
  /** `sha256:<hex>`; when present it wins over the tag. */
  digest?: string;
}

export const DOCKER_HUB = "docker.io";
const DOCKER_HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);
const MAX_NAME_LENGTH = 255;

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST_LABEL = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const HOST = new RegExp(
  `^(?:${HOST_LABEL}(?:\\.${HOST_LABEL})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`,
);

function invalid(input: string, problem: string, fix: string): CorralError {
  return new CorralError("INVALID_ARGUMENT", `invalid image reference "${input}": ${problem}`, {
    hint: fix,
  });
}

function looksLikeHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

/** Parses `[registry/]path[:tag][@digest]`; a bare name gets the `latest` tag. */
export function parseReference(input: string): Reference {
  const text = input.trim();
  if (text === "") throw invalid(input, "it is empty", "name an image, e.g. alpine:3.20");
  if (/\s/.test(text)) throw invalid(input, "it contains whitespace", "remove the spaces");

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_PATTERN.test(digest)) {
      throw invalid(
        input,
        `"${digest}" is not a valid digest`,
        "a digest is sha256: followed by 64 lowercase hex digits",
      );
    }
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(
        input,
        `"${tag}" is not a valid tag`,
        "tags are up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
      );
    }
  }
  if (rest === "") throw invalid(input, "the repository name is missing", "e.g. alpine:3.20");

  const slash = rest.indexOf("/");
  let registry = DOCKER_HUB;
  let path = rest;
  if (slash >= 0 && looksLikeHost(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    path = rest.slice(slash + 1);
    if (!HOST.test(registry)) {
      throw invalid(input, `"${registry}" is not a valid registry host`, "use host[:port]/name");
    }
    if (DOCKER_HUB_ALIASES.has(registry.toLowerCase())) registry = DOCKER_HUB;
  }
  if (registry === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;

  if (path === "" || path.split("/").some((c) => c === "")) {
    throw invalid(input, "the repository path has an empty component", "e.g. org/app:tag");
  }
  for (const component of path.split("/")) {
    if (COMPONENT.test(component)) continue;
    if (COMPONENT.test(component.toLowerCase())) {
      throw invalid(
        input,
        "repository names must be lowercase",
        `write "${text.replace(component, component.toLowerCase())}"`,
      );
    }
    throw invalid(
      input,
      `"${component}" is not a valid repository name component`,
      "use lowercase letters and digits separated by '.', '_', '__' or '-'",
    );
  }
  if (registry.length + 1 + path.length > MAX_NAME_LENGTH) {
    throw invalid(input, `the name is longer than ${MAX_NAME_LENGTH} characters`, "shorten it");
  }
  if (registry === DOCKER_HUB && slash < 0 && /^[a-f0-9]{64}$/.test(text)) {
    throw invalid(
      input,
      "a 64-hex-digit name looks like an image id",
      "pin a digest with name@sha256:<hex>",
    );
  }

  const ref: Reference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  else if (tag === undefined) ref.tag = "latest";
  return ref;
}

/** The canonical, fully-qualified form: `docker.io/library/alpine:latest`. */
export function formatReference(ref: Reference): string {
  let out = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) out += `:${ref.tag}`;
  if (ref.digest !== undefined) out += `@${ref.digest}`;
  return out;
}

/** Host (and port) the registry's HTTP API answers on. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? "registry-1.docker.io" : registry;
}

/** Loopback registries never need TLS: nothing leaves the machine. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith("[")
    ? registry.slice(0, registry.indexOf("]") + 1)
    : (registry.split(":")[0] ?? registry);
  return host === "localhost" || host === "127.0.0.1" || host === "[::1]";
}
