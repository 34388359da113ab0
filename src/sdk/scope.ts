/**
 * An SDK instance's roots in force for each of its operations (paths/roots.ts): promises run
 * inside `withRoots`, and an async iterator's every step does too, so whatever an operation
 * touches (VMs, snapshots, images, the daemon it starts) is this instance's.
 */
import { type CorralRoots, withRoots } from "../paths/roots.js";

export class Scope {
  constructor(readonly roots: Required<CorralRoots>) {}

  /** Runs `fn` (sync or async) with this instance's roots. */
  run<T>(fn: () => T): T {
    return withRoots(this.roots, fn);
  }

  /** `source`, each step of it (next, return, throw) run with this instance's roots. */
  iterate<T>(source: () => AsyncIterator<T>): AsyncIterable<T> {
    const scope = this;
    return {
      [Symbol.asyncIterator](): AsyncIterator<T> {
        const it = scope.run(source);
        return {
          next: () => scope.run(() => it.next()),
          return: (value?: unknown) =>
            scope.run(
              () =>
                it.return?.(value) ??
                Promise.resolve({ done: true, value: undefined } as IteratorResult<T>),
            ),
          throw: (err?: unknown) => scope.run(() => it.throw?.(err) ?? Promise.reject(err)),
        };
      },
    };
  }
}
