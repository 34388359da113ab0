/** dpkg's version ordering (deb-version(7)): epoch, then upstream, then revision. */
function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[0-9]/.test(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while (
      (i < a.length && !/[0-9]/.test(a[i] ?? "")) ||
      (j < b.length && !/[0-9]/.test(b[j] ?? ""))
    ) {
      const ac = order(i < a.length ? a[i] : undefined);
      const bc = order(j < b.length ? b[j] : undefined);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === "0") i++;
    while (b[j] === "0") j++;
    while (/[0-9]/.test(a[i] ?? "") && /[0-9]/.test(b[j] ?? "")) {
      if (firstDiff === 0) firstDiff = (a.charCodeAt(i) ?? 0) - (b.charCodeAt(j) ?? 0);
      i++;
      j++;
    }
    if (/[0-9]/.test(a[i] ?? "")) return 1;
    if (/[0-9]/.test(b[j] ?? "")) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

function split(v: string): [number, string, string] {
  const colon = v.indexOf(":");
  const epoch = colon > 0 ? Number(v.slice(0, colon)) : 0;
  const rest = colon > 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf("-");
  return dash > 0 ? [epoch, rest.slice(0, dash), rest.slice(dash + 1)] : [epoch, rest, ""];
}

export function compareDebianVersions(a: string, b: string): number {
  const [ea, ua, ra] = split(a);
  const [eb, ub, rb] = split(b);
  if (ea !== eb) return ea - eb;
  return verrevcmp(ua, ub) || verrevcmp(ra, rb);
}

/** "1:1.35.0-4+b3" -> "1.35.0": the upstream part, for human-readable image versions. */
export function upstreamVersion(v: string): string {
  return split(v)[1].replace(/[+~].*$/, "");
}
