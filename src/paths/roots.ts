/**
 * Where corral keeps things, and the settings it reads from the environment, as one value
 * read once. The CLI and old callers read `process.env` on every call (layout.ts falls back to
 * it); an SDK instance (`new Corral({ stateDir })`) reads it once, in its constructor, and runs
 * each of its operations inside `withRoots`, so every path the layers below compute comes from
 * that instance. AsyncLocalStorage instead of a parameter through every function: the roots
 * reach the ~40 places that compute paths (three layers deep, in vm/ and drivers/ too) without
 * changing their signatures, and two instances with different state directories can run in
 * one process at once, each operation seeing its own.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { homedir, userInfo } from "node:os";
import { join } from "node:path";

/** The environment as corral reads it: names to values (unset = undefined). */
export type Environment = Readonly<Record<string, string | undefined>>;

export interface CorralRoots {
  /** Downloads, built images, pulled OCI images, compiled helpers. */
  cacheDir: string;
  /** VMs, snapshots, pools, the daemon's log. */
  stateDir: string;
  /**
   * Where sockets go (must be short: unix socket paths hold 104 bytes on macOS). Default:
   * `$XDG_RUNTIME_DIR/corral` when short, else `/tmp/corral-<uid>`.
   */
  runtimeBase?: string;
  /**
   * The other settings corral reads from the environment (PATH for host tools,
   * CORRAL_DEBIAN_MIRROR, CORRAL_DEBIAN_KEYRING, DOCKER_CONFIG), captured with the roots.
   */
  env?: Environment;
}

/** Above this a runtime directory would push socket paths past the limit (see layout.ts). */
const RUNTIME_DIR_MAX = 40;

function value(env: Environment, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** $HOME of `env` (os.homedir() would read process.env's, or the password database). */
function home(env: Environment): string {
  return value(env, "HOME") ?? homedir();
}

export function defaultCacheDir(env: Environment): string {
  return (
    value(env, "CORRAL_CACHE_DIR") ??
    join(value(env, "XDG_CACHE_HOME") ?? join(home(env), ".cache"), "corral")
  );
}

export function defaultStateDir(env: Environment): string {
  return (
    value(env, "CORRAL_STATE_DIR") ??
    join(value(env, "XDG_STATE_HOME") ?? join(home(env), ".local", "state"), "corral")
  );
}

/**
 * $CORRAL_RUNTIME_DIR (what a parent passes to the daemon it spawns), else
 * $XDG_RUNTIME_DIR/corral when it is short, else /tmp/corral-<uid> (22 bytes at most). Never
 * $TMPDIR: on macOS it is /var/folders/<2>/<30>/T/, about 50 bytes.
 */
export function defaultRuntimeBase(env: Environment): string {
  const explicit = value(env, "CORRAL_RUNTIME_DIR");
  if (explicit !== undefined) return explicit;
  const xdg = value(env, "XDG_RUNTIME_DIR");
  if (xdg !== undefined && Buffer.byteLength(xdg) < RUNTIME_DIR_MAX) return join(xdg, "corral");
  return join("/tmp", `corral-${userInfo().uid}`);
}

/** The roots and settings `env` names, copied (later changes to `env` are not seen). */
export function rootsFromEnv(env: Environment = process.env): Required<CorralRoots> {
  return {
    cacheDir: defaultCacheDir(env),
    stateDir: defaultStateDir(env),
    runtimeBase: defaultRuntimeBase(env),
    env: Object.freeze({ ...env }),
  };
}

const storage = new AsyncLocalStorage<Required<CorralRoots>>();

/**
 * Runs `fn` with `roots` in force for everything it does, asynchronous continuations
 * included (timers and callbacks it schedules keep them too).
 */
export function withRoots<T>(roots: CorralRoots, fn: () => T): T {
  const env = roots.env ?? process.env;
  return storage.run(
    {
      cacheDir: roots.cacheDir,
      stateDir: roots.stateDir,
      runtimeBase: roots.runtimeBase ?? defaultRuntimeBase(env),
      env: roots.env ?? Object.freeze({ ...env }),
    },
    fn,
  );
}

/** The roots of the SDK operation in progress; undefined outside one (the CLI, old callers). */
export function activeRoots(): Required<CorralRoots> | undefined {
  return storage.getStore();
}

/** A setting from the environment in force (the SDK instance's snapshot, else process.env). */
export function setting(name: string): string | undefined {
  const store = storage.getStore();
  return value(store === undefined ? process.env : store.env, name);
}

/** The environment in force, for a child that must see the same settings (the daemon). */
export function currentEnv(): Environment {
  return storage.getStore()?.env ?? process.env;
}
