import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { CAPABILITIES_DOC, withCurrentTable } from "../../scripts/capabilities.js";

describe("docs/capabilities.md", () => {
  it("shows the feature records the drivers declare (run `npm run docs:capabilities`)", () => {
    const doc = readFileSync(CAPABILITIES_DOC, "utf8");
    assert.equal(doc, withCurrentTable(doc));
  });
});
