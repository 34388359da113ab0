/** The driver conformance suite against QEMU: real VMs under TCG here (KVM where a host has it). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QemuDriver } from "../../src/drivers/qemu/driver.js";
import { runRoot } from "../../src/paths/layout.js";
import { conformanceSuite } from "../conformance/suite.js";

let stateDir: string | undefined;

conformanceSuite({
  label: "qemu",
  driver: () => new QemuDriver(),
  async prepare() {
    // A private state directory; the image cache is the one `corral setup` filled.
    stateDir = mkdtempSync(join(tmpdir(), "corral-conformance-"));
    process.env.CORRAL_STATE_DIR = stateDir;
    return stateDir;
  },
  async teardown() {
    if (stateDir === undefined) return;
    rmSync(runRoot(), { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  },
  // corral's default image runs from its initramfs: every directory lives in guest memory.
  scratch: () => "/tmp/conformance",
});
