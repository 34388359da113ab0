/**
 * `corral image pull|ls|inspect|rm|prune`: the built-in image(s) and pulled OCI images side by
 * side. Pull progress is one line per layer (bytes, total, rate): on a terminal the block is
 * redrawn in place (at most every 100 ms), in logs one line per finished step.
 */

import type { Command } from "commander";
import {
  CorralError,
  findBuiltinImage,
  findOciImage,
  formatSize,
  listImages,
  listOciImages,
  Manager,
  type OciImage,
  type ProgressEvent,
  parseCredentials,
  parseReference,
  pruneOciImages,
  pullImage,
  removeOciImage,
  shortDigest,
} from "../../index.js";
import { collect } from "../options.js";
import { age, printJson, printTable } from "../render.js";

interface PullFlags {
  insecureRegistry?: string[];
  creds?: string;
  platform?: string;
  json?: boolean;
  quiet?: boolean;
}

function notFound(ref: string): CorralError {
  return new CorralError("IMAGE_NOT_FOUND", `no image "${ref}" on this machine`, {
    hint: `pull it first: corral image pull ${ref}`,
  });
}

function printOciImage(image: OciImage): void {
  const c = image.config;
  const rows: [string, string | undefined][] = [
    ["reference", image.reference],
    ["digest", image.manifestDigest],
    ["platform", image.platform],
    ["created", image.created],
    ["pulled", `${image.pulledAt} (${age(image.pulledAt)})`],
    ["rootfs", `${image.rootfs} (${formatSize(image.sizeBytes)}, ext4)`],
    ["entrypoint", c.entrypoint === undefined ? undefined : JSON.stringify(c.entrypoint)],
    ["cmd", c.cmd === undefined ? undefined : JSON.stringify(c.cmd)],
    ["workdir", c.workingDir],
    ["user", c.user],
  ];
  let text = "";
  for (const [key, value] of rows) if (value !== undefined) text += `${key}: ${value}\n`;
  text += `env:\n${c.env.map((e) => `  ${e}\n`).join("")}`;
  text += `layers: ${image.layers} (${formatSize(image.layerBytes)} compressed)\n`;
  text += image.layerDigests.map((d) => `  ${d}\n`).join("");
  process.stdout.write(text);
}

export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("manage guest images (built-in and OCI)");

  image
    .command("pull")
    .description("pull an OCI image from a registry and build its root filesystem")
    .argument("<ref>", "image reference, e.g. alpine:3.20 or ghcr.io/org/app@sha256:...")
    .option("--insecure-registry <host>", "allow plain HTTP to this registry (repeatable)", collect)
    .option("--creds <user:password>", "registry credentials (default: ~/.docker/config.json)")
    .option("--platform <os/arch>", "platform to pull, e.g. linux/arm64 (default linux/amd64)")
    .option("--json", "print the pulled image as JSON")
    .option("-q, --quiet", "no progress; print only the reference")
    .action(async (ref: string, flags: PullFlags) => {
      const pulled = await pullImage(ref, {
        ...(flags.insecureRegistry === undefined
          ? {}
          : { insecureRegistries: flags.insecureRegistry }),
        ...(flags.creds === undefined ? {} : { credentials: parseCredentials(flags.creds) }),
        ...(flags.platform === undefined ? {} : { platform: flags.platform }),
        onProgress: pullProgressRenderer(flags.quiet !== true && flags.json !== true),
      });
      if (flags.json) return printJson(pulled);
      if (flags.quiet) return void process.stdout.write(`${pulled.reference}\n`);
      for (const w of pulled.warnings) process.stderr.write(`warning: ${w}\n`);
      process.stdout.write(
        `${pulled.cached ? "up to date" : "pulled"}: ${pulled.reference} ` +
          `(${shortDigest(pulled.manifestDigest)}, ${pulled.platform}, rootfs ${formatSize(pulled.sizeBytes)})\n`,
      );
    });

  image
    .command("ls")
    .description("list the built-in image(s) and pulled OCI images")
    .option("--json", "print JSON")
    .action((flags: { json?: boolean }) => {
      const builtin = listImages();
      const oci = listOciImages();
      if (flags.json) {
        return printJson([
          ...builtin.map((i) => ({ kind: "builtin", ...i })),
          ...oci.map((i) => ({ kind: "oci", ...i })),
        ]);
      }
      printTable(
        ["REFERENCE", "KIND", "DIGEST", "SIZE", "CREATED"],
        [
          ...builtin.map((i) => [
            i.name,
            "built-in",
            i.digest.slice(0, 12),
            formatSize(i.sizeBytes),
            age(i.createdAt),
          ]),
          ...oci.map((i) => [
            i.reference,
            "oci",
            shortDigest(i.manifestDigest),
            formatSize(i.sizeBytes),
            age(i.pulledAt),
          ]),
        ],
      );
    });

  image
    .command("inspect")
    .description("show an image's config, layers and paths")
    .argument("<ref>", "reference, or digest (prefix of at least 12 hex digits)")
    .option("--json", "print JSON")
    .action((ref: string, flags: { json?: boolean }) => {
      const found = findOciImage(ref);
      if (found !== undefined) return flags.json ? printJson(found) : printOciImage(found);
      const builtin = findBuiltinImage(ref);
      if (builtin === undefined) {
        parseReference(ref); // an invalid name deserves its own message, not "pull it"
        throw notFound(ref);
      }
      if (flags.json) return printJson(builtin);
      process.stdout.write(
        `name: ${builtin.name}\nversion: ${builtin.version}\ndigest: ${builtin.digest}\n` +
          `kernel: ${builtin.kernel}\ninitrd: ${builtin.initrd}\ncmdline: ${builtin.cmdline}\n`,
      );
    });

  image
    .command("rm")
    .description("remove pulled images (the rootfs goes once no reference is left)")
    .argument("<refs...>", "references or digests")
    .action(async (refs: string[]) => {
      let failure: unknown;
      for (const ref of refs) {
        try {
          if (findOciImage(ref) === undefined && findBuiltinImage(ref) !== undefined) {
            throw new CorralError("INVALID_ARGUMENT", `${ref} is a built-in image`, {
              hint: "built-in images are managed by `corral setup`",
            });
          }
          const r = await removeOciImage(ref, await new Manager().imagesInUse());
          process.stdout.write(
            `removed ${r.refs.join(", ")}` +
              (r.deleted
                ? ` (deleted ${shortDigest(r.digest)}, freed ${formatSize(r.freedBytes)})\n`
                : "\n"),
          );
        } catch (err) {
          failure ??= err;
          if (refs.length > 1)
            process.stderr.write(`corral: ${ref}: ${String((err as Error).message)}\n`);
        }
      }
      if (failure !== undefined) throw failure;
    });

  image
    .command("prune")
    .description("delete root filesystems and layer blobs no pulled image uses")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      const result = await pruneOciImages(await new Manager().imagesInUse());
      if (flags.json) return printJson(result);
      process.stdout.write(
        `removed ${result.removed.images.length} image(s) and ${result.removed.blobs.length} blob(s), ` +
          `freed ${formatSize(result.freedBytes)}\n`,
      );
    });
}

interface LayerLine {
  status: string;
  current: number;
  total: number | undefined;
  started: number;
  finished?: number;
}

function rate(line: LayerLine): string {
  const seconds = ((line.finished ?? Date.now()) - line.started) / 1000;
  return seconds <= 0 ? "" : ` ${formatSize(line.current / seconds)}/s`;
}

function describe(label: string, line: LayerLine): string {
  const amount =
    line.total === undefined
      ? formatSize(line.current)
      : `${formatSize(line.current)}/${formatSize(line.total)}`;
  switch (line.status) {
    case "cached":
      return `${label}: cached (${formatSize(line.total ?? line.current)})`;
    case "pulling":
      return `${label}: pulling ${amount}${rate(line)}`;
    case "pulled":
      return `${label}: pulled ${amount} in ${(((line.finished ?? line.started) - line.started) / 1000).toFixed(1)}s${rate(line)}`;
    case "unpacking":
      return `${label}: unpacking ${amount}`;
    default:
      return `${label}: ${line.status}`;
  }
}

export function pullProgressRenderer(
  enabled: boolean,
  out: NodeJS.WriteStream = process.stderr,
): (event: ProgressEvent) => void {
  if (!enabled) return () => {};
  const tty = out.isTTY === true;
  const lines = new Map<string, LayerLine>();
  let drawn = 0;
  let lastDraw = 0;
  let tail: string | undefined;

  const redraw = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastDraw < 100) return;
    lastDraw = now;
    const width = (out.columns ?? 100) - 1;
    const text = [...lines].map(([label, line]) => describe(label, line));
    if (tail !== undefined) text.push(tail);
    let s = drawn > 0 ? `\x1b[${drawn}A` : "";
    for (const t of text) s += `\r\x1b[K${t.slice(0, width)}\n`;
    out.write(s);
    drawn = text.length;
  };

  const log = (text: string) => out.write(`${text}\n`);

  return (event) => {
    const label = event.label;
    const line = lines.get(label);
    switch (event.phase) {
      case "cached": {
        const total = event.total ?? 0;
        lines.set(label, { status: "cached", current: total, total, started: Date.now() });
        if (!tty) log(describe(label, lines.get(label) as LayerLine));
        break;
      }
      case "pull": {
        const l = line ?? {
          status: "pulling",
          current: 0,
          total: event.total,
          started: Date.now(),
        };
        l.current = event.current ?? l.current;
        l.total = event.total ?? l.total;
        if (event.done === true) {
          l.status = "pulled";
          l.finished = Date.now();
          if (!tty) log(describe(label, l));
        }
        lines.set(label, l);
        break;
      }
      case "unpack": {
        if (line === undefined) break;
        line.status = event.done === true ? "unpacked" : "unpacking";
        line.current = event.current ?? line.current;
        line.total = event.total ?? line.total;
        break;
      }
      case "ext4":
        tail = event.done === true ? "rootfs: ext4 image built" : "rootfs: building ext4 image";
        if (!tty && event.done === true) log(tail);
        break;
      case "rootfs":
        tail = `rootfs: up to date (${label})`;
        if (!tty) log(tail);
        break;
      default:
        return;
    }
    if (tty) redraw(event.done === true);
  };
}
