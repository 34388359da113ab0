/** Egress: `--allow-host` rules, the allow/deny policy, and the host-side HTTP proxy. */
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
} from "./rules.js";
