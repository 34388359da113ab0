/**
 * Which command may run in which state, and the one error (code VM_STATE) that says why not,
 * with the next step as its hint.
 */
import { CorralError } from "../errors.js";
import type { VmRecord, VmState } from "./record.js";

/** Refuses unless the VM is in one of `allowed`; `hint` overrides the state's default hint. */
export function requireState(
  record: VmRecord,
  allowed: readonly VmState[],
  options: { doing?: string; hint?: string } = {},
): void {
  if (allowed.includes(record.state)) return;
  const name = record.name;
  const wanted = allowed.length === 1 ? `, not ${allowed[0]}` : "";
  const doing = options.doing === undefined ? "" : `: cannot ${options.doing}`;
  throw new CorralError("VM_STATE", `VM "${name}" is ${record.state}${wanted}${doing}`, {
    hint: options.hint ?? defaultHint(record),
  });
}

function defaultHint(record: VmRecord): string {
  const name = record.name;
  switch (record.state) {
    case "failed":
      return `it failed: ${record.reason ?? "unknown reason"}; see "corral logs ${name}"`;
    case "paused":
      return `resume it with "corral resume ${name}"`;
    default:
      return `start it with "corral start ${name}"`;
  }
}
