/**
 * What the lifecycle reports while it works: state changes of a VM and notices worth showing
 * (the TCG fallback, a retried step). Listeners get them as callbacks or as an async
 * iterator (`for await (const e of events.stream({ signal }))`); a slow iterator never blocks
 * the lifecycle: it buffers up to a bound and then drops its oldest events.
 */
import type { VmState } from "./record.js";

export type VmEvent =
  | { type: "state"; name: string; state: VmState; reason?: string; at: string }
  | { type: "notice"; name?: string; message: string; at: string };

/** What emitters pass: the time is added on emit. */
export type VmEventInput =
  | { type: "state"; name: string; state: VmState; reason?: string }
  | { type: "notice"; name?: string; message: string };

const STREAM_BUFFER = 1024;

export class VmEvents {
  private readonly listeners = new Set<(event: VmEvent) => void>();

  on(listener: (event: VmEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(input: VmEventInput): void {
    const event = { ...input, at: new Date().toISOString() } as VmEvent;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // a listener's bug must not break a lifecycle operation half-way
      }
    }
  }

  notice(message: string, name?: string): void {
    this.emit({ type: "notice", message, ...(name === undefined ? {} : { name }) });
  }

  /** Events from now on, until `signal` aborts (then the iteration ends quietly). */
  async *stream(options: { signal?: AbortSignal } = {}): AsyncGenerator<VmEvent> {
    const queue: VmEvent[] = [];
    let wake: (() => void) | undefined;
    const off = this.on((event) => {
      if (queue.length >= STREAM_BUFFER) queue.shift();
      queue.push(event);
      wake?.();
    });
    const onAbort = () => wake?.();
    options.signal?.addEventListener("abort", onAbort);
    try {
      for (;;) {
        while (queue.length > 0) {
          if (options.signal?.aborted) return;
          yield queue.shift()!;
        }
        if (options.signal?.aborted) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      off();
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}
