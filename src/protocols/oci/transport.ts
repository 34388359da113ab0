/**
 * One HTTP exchange with a registry: scheme choice, authorization (with one retry after a
 * 401 challenge), redirects (blob downloads usually go to a CDN) and error mapping. Retries of
 * transient failures belong to the caller, because a blob download must retry its body too.
 */
import { Agent, type Dispatcher, request } from "undici";
import type { Authenticator, RawResponse } from "./auth.js";
import { parseWwwAuthenticate } from "./challenge.js";
import { apiHost, isLoopbackRegistry } from "./reference.js";
import { failureError } from "./registry-errors.js";
import { TransientError } from "./retry.js";

export type Response = Dispatcher.ResponseData;

export interface RegistryRequest {
  registry: string;
  /** Scope the request needs, e.g. `repository:library/alpine:pull`. */
  scope: string;
  /** `/v2/...` */
  path: string;
  method?: "GET" | "HEAD";
  headers?: Record<string, string>;
  /** Subject for error messages, e.g. `manifest docker.io/library/alpine:latest`. */
  what: string;
  /** Aborts the exchange, the body included (undici destroys it). */
  signal?: AbortSignal;
}

const MAX_REDIRECTS = 5;
const ERROR_BODY_LIMIT = 64 * 1024;

export function header(res: Response, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Reads at most `limit` bytes of a body; the rest is discarded. */
export async function readLimited(res: Response, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body.dump();
  } catch {
    // The connection is going away anyway.
  }
}

export interface TransportOptions {
  insecureRegistries: readonly string[];
  /** Headers and body inactivity limit, in ms. */
  timeoutMs: number;
}

export class Transport {
  readonly agent: Agent;
  private readonly insecure: Set<string>;
  auth: Authenticator | undefined;

  constructor(opts: TransportOptions) {
    this.agent = new Agent({
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: Math.min(opts.timeoutMs, 30_000),
    });
    this.insecure = new Set(opts.insecureRegistries.map((r) => r.toLowerCase()));
  }

  /** Plain HTTP only where nothing crosses a network or the user explicitly allowed it. */
  plainHttpAllowed(host: string): boolean {
    const h = host.toLowerCase();
    return isLoopbackRegistry(h) || this.insecure.has(h);
  }

  baseUrl(registry: string): string {
    const host = apiHost(registry);
    const plain = this.plainHttpAllowed(registry) || this.plainHttpAllowed(host);
    return `${plain ? "http" : "https"}://${host}`;
  }

  /** A bare GET (token endpoints): no registry auth, body read into memory. */
  async rawGet(url: URL, headers: Record<string, string>): Promise<RawResponse> {
    const res = await this.send(url, "GET", headers);
    const body = await readLimited(res, ERROR_BODY_LIMIT * 16);
    return { status: res.statusCode, headers: res.headers, body: body?.toString("utf8") ?? "" };
  }

  private async send(
    url: URL,
    method: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ) {
    try {
      return await request(url, {
        method,
        headers,
        dispatcher: this.agent,
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (err) {
      // Connection-level trouble: the retry policy decides by the error's code.
      throw err instanceof Error ? err : new TransientError(String(err));
    }
  }

  /** Sends `req`; resolves with a 2xx response whose body the caller must consume. */
  async request(req: RegistryRequest): Promise<Response> {
    const method = req.method ?? "GET";
    let url = new URL(`${this.baseUrl(req.registry)}${req.path}`);
    const origin = url.origin;
    let answered = false;
    let authorization = this.auth?.authorization(req.registry, req.scope);
    for (let redirects = 0; ; ) {
      const headers: Record<string, string> = { ...req.headers };
      // Credentials never follow a redirect to another host (presigned CDN URLs).
      if (authorization !== undefined && url.origin === origin) {
        headers.authorization = authorization;
      }
      const res = await this.send(url, method, headers, req.signal);
      const status = res.statusCode;
      if (status >= 200 && status < 300) return res;

      const location = header(res, "location");
      if (status >= 300 && status < 400 && location !== undefined) {
        await discard(res);
        if (++redirects > MAX_REDIRECTS) {
          throw new TransientError(`${req.what}: too many redirects`);
        }
        url = new URL(location, url);
        continue;
      }

      if (status === 401 && !answered && this.auth !== undefined && url.origin === origin) {
        const challenge = header(res, "www-authenticate");
        await discard(res);
        answered = true;
        const challenges = challenge === undefined ? [] : parseWwwAuthenticate(challenge);
        if (await this.auth.answer(req.registry, req.scope, challenges)) {
          authorization = this.auth.authorization(req.registry, req.scope);
          if (authorization !== undefined) continue;
        }
        throw failureError(
          { status, body: "" },
          { what: req.what, registry: req.registry, authenticated: this.hasCreds(req.registry) },
        );
      }

      const body = method === "HEAD" ? undefined : await readLimited(res, ERROR_BODY_LIMIT);
      const retryAfter = header(res, "retry-after");
      throw failureError(
        {
          status,
          body: body?.toString("utf8") ?? "",
          ...(retryAfter === undefined ? {} : { retryAfter }),
        },
        { what: req.what, registry: req.registry, authenticated: this.hasCreds(req.registry) },
      );
    }
  }

  private hasCreds(registry: string): boolean {
    return this.auth?.hasCredentials(registry) ?? false;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
