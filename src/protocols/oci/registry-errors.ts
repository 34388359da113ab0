/** Turns a registry's error answer into a CorralError with a next step for the user. */
import { CorralError } from "../../errors.js";
import { isRetryableStatus, parseRetryAfter, TransientError } from "./retry.js";

export interface FailedResponse {
  status: number;
  /** Raw body (the registry's `{"errors": [...]}` JSON when it follows the spec). */
  body: string;
  retryAfter?: string;
}

export interface FailureContext {
  /** e.g. `manifest docker.io/library/alpine:latest`. */
  what: string;
  registry: string;
  /** Whether credentials were offered, which changes what a 401 means. */
  authenticated: boolean;
}

/** `MANIFEST_UNKNOWN: manifest unknown`; bodies are registry-generated, never our secrets. */
export function registryErrorSummary(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { errors?: { code?: unknown; message?: unknown }[] };
    const parts = (parsed.errors ?? [])
      .map((e) => [e.code, e.message].filter((s) => typeof s === "string" && s !== "").join(": "))
      .filter((s) => s !== "");
    return parts.length === 0 ? undefined : parts.join("; ");
  } catch {
    return undefined;
  }
}

export function failureError(res: FailedResponse, ctx: FailureContext): Error {
  const summary = registryErrorSummary(res.body);
  const detail = summary === undefined ? `HTTP ${res.status}` : `HTTP ${res.status}, ${summary}`;
  const details = { status: res.status, registry: ctx.registry };
  if (isRetryableStatus(res.status)) {
    const retryAfterMs = parseRetryAfter(res.retryAfter);
    return new TransientError(
      `${ctx.what}: ${detail}`,
      retryAfterMs === undefined ? {} : { retryAfterMs },
    );
  }
  if (res.status === 401 || res.status === 403) {
    const denied = res.status === 403 ? "access denied" : "authentication required";
    return new CorralError("REGISTRY_AUTH", `${ctx.what}: ${denied} (${detail})`, {
      details,
      hint: ctx.authenticated
        ? `the credentials for ${ctx.registry} were rejected or lack pull access; check them (docker login ${ctx.registry} or --creds user:password) and the image name`
        : `log in with docker login ${ctx.registry} or pass --creds user:password; registries also answer this way for repositories that do not exist, so check the image name`,
    });
  }
  if (res.status === 404) {
    return new CorralError("REGISTRY_NOT_FOUND", `${ctx.what}: not found (${detail})`, {
      details,
      hint: "check the image name and tag (or digest)",
    });
  }
  return new CorralError("REGISTRY", `${ctx.what}: unexpected answer (${detail})`, { details });
}
