#!/usr/bin/env node
// Moves TypeScript modules (git mv) and rewrites every relative import of them across
// src/, test/ and bench/. Usage: node scripts/move-modules.mjs old.ts=new.ts ...
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const moves = new Map(
  process.argv.slice(2).map((arg) => {
    const [from, to] = arg.split("=");
    return [resolve(from), resolve(to)];
  }),
);
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.(ts|mts)$/.test(name)) files.push(resolve(path));
  }
};
for (const dir of ["src", "test", "bench"]) walk(dir);
const after = (path) => moves.get(path) ?? path;
const spec = (fromFile, target) => {
  let rel = relative(dirname(fromFile), target).replace(/\.ts$/, ".js");
  if (!rel.startsWith(".")) rel = `./${rel}`;
  return rel;
};
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const newFile = after(file);
  const out = text.replace(
    /((?:from|import)\s*\(?\s*")(\.{1,2}\/[^"]+)(")/g,
    (whole, pre, specifier, post) => {
      const target = resolve(dirname(file), specifier.replace(/\.js$/, ".ts"));
      if (!specifier.endsWith(".js")) return whole;
      return `${pre}${spec(newFile, after(target))}${post}`;
    },
  );
  if (out !== text) writeFileSync(file, out);
}
for (const [from, to] of moves) {
  mkdirSync(dirname(to), { recursive: true });
  execFileSync("git", ["mv", from, to]);
}
