/**
 * corral's layers (docs/ARCHITECTURE.md): each folder of src/ may import only itself and the
 * folders before it in LAYERS. A total order, so no two folders can ever import each other
 * (no folder cycles). Type-only imports count too: a type from above is a dependency on above.
 */
const LAYERS = [
  "errors", // src/errors.ts: CorralError, kinds, codes
  "base", // atomic files, locks, processes, waits, progress: no corral concepts
  "paths", // the one module that owns every on-disk path
  "host", // host tools: PATH lookup, apt, the shim build
  "protocols", // wire formats: OCI distribution, ISO9660, hybrid vsock, the agent protocol
  "spec", // the VM spec (zod), the one source of truth; validates with protocol parsers
  "images", // guest images: Debian archive, default image, OCI store, cloud-init seeds
  "net", // egress policy and proxy, the L2 switch, host ports
  "guest", // the host side of the guest, the same on every backend
  "drivers", // Driver/Machine contract, registry, one folder per backend
  "setup", // corral setup and doctor: what each backend needs on this host
  "vm", // lifecycle: store, states, boot steps, stop, snapshots; knows Machine, never QMP
  "daemon", // the per-user daemon: forwards, egress proxies, switches, pools
  "sdk", // the SDK's classes, composed from everything below
  "index", // src/index.ts: the public entry
  "cli", // commander + rendering; imports only the public entry
];
const pathOf = (layer) =>
  layer === "errors" || layer === "index" ? `^src/${layer}\\.ts$` : `^src/${layer}/`;

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer}`,
  comment: `${layer} may import only the layers below it (${LAYERS.slice(0, i).join(", ") || "none"})`,
  severity: "error",
  from: { path: pathOf(layer) },
  to: { path: LAYERS.slice(i + 1).map(pathOf) },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: "cli-uses-the-public-entry",
      comment: "the CLI is a client of the SDK: it imports src/index.ts and its own files only",
      severity: "error",
      from: { path: "^src/cli/" },
      to: { path: "^src/", pathNot: ["^src/cli/", "^src/index\\.ts$"] },
    },
    {
      name: "no-circular",
      comment: "no import cycles between files",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "no-unknown-folder",
      comment: "every file of src/ belongs to a layer: add new folders to LAYERS",
      severity: "error",
      from: { path: "^src/", pathNot: LAYERS.map(pathOf) },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^(dist|node_modules)/" },
  },
};
