/**
 * `corral.events()`: the lifecycle's events as an async iterator, for one VM or all. It
 * subscribes when called (not at the first `next()`), so an event of a start begun right
 * after is not missed; it ends when `signal` aborts or the loop breaks. A slow reader loses
 * its oldest events past a bound (vm/events.ts); the lifecycle never waits for it.
 */
import type { VmEvent, VmEvents } from "../vm/events.js";

export type { VmEvent };

export interface EventsOptions {
  /** Only this VM's events (notices about no VM in particular are left out). */
  vm?: string;
  /** Ends the iteration (quietly: the loop just finishes). */
  signal?: AbortSignal;
}

export function eventIterator(events: VmEvents, options: EventsOptions): AsyncIterator<VmEvent> {
  const stream = events.stream(options.signal === undefined ? {} : { signal: options.signal });
  // The generator subscribes when it first runs: start it now, keep its first answer.
  let primed: Promise<IteratorResult<VmEvent>> | undefined = stream.next();
  const step = () => {
    const next = primed ?? stream.next();
    primed = undefined;
    return next;
  };
  const wanted = (event: VmEvent) => options.vm === undefined || event.name === options.vm;
  return {
    async next() {
      for (;;) {
        const result = await step();
        if (result.done === true || wanted(result.value)) return result;
      }
    },
    return: () => stream.return(undefined),
  };
}
