/**
 * An OCI image's config applies to every command run in it, as `docker exec` does: the image's
 * Env under the VM's env under the command's own, WorkingDir and User unless the command says
 * otherwise. `run IMAGE` without a command runs Entrypoint + Cmd; with one, Entrypoint + it.
 */
import type { ExecRequest } from "../protocols/agent/client.js";

export interface ImageConfig {
  env: string[];
  workingDir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
}

export function envFromList(list: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of list) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

export function applyImageConfig(
  req: ExecRequest,
  config: ImageConfig | undefined,
  vmEnv: Record<string, string>,
): ExecRequest {
  const env = { ...(config === undefined ? {} : envFromList(config.env)), ...vmEnv, ...req.env };
  return {
    ...req,
    env,
    cwd: req.cwd ?? (config?.workingDir === "" ? undefined : config?.workingDir),
    user: req.user ?? (config?.user === "" ? undefined : config?.user),
  };
}

/** The argv `run` uses: Docker's rules for Entrypoint and Cmd. Empty means nothing to run. */
export function commandFor(args: readonly string[], config: ImageConfig | undefined): string[] {
  const entrypoint = config?.entrypoint ?? [];
  if (args.length > 0) return [...entrypoint, ...args];
  return [...entrypoint, ...(config?.cmd ?? [])];
}

/** Where the agent serves the egress proxy inside every guest (agent/init/agent). */
export const GUEST_EGRESS_PROXY = "http://127.0.0.1:3128";

/**
 * With an allowlist, programs find the host-mediated proxy the usual way (both spellings:
 * curl reads only the lowercase http_proxy). Guest-local traffic stays direct.
 */
export function egressProxyEnv(spec: { allowHosts: readonly string[] }): Record<string, string> {
  if (spec.allowHosts.length === 0) return {};
  const noProxy = "localhost,127.0.0.1,::1";
  return {
    HTTP_PROXY: GUEST_EGRESS_PROXY,
    HTTPS_PROXY: GUEST_EGRESS_PROXY,
    http_proxy: GUEST_EGRESS_PROXY,
    https_proxy: GUEST_EGRESS_PROXY,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
  };
}
