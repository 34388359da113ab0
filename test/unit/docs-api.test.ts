/** docs/api/ is the reference typedoc generates from the current types (`npm run docs:api`). */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = fileURLToPath(new URL("../../", import.meta.url));
const typedoc = join(root, "node_modules", "typedoc", "bin", "typedoc");
const committed = join(root, "docs", "api");

function pages(dir: string): Map<string, string> {
  return new Map(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name), "utf8")]));
}

describe("docs/api", () => {
  const out = mkdtempSync(join(tmpdir(), "corral-docs-api-"));
  after(() => rmSync(out, { recursive: true, force: true }));

  it("matches the public entry's types (run `npm run docs:api`)", {
    timeout: 120_000,
  }, async () => {
    // argv array, no shell: the output directory is a temp path.
    await promisify(execFile)(process.execPath, [typedoc, "--out", out, "--logLevel", "Error"], {
      cwd: root,
    });
    const fresh = pages(out);
    const current = pages(committed);
    assert.deepEqual([...current.keys()].sort(), [...fresh.keys()].sort(), "the same pages");
    for (const [name, text] of fresh) assert.equal(current.get(name), text, name);
  });
});
