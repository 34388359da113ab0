/** corral.events(): subscribed at the call, filtered by VM, ended by a signal or by return(). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { eventIterator } from "../../src/sdk/events.js";
import { VmEvents } from "../../src/vm/events.js";

describe("SDK events", () => {
  it("sees events emitted before the first next(), one VM's only", async () => {
    const events = new VmEvents();
    const it = eventIterator(events, { vm: "a" });
    events.emit({ type: "state", name: "b", state: "starting" });
    events.emit({ type: "state", name: "a", state: "starting" });
    events.notice("about no VM");
    events.emit({ type: "state", name: "a", state: "ready" });
    const first = await it.next();
    const second = await it.next();
    assert.deepEqual(
      [first.value, second.value].map((e) => (e?.type === "state" ? [e.name, e.state] : e)),
      [
        ["a", "starting"],
        ["a", "ready"],
      ],
    );
    await it.return?.();
  });

  it("ends a waiting reader when the signal aborts, and unsubscribes", async () => {
    const events = new VmEvents();
    const controller = new AbortController();
    const it = eventIterator(events, { signal: controller.signal });
    const pending = it.next();
    controller.abort();
    assert.deepEqual(await pending, { done: true, value: undefined });
    events.notice("after the end");
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  });

  it("ends on return() (a loop's break) and with a signal aborted before", async () => {
    const events = new VmEvents();
    const it = eventIterator(events, {});
    const pending = it.next();
    await it.return?.();
    assert.equal((await pending).done, true);
    const never = eventIterator(events, { signal: AbortSignal.abort() });
    events.notice("ignored");
    assert.equal((await never.next()).done, true);
  });

  it("keeps the newest events past its bound", async () => {
    const events = new VmEvents();
    const it = eventIterator(events, {});
    for (let i = 0; i < 1100; i++) events.notice(`n${i}`);
    const first = await it.next();
    assert.equal(first.value?.type === "notice" ? first.value.message : "", "n76");
    await it.return?.();
  });
});
