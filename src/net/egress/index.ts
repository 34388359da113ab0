/** Egress: `--allow-host` rules, the allow/deny policy, and the host-side HTTP proxy. */

export {
  type AllowRule,
  type AllowRuleJson,
  DEFAULT_PORTS,
  type PortRange,
  parseAllowRule,
  parseAllowRules,
  ruleFromJson,
  ruleToJson,
  ruleToString,
} from "../../spec/allow-rules.js";
export {
  classifyAddress,
  type EgressDecision,
  EgressPolicy,
  type EgressPrecheck,
  type EgressTarget,
  parseRequestHost,
} from "./policy.js";
export {
  type EgressLogEntry,
  EgressProxy,
  type EgressProxyOptions,
  serveEgressConnection,
} from "./proxy.js";
