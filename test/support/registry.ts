/**
 * Debian's real docker-registry (distribution 2.8) on 127.0.0.1 with a random port and a
 * temp storage dir, for tests. Optional token auth points at a token server (token-server.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BINARY = "/usr/bin/docker-registry";
const START_TIMEOUT_MS = 10_000;

export interface RegistryTokenAuth {
  realm: string;
  service: string;
  issuer: string;
  /** PEM file with the certificate(s) whose keys sign tokens. */
  rootCertBundle: string;
}

export interface TestRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, the registry part of image references. */
  host: string;
  /** Everything the registry logged so far (for failing tests). */
  log(): string;
  stop(): Promise<void>;
}

function configYaml(root: string, auth: RegistryTokenAuth | undefined): string {
  const lines = [
    "version: 0.1",
    "log:",
    "  level: info",
    "  formatter: text",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${JSON.stringify(join(root, "data"))}`,
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    "  addr: 127.0.0.1:0",
    "  secret: corral-test-secret",
  ];
  if (auth !== undefined) {
    lines.push(
      "auth:",
      "  token:",
      `    realm: ${JSON.stringify(auth.realm)}`,
      `    service: ${JSON.stringify(auth.service)}`,
      `    issuer: ${JSON.stringify(auth.issuer)}`,
      `    rootcertbundle: ${JSON.stringify(auth.rootCertBundle)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export async function startRegistry(
  opts: { tokenAuth?: RegistryTokenAuth } = {},
): Promise<TestRegistry> {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: apt-get install docker-registry`);
  }
  const root = mkdtempSync(join(tmpdir(), "corral-registry-"));
  const config = join(root, "config.yml");
  writeFileSync(config, configYaml(root, opts.tokenAuth));
  const child: ChildProcess = spawn(BINARY, ["serve", config], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    rmSync(root, { recursive: true, force: true });
  };

  try {
    const host = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`docker-registry did not start:\n${output}`)),
        START_TIMEOUT_MS,
      );
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const m = /listening on (127\.0\.0\.1:\d+)/.exec(output);
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`docker-registry exited (${code ?? signal}):\n${output}`));
      });
    });
    return { url: `http://${host}`, host, log: () => output, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface FakeServer {
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  /** Every request seen: method, url and headers. */
  requests: { method: string; url: string; headers: IncomingHttpHeaders }[];
  stop(): Promise<void>;
}

/** A scripted HTTP server on 127.0.0.1 for unit tests of registry clients. */
export async function startFakeServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<FakeServer> {
  const requests: FakeServer["requests"] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? "GET", url: req.url ?? "/", headers: req.headers });
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: `http://${host}`,
    host,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
