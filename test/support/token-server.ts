/**
 * A token server following the distribution token spec, for tests: Basic auth of one test
 * user, RS256 JWTs whose `access` claims grant the requested scopes. The signing key's
 * self-signed certificate travels in the JWT's `x5c` header, which docker-registry 2.8
 * checks against its `rootcertbundle` (registry/auth/token/token.go, VerifySigningKey).
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Access {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenServer {
  /** `http://127.0.0.1:<port>/token` */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate for the registry's `rootcertbundle`. */
  certPath: string;
  /** Token requests served so far (to check client-side caching). */
  requests(): number;
  /** A token granting `access` directly (test pushers). */
  mint(access: Access[]): string;
  stop(): Promise<void>;
}

export interface TokenServerOptions {
  username: string;
  password: string;
  service?: string;
  issuer?: string;
  /** Whether anonymous requests get pull access (default false: an empty grant). */
  anonymousPull?: boolean;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

function selfSignedCert(dir: string, keyPem: string): string {
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  writeFileSync(keyPath, keyPem, { mode: 0o600 });
  const r = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-new",
      "-key",
      keyPath,
      "-out",
      certPath,
      "-days",
      "2",
      "-sha256",
      "-subj",
      "/CN=corral-test-token",
    ],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`openssl req -x509 failed: ${r.stderr || r.error}`);
  return certPath;
}

function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last <= first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(",")
      .filter((a) => a !== ""),
  };
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const service = opts.service ?? "corral-test-registry";
  const issuer = opts.issuer ?? "corral-test-issuer";
  const dir = mkdtempSync(join(tmpdir(), "corral-token-"));
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const certPath = selfSignedCert(
    dir,
    privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  );
  const certDer = new X509Certificate(readFileSync(certPath)).raw;
  let served = 0;

  const mint = (access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const head = { typ: "JWT", alg: "RS256", x5c: [certDer.toString("base64")] };
    const claims = {
      iss: issuer,
      sub: opts.username,
      aud: service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString("hex"),
      access,
    };
    const input = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign("sha256", Buffer.from(input), privateKey))}`;
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    served++;
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== "/token") {
      res.writeHead(404).end();
      return;
    }
    const auth = req.headers.authorization;
    let user: string | undefined;
    if (auth !== undefined) {
      const decoded = Buffer.from(auth.replace(/^Basic /i, ""), "base64").toString();
      if (decoded !== `${opts.username}:${opts.password}`) {
        res.writeHead(401, {
          "content-type": "application/json",
          "www-authenticate": 'Basic realm="test"',
        });
        res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
        return;
      }
      user = opts.username;
    }
    const access = url.searchParams
      .getAll("scope")
      .flatMap((s) => s.split(" "))
      .map(parseScope)
      .filter((a): a is Access => a !== undefined && a.type === "repository")
      .map((a) => ({
        ...a,
        actions:
          user !== undefined
            ? a.actions
            : opts.anonymousPull
              ? a.actions.filter((x) => x === "pull")
              : [],
      }));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({ token: mint(access), expires_in: 300, issued_at: new Date().toISOString() }),
    );
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    requests: () => served,
    mint,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
