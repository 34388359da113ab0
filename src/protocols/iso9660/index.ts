export { JOLIET_MAX_NAME, VOLUME_ID_PATTERN } from "./names.js";
export {
  buildIso,
  DEFAULT_CREATED_AT,
  type IsoFile,
  type IsoOptions,
  MAX_ISO_BYTES,
} from "./writer.js";
