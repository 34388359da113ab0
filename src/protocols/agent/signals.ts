/**
 * Linux signal numbers (x86-64 and arm64 agree). The guest is always Linux, while the host may
 * not be (macOS numbers differ), so os.constants.signals must not be used here.
 */
import { CorralError } from "../../errors.js";

const LINUX_SIGNALS: Readonly<Record<string, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

const ALIASES: Readonly<Record<string, string>> = {
  SIGIOT: "SIGABRT",
  SIGPOLL: "SIGIO",
  SIGCLD: "SIGCHLD",
};

const BY_NUMBER = new Map(Object.entries(LINUX_SIGNALS).map(([name, num]) => [num, name]));

/** Signal name or number -> Linux signal number (1..64). */
export function signalNumber(signal: NodeJS.Signals | number | string): number {
  if (typeof signal === "number") {
    if (Number.isInteger(signal) && signal >= 1 && signal <= 64) return signal;
  } else {
    const upper = signal.toUpperCase();
    const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
    const num = LINUX_SIGNALS[ALIASES[name] ?? name];
    if (num !== undefined) return num;
  }
  throw new CorralError("INVALID_ARGUMENT", `signal: unknown signal ${JSON.stringify(signal)}`);
}

/** Linux signal number -> name; real-time signals become "SIGRTMIN+n". */
export function signalName(num: number): string {
  const name = BY_NUMBER.get(num);
  if (name !== undefined) return name;
  if (num >= 34 && num <= 64) return `SIGRTMIN+${num - 34}`;
  return `SIG${num}`;
}
