/**
 * `corral.events()`: the lifecycle's events as an async iterator, for one VM or all. It
 * subscribes when called (not at the first `next()`), so an event of a start begun right
 * after is not missed; it ends when `signal` aborts, the loop breaks or `return()` is called.
 * A slow reader loses its oldest events past a bound; the lifecycle never waits for it.
 */
import type { VmEvent, VmEvents } from "../vm/events.js";

export type { VmEvent };

export interface EventsOptions {
  /** Only this VM's events (notices about no VM in particular are left out). */
  vm?: string;
  /** Ends the iteration (quietly: the loop just finishes). */
  signal?: AbortSignal;
}

/** Events kept for a reader that has not asked for them yet (as vm/events.ts's stream). */
const BUFFER = 1024;

export function eventIterator(events: VmEvents, options: EventsOptions): AsyncIterator<VmEvent> {
  const { signal, vm } = options;
  const queue: VmEvent[] = [];
  let waiting: ((result: IteratorResult<VmEvent>) => void) | undefined;
  let ended = false;
  const off = events.on((event) => {
    if (ended || (vm !== undefined && event.name !== vm)) return;
    const reader = waiting;
    waiting = undefined;
    if (reader !== undefined) return reader({ done: false, value: event });
    if (queue.length >= BUFFER) queue.shift();
    queue.push(event);
  });
  const end = () => {
    if (ended) return;
    ended = true;
    off();
    signal?.removeEventListener("abort", end);
    queue.length = 0;
    waiting?.({ done: true, value: undefined });
    waiting = undefined;
  };
  if (signal?.aborted === true) end();
  else signal?.addEventListener("abort", end, { once: true });
  return {
    next() {
      const event = queue.shift();
      if (event !== undefined) return Promise.resolve({ done: false, value: event });
      if (ended) return Promise.resolve({ done: true, value: undefined });
      return new Promise((resolve) => {
        waiting = resolve;
      });
    },
    async return() {
      end();
      return { done: true, value: undefined };
    },
  };
}
