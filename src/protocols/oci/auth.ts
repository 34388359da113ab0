/**
 * Registry authentication as the registry announces it in `WWW-Authenticate`:
 *  - Bearer: the distribution token flow. GET `realm?service=...&scope=...`, with Basic
 *    credentials when we have some (anonymous otherwise), answer `{token | access_token,
 *    expires_in}`; tokens are cached per registry and scope until shortly before expiry.
 *  - Basic: the credentials go on every request to that registry.
 */
import { CorralError } from "../../errors.js";
import type { Challenge } from "./challenge.js";
import type { BasicCredentials } from "./credentials.js";
import { registryErrorSummary } from "./registry-errors.js";
import {
  isRetryableStatus,
  parseRetryAfter,
  type RetryOptions,
  TransientError,
  withRetries,
} from "./retry.js";

export interface RawResponse {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface AuthDeps {
  credentialsFor(registry: string): BasicCredentials | undefined;
  /** Whether plain HTTP to `host` is acceptable (loopback, or named insecure by the user). */
  plainHttpAllowed(host: string): boolean;
  get(url: URL, headers: Record<string, string>): Promise<RawResponse>;
  retry: RetryOptions;
}

interface CachedToken {
  value: string;
  expiresAt: number;
}

/** Tokens are spec'd to live at least 60 s; renew a little early to absorb clock skew. */
const DEFAULT_TOKEN_LIFETIME_S = 60;
const EXPIRY_MARGIN_MS = 10_000;

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

function basicHeader(c: BasicCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
}

export class Authenticator {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private readonly basicRegistries = new Set<string>();

  constructor(private readonly deps: AuthDeps) {}

  /** The Authorization header to send now, if any is known for this registry and scope. */
  authorization(registry: string, scope: string): string | undefined {
    const token = this.tokens.get(`${registry} ${scope}`);
    if (token !== undefined && token.expiresAt > Date.now()) return `Bearer ${token.value}`;
    if (this.basicRegistries.has(registry)) {
      const creds = this.deps.credentialsFor(registry);
      if (creds !== undefined) return basicHeader(creds);
    }
    return undefined;
  }

  hasCredentials(registry: string): boolean {
    return this.deps.credentialsFor(registry) !== undefined;
  }

  /**
   * Reacts to a 401: returns true when a retry can now carry new authorization, false when
   * there is nothing more to try (the caller reports the 401).
   */
  async answer(registry: string, scope: string, challenges: Challenge[]): Promise<boolean> {
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer !== undefined) {
      const key = `${registry} ${scope}`;
      let pending = this.pending.get(key);
      if (pending === undefined) {
        pending = this.fetchToken(registry, scope, bearer).finally(() => this.pending.delete(key));
        this.pending.set(key, pending);
      }
      this.tokens.set(key, await pending);
      return true;
    }
    const basic = challenges.find((c) => c.scheme === "basic");
    if (basic !== undefined && this.deps.credentialsFor(registry) !== undefined) {
      if (this.basicRegistries.has(registry)) return false;
      this.basicRegistries.add(registry);
      return true;
    }
    return false;
  }

  private async fetchToken(
    registry: string,
    scope: string,
    challenge: Challenge,
  ): Promise<CachedToken> {
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? "");
    } catch {
      throw new CorralError("REGISTRY_AUTH", `${registry} announced an invalid token realm`, {
        hint: "the registry's auth configuration is broken; contact its operator",
      });
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new CorralError("REGISTRY_AUTH", `${registry}: unsupported token realm scheme`);
    }
    const service = challenge.params.service;
    if (service !== undefined) url.searchParams.set("service", service);
    // Our own scope, not the challenge's: the token must cover what we are about to request.
    url.searchParams.append("scope", scope);

    const creds = this.deps.credentialsFor(registry);
    const headers: Record<string, string> = {};
    if (creds !== undefined) {
      if (url.protocol === "http:" && !this.deps.plainHttpAllowed(url.host)) {
        throw new CorralError(
          "REGISTRY_AUTH",
          `${registry}: refusing to send credentials to a plain-HTTP token service (${url.host})`,
          { hint: `add ${url.host} to the insecure registries only if you trust that network` },
        );
      }
      headers.authorization = basicHeader(creds);
    }

    const what = `token for ${registry} from ${url.host}`;
    const res = await withRetries(what, this.deps.retry, async () => {
      const r = await this.deps.get(url, headers);
      if (isRetryableStatus(r.status)) {
        const retryAfterMs = parseRetryAfter(first(r.headers["retry-after"]));
        throw new TransientError(
          `${what}: HTTP ${r.status}`,
          retryAfterMs === undefined ? {} : { retryAfterMs },
        );
      }
      return r;
    });
    if (res.status === 401 || res.status === 403) {
      const summary = registryErrorSummary(res.body);
      throw new CorralError(
        "REGISTRY_AUTH",
        creds !== undefined
          ? `the token service for ${registry} rejected the credentials (HTTP ${res.status}${summary ? `, ${summary}` : ""})`
          : `the token service for ${registry} refused anonymous access (HTTP ${res.status})`,
        {
          details: { status: res.status, registry },
          hint:
            creds !== undefined
              ? `check the user name and password (docker login ${registry} or --creds user:password)`
              : `log in with docker login ${registry} or pass --creds user:password`,
        },
      );
    }
    if (res.status !== 200) {
      throw new CorralError("REGISTRY_AUTH", `${what}: HTTP ${res.status}`, {
        details: { status: res.status, registry },
      });
    }
    return parseTokenResponse(res.body, what);
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function parseTokenResponse(body: string, what: string, now = Date.now()): CachedToken {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(body) as Record<string, unknown>;
  } catch {
    throw new CorralError("REGISTRY_AUTH", `${what}: the answer is not JSON`);
  }
  const value =
    typeof parsed.token === "string" && parsed.token !== ""
      ? parsed.token
      : typeof parsed.access_token === "string" && parsed.access_token !== ""
        ? parsed.access_token
        : undefined;
  if (value === undefined)
    throw new CorralError("REGISTRY_AUTH", `${what}: the answer has no token`);
  const lifetime =
    typeof parsed.expires_in === "number" && parsed.expires_in > 0
      ? parsed.expires_in
      : DEFAULT_TOKEN_LIFETIME_S;
  // Our clock, not issued_at: a skewed server clock must not make a fresh token look expired.
  return { value, expiresAt: now + Math.max(lifetime * 1000 - EXPIRY_MARGIN_MS, 1000) };
}
