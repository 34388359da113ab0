/** Checks of caller input before anything is sent to the guest; errors name the field. */
import { CorralError } from "../../errors.js";

export function invalid(field: string, message: string): CorralError {
  return new CorralError("INVALID_ARGUMENT", `${field}: ${message}`);
}

export function checkString(field: string, value: unknown, allowEmpty = false): string {
  if (typeof value !== "string") throw invalid(field, "must be a string");
  if (!allowEmpty && value.length === 0) throw invalid(field, "must not be empty");
  if (value.includes("\0")) throw invalid(field, "must not contain NUL bytes");
  return value;
}

export function checkAbsolutePath(field: string, value: unknown): string {
  const path = checkString(field, value);
  if (!path.startsWith("/"))
    throw invalid(field, `must be an absolute path, got ${JSON.stringify(path)}`);
  return path;
}

export function checkArgv(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid("argv", "must be a non-empty array of strings");
  }
  return value.map((arg, i) => checkString(`argv[${i}]`, arg, i > 0));
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkEnv(value: unknown): Array<[string, string]> {
  if (value === undefined) return [];
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("env", "must be an object of strings");
  }
  return Object.entries(value).map(([key, v]) => {
    if (!ENV_KEY.test(key))
      throw invalid(`env.${key}`, "variable names must match [A-Za-z_][A-Za-z0-9_]*");
    return [key, checkString(`env.${key}`, v, true)];
  });
}

const USER = /^(?:[0-9]+(?::[0-9]+)?|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/;

export function checkUser(value: unknown): string {
  const user = checkString("user", value);
  if (!USER.test(user)) throw invalid("user", "must be a user name or uid[:gid]");
  return user;
}

export function checkPositiveInt(field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw invalid(field, "must be a positive integer");
  }
  return value;
}

export function checkMode(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0o7777) {
    throw invalid("mode", "must be an integer between 0 and 0o7777");
  }
  return value;
}
