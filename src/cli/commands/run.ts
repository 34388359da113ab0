import { constants } from "node:os";
import type { Command } from "commander";
import { CorralError, Manager, parseEnvPairs, runInVm } from "../../index.js";
import { abortOnInterrupt } from "../interrupt.js";
import {
  collect,
  type PullFlags,
  parseIntFlag,
  pullOptionsFromFlags,
  specFromFlags,
  type VmFlags,
} from "../options.js";

export function addVmFlags(command: Command): Command {
  return command
    .option("--name <name>", "VM name (default: generated)")
    .option("--image <ref>", "OCI image for the root filesystem (default: the built-in image)")
    .option("--cpus <n>", "virtual CPUs (default 1)")
    .option("--memory <size>", "guest memory, e.g. 512M or 2G (default 256M)")
    .option("--env <KEY=VALUE>", "environment for commands (repeatable)", collect)
    .option("--accel <accel>", "auto | kvm | hvf | tcg (default auto)")
    .option("--machine <type>", "q35 | microvm (default q35)")
    .option("--kernel-arg <arg>", "extra kernel command-line parameter (repeatable)", collect)
    .option(
      "--network <mode>",
      "none (default: no NIC) | nat (user-mode NAT, DHCP) | tap:IFACE | switch:NAME (VM-to-VM)",
    )
    .option("--mac <mac>", "MAC address of the NIC (default: derived from the VM id)")
    .option("--ip <addr>", "guest address: A.B.C.D/LEN or dhcp (default: per network mode)")
    .option("--gateway <addr>", "default route for a static --ip")
    .option(
      "-p, --publish <[ip:]host:guest>",
      "forward a host TCP port to the guest, over vsock (repeatable; host ip default 127.0.0.1)",
      collect,
    )
    .option(
      "--allow-host <rule>",
      "allow egress through the host proxy: name[:port], '*.suffix', CIDR[:port] (repeatable)",
      collect,
    )
    .option("-v, --volume <host:guest[:ro]>", "share a host directory (repeatable)", collect)
    .option("--disk-size <size>", "virtual size of an image's root disk, e.g. 10G")
    .option("--cloud-image <file>", "boot a cloud image (qcow2/raw) with its own kernel")
    .option("--kernel <file>", "the cloud image's kernel (direct boot)")
    .option("--initrd <file>", "the cloud image's initrd (direct boot)")
    .option(
      "--firmware <kind>",
      "direct (default: QEMU loads the kernel) | uefi (OVMF boots the disks)",
    )
    .option("--cdrom <iso>", "attach an ISO read-only; UEFI boots it after the disks")
    .option(
      "--cloud-init <file>",
      "cloud-init user-data for a cloud image (YAML, docs/cloud-init.md)",
    )
    .option(
      "--disk <size|path[:ro]>",
      "extra disk: new (e.g. 10G) or an image file (repeatable)",
      collect,
    )
    .option("--ready-timeout <seconds>", "seconds the guest gets to answer before it is killed");
}

function notices(debug: boolean) {
  return new Manager({
    onEvent: (event) => {
      if (event.type === "notice") process.stderr.write(`corral: ${event.message}\n`);
      else if (debug) process.stderr.write(`corral: ${event.name} -> ${event.state}\n`);
    },
  });
}

/**
 * `run -- CMD` (built-in image) vs `run IMAGE [-- CMD]`: operands before the `--` the user
 * typed are the image. commander drops a `--` that precedes every operand, so compare with
 * what followed the raw `--`.
 */
function splitImageAndCommand(args: string[]): { image?: string; command: string[] } {
  const dashDash = process.argv.indexOf("--");
  if (dashDash >= 0 && process.argv.length - dashDash - 1 === args.length) {
    return { command: commandArgv(args) };
  }
  const [image, ...rest] = args;
  const command = rest[0] === "--" ? rest.slice(1) : rest;
  return { image, command };
}

/** With pass-through options, a `--` after the first operand reaches us: it is not the command. */
function commandArgv(argv: string[]): string[] {
  const command = argv[0] === "--" ? argv.slice(1) : argv;
  if (command.length === 0) {
    throw new CorralError("INVALID_ARGUMENT", "no command given", {
      hint: "put the command after --, e.g. corral exec NAME -- uname -a",
    });
  }
  return command;
}

export function registerRunCommands(program: Command): void {
  addVmFlags(
    program
      .command("run")
      .description(
        "run a command in a fresh VM: create, boot, exec, stop (and remove with --rm).\n" +
          "  corral run -- CMD...        the built-in image\n" +
          "  corral run IMAGE [-- CMD...] an OCI image (pulled when missing)",
      )
      .argument("<args...>", "[IMAGE] then the command after --")
      .option("--rm", "remove the VM when the command ends")
      .option(
        "--insecure-registry <host>",
        "allow plain HTTP to this registry (repeatable)",
        collect,
      )
      .option("--creds <user:pass>", "registry credentials for the pull")
      .option("--platform <os/arch>", "platform to pull, e.g. linux/arm64")
      .option("--from <snapshot>", "start from a snapshot instead of booting (the fast path)")
      .option("--pool <name>", "take a ready VM from a warm pool (removed after the command)")
      .option("-i, --interactive", "pass stdin to the command")
      .option("-w, --workdir <dir>", "working directory in the guest")
      .option("-u, --user <user>", "user (name or uid[:gid]) in the guest")
      .passThroughOptions(),
  ).action(
    async (
      argv: string[],
      flags: VmFlags &
        PullFlags & {
          rm?: boolean;
          interactive?: boolean;
          workdir?: string;
          user?: string;
          from?: string;
          pool?: string;
        },
    ) => {
      const debug = program.opts().debug === true;
      const { image, command } = splitImageAndCommand(argv);
      const spec = { ...specFromFlags(flags), ...(image === undefined ? {} : { image }) };
      for (const [flag, value] of [
        ["--from", flags.from],
        ["--pool", flags.pool],
      ] as const) {
        if (value === undefined) continue;
        const extra = Object.keys(spec).filter((key) => !(flag === "--from" && key === "name"));
        if (extra.length > 0) {
          throw new CorralError(
            "INVALID_ARGUMENT",
            `${flag}: the VM is made by the ${flag === "--from" ? "snapshot" : "pool"}; ${extra.join(", ")} cannot change`,
            { hint: `drop those flags, or boot a new VM without ${flag}` },
          );
        }
      }
      if (flags.from !== undefined && flags.pool !== undefined) {
        throw new CorralError("INVALID_ARGUMENT", "--from and --pool: choose one", {
          hint: "a pool made from a snapshot: corral pool create NAME --size N --from SNAPSHOT",
        });
      }
      const interrupt = abortOnInterrupt();
      try {
        const result = await runInVm(notices(debug), {
          spec,
          ...(flags.from === undefined ? {} : { fromSnapshot: flags.from }),
          ...(flags.pool === undefined ? {} : { fromPool: flags.pool }),
          argv: command,
          pull: pullOptionsFromFlags(flags),
          cwd: flags.workdir,
          user: flags.user,
          stdin: flags.interactive ? process.stdin : undefined,
          stdout: process.stdout,
          stderr: process.stderr,
          rm: flags.rm === true,
          signal: interrupt.signal,
        });
        process.exitCode = result.status;
      } catch (err) {
        if (interrupt.signal.aborted) {
          process.stderr.write("corral: interrupted; the VM was stopped\n");
          process.exitCode = 130;
          return;
        }
        throw err;
      } finally {
        interrupt.dispose();
        if (flags.interactive) process.stdin.destroy();
      }
    },
  );

  program
    .command("exec")
    .description("run a command in a running VM")
    .argument("<name>", "VM name")
    .argument("<command...>", "command and arguments (put them after --)")
    .option("-i, --interactive", "pass stdin to the command")
    .option("-w, --workdir <dir>", "working directory in the guest")
    .option("-u, --user <user>", "user (name or uid[:gid]) in the guest")
    .option("--env <KEY=VALUE>", "environment for the command (repeatable)", collect)
    .option("--timeout <seconds>", "kill the command after this many seconds")
    .passThroughOptions()
    .action(
      async (
        name: string,
        argv: string[],
        flags: {
          interactive?: boolean;
          workdir?: string;
          user?: string;
          env?: string[];
          timeout?: string;
        },
      ) => {
        const manager = notices(program.opts().debug === true);
        const proc = await manager.exec(name, {
          argv: commandArgv(argv),
          env: flags.env === undefined ? undefined : parseEnvPairs(flags.env),
          cwd: flags.workdir,
          user: flags.user,
          timeoutMs:
            flags.timeout === undefined
              ? undefined
              : parseIntFlag(flags.timeout, "--timeout", 1, 86_400) * 1000,
          stdin: flags.interactive ? process.stdin : undefined,
        });
        const forward = () => proc.kill("SIGINT");
        process.on("SIGINT", forward);
        try {
          proc.stdout.pipe(process.stdout, { end: false });
          proc.stderr.pipe(process.stderr, { end: false });
          const result = await proc.result;
          const signo =
            result.signal === null ? 0 : (constants.signals[result.signal as NodeJS.Signals] ?? 0);
          process.exitCode = result.exitCode ?? 128 + signo;
        } finally {
          process.off("SIGINT", forward);
          if (flags.interactive) process.stdin.destroy();
        }
      },
    );
}
