/** Builds small .deb files and a fake Debian archive for the archive client's tests. */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";

export interface TarEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link";
  content?: string;
  mode?: number;
  linkname?: string;
}

export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  for (const e of entries) {
    const type = e.type ?? "file";
    const header: Partial<tar.Header> & { name: string } = {
      name: e.name,
      type,
      mode: e.mode ?? (type === "directory" ? 0o755 : 0o644),
      mtime: new Date(0),
    };
    if (e.linkname !== undefined) header.linkname = e.linkname;
    if (type === "file") pack.entry(header, e.content ?? "");
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function arMember(name: string, data: Buffer): Buffer {
  const field = (s: string, n: number) => s.padEnd(n, " ");
  const header =
    field(name, 16) +
    field("0", 12) +
    field("0", 6) +
    field("0", 6) +
    field("100644", 8) +
    field(String(data.length), 10) +
    "`\n";
  const pad = data.length % 2 === 1 ? Buffer.from("\n") : Buffer.alloc(0);
  return Buffer.concat([Buffer.from(header, "latin1"), data, pad]);
}

export function makeAr(members: Array<[string, Buffer]>): Buffer {
  return Buffer.concat([Buffer.from("!<arch>\n"), ...members.map(([n, d]) => arMember(n, d))]);
}

export function xz(data: Buffer): Buffer {
  const r = spawnSync("xz", ["-c", "-0"], { input: data });
  if (r.status !== 0) throw new Error(`xz failed: ${r.stderr}`);
  return r.stdout;
}

export async function makeDeb(
  entries: TarEntry[],
  compression: "gz" | "xz" = "gz",
): Promise<Buffer> {
  const data = await makeTar(entries);
  const control = gzipSync(await makeTar([{ name: "./control", content: "Package: x\n" }]));
  return makeAr([
    ["debian-binary", Buffer.from("2.0\n")],
    ["control.tar.gz", control],
    [`data.tar.${compression}`, compression === "gz" ? gzipSync(data) : xz(data)],
  ]);
}

export const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export interface FakeArchive {
  url: string;
  /** Paths requested so far, in order. */
  requests: string[];
  files: Map<string, Buffer>;
  /** Paths answering 503 this many more times before succeeding. */
  failures: Map<string, number>;
  close(): Promise<void>;
}

export interface FakePackage {
  name: string;
  version: string;
  deb: Buffer;
  depends?: string;
  provides?: string;
  /** Lie in the index, to provoke a checksum mismatch. */
  indexSha256?: string;
}

/** Serves dists/<suite>/{Release,main/binary-amd64/Packages.gz} and pool/ from memory. */
export async function fakeArchive(suite: string, packages: FakePackage[]): Promise<FakeArchive> {
  const files = new Map<string, Buffer>();
  const stanzas: string[] = [];
  for (const p of packages) {
    const filename = `pool/main/${p.name[0]}/${p.name}/${p.name}_${p.version}_amd64.deb`;
    files.set(`/${filename}`, p.deb);
    stanzas.push(
      [
        `Package: ${p.name}`,
        `Version: ${p.version}`,
        "Architecture: amd64",
        ...(p.depends ? [`Depends: ${p.depends}`] : []),
        ...(p.provides ? [`Provides: ${p.provides}`] : []),
        `Filename: ${filename}`,
        `Size: ${p.deb.length}`,
        `SHA256: ${p.indexSha256 ?? sha256(p.deb)}`,
        "Description: test package",
        " with a continuation line",
      ].join("\n"),
    );
  }
  const packagesGz = gzipSync(Buffer.from(`${stanzas.join("\n\n")}\n`));
  files.set(`/dists/${suite}/main/binary-amd64/Packages.gz`, packagesGz);
  const release = [
    `Suite: ${suite}`,
    `Codename: ${suite}`,
    "Date: Sat, 01 Jan 2022 00:00:00 UTC",
    "SHA256:",
    ` ${sha256(packagesGz)} ${packagesGz.length} main/binary-amd64/Packages.gz`,
    ` ${"0".repeat(64)} 123 main/binary-i386/Packages.gz`,
    "",
  ].join("\n");
  files.set(`/dists/${suite}/Release`, Buffer.from(release));

  const requests: string[] = [];
  const failures = new Map<string, number>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    requests.push(path);
    const left = failures.get(path) ?? 0;
    if (left > 0) {
      failures.set(path, left - 1);
      res.writeHead(503).end("busy");
      return;
    }
    const body = files.get(path);
    if (body === undefined) res.writeHead(404).end("not found");
    else res.writeHead(200, { "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    files,
    failures,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
