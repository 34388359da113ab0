/** One deb822 stanza: field names as written (case kept), values with continuation lines joined by "\n". */
export type Stanza = Map<string, string>;

/**
 * Parses deb822 text (Release files, Packages indexes). Field names are matched
 * case-insensitively by `field()`, as Debian policy says they are.
 */
export function parseDeb822(text: string): Stanza[] {
  const stanzas: Stanza[] = [];
  let current: Stanza = new Map();
  let lastKey: string | undefined;
  const flush = () => {
    if (current.size > 0) stanzas.push(current);
    current = new Map();
    lastKey = undefined;
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      flush();
      continue;
    }
    if (line.startsWith("#")) continue;
    if (line.startsWith(" ") || line.startsWith("\t")) {
      if (lastKey !== undefined) {
        const cont = line.trim() === "." ? "" : line.slice(1);
        current.set(lastKey, `${current.get(lastKey) ?? ""}\n${cont}`);
      }
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    lastKey = line.slice(0, colon).toLowerCase();
    current.set(lastKey, line.slice(colon + 1).trim());
  }
  flush();
  return stanzas;
}

export function field(stanza: Stanza, name: string): string | undefined {
  return stanza.get(name.toLowerCase());
}
