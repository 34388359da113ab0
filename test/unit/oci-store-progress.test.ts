import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pullProgressRenderer } from "../../src/cli/commands/image.js";

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  const stream = { isTTY, columns: 80, write: (s: string) => writes.push(s) > 0 };
  return { stream: stream as unknown as NodeJS.WriteStream, writes };
}

describe("pull progress rendering", () => {
  it("logs one line per finished layer when not on a terminal", () => {
    const { stream, writes } = fakeStream(false);
    const render = pullProgressRenderer(true, stream);
    render({ phase: "cached", label: "aaaaaaaaaaaa", current: 2048, total: 2048, done: true });
    render({ phase: "pull", label: "bbbbbbbbbbbb", current: 512, total: 4096 });
    render({ phase: "pull", label: "bbbbbbbbbbbb", current: 4096, total: 4096, done: true });
    render({ phase: "unpack", label: "bbbbbbbbbbbb", current: 4096, total: 4096, done: true });
    render({ phase: "ext4", label: "rootfs", current: 3, total: 3, done: true });
    assert.equal(writes.length, 3);
    assert.equal(writes[0], "aaaaaaaaaaaa: cached (2.0KiB)\n");
    assert.match(writes[1] ?? "", /^bbbbbbbbbbbb: pulled 4.0KiB\/4.0KiB in \d+\.\ds/);
    assert.equal(writes[2], "rootfs: ext4 image built\n");
  });

  it("redraws one line per layer in place on a terminal", () => {
    const { stream, writes } = fakeStream(true);
    const render = pullProgressRenderer(true, stream);
    render({ phase: "pull", label: "aaaaaaaaaaaa", current: 0, total: 1 << 20 });
    render({ phase: "pull", label: "bbbbbbbbbbbb", current: 1 << 20, total: 1 << 20, done: true });
    const last = writes.at(-1) ?? "";
    assert.ok(last.startsWith("\x1b[1A"), "moves up over the block it drew");
    assert.match(last, /aaaaaaaaaaaa: pulling 0B\/1\.0MiB/);
    assert.match(last, /bbbbbbbbbbbb: pulled 1\.0MiB\/1\.0MiB/);
  });

  it("prints nothing when disabled", () => {
    const { stream, writes } = fakeStream(false);
    pullProgressRenderer(false, stream)({ phase: "cached", label: "x", done: true });
    assert.equal(writes.length, 0);
  });
});
