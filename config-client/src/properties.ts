// Java .properties text (java.util.Properties.load): comments with # or !,
// `key=value`, `key: value` or `key value`, lines continued with a trailing
// backslash, and the \t \n \r \f \uXXXX escapes. Later duplicates win.

export class PropertiesError extends Error {
  override readonly name = 'PropertiesError';
}

/** The key/value pairs of a properties text, in order; throws PropertiesError on a malformed \u escape. */
export function parseProperties(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1;
    let line = stripLeading(lines[i]!);
    if (line === '' || line[0] === '#' || line[0] === '!') continue;
    while (endsWithOddBackslashes(line) && i + 1 < lines.length) {
      line = line.slice(0, -1) + stripLeading(lines[++i]!);
    }
    if (endsWithOddBackslashes(line)) line = line.slice(0, -1);
    const { key, rest } = splitKey(line);
    out.set(unescape(key, first), unescape(rest, first));
  }
  return out;
}

function stripLeading(s: string): string {
  return s.replace(/^[ \t\f]+/, '');
}

function endsWithOddBackslashes(s: string): boolean {
  let n = 0;
  for (let i = s.length - 1; i >= 0 && s[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

/** The key ends at the first unescaped '=', ':' or blank; one separator and the blanks around it are dropped. */
function splitKey(line: string): { key: string; rest: string } {
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '\\') { i += 2; continue; }
    if (c === '=' || c === ':' || c === ' ' || c === '\t' || c === '\f') break;
    i++;
  }
  const key = line.slice(0, Math.min(i, line.length));
  let j = i;
  while (j < line.length && (line[j] === ' ' || line[j] === '\t' || line[j] === '\f')) j++;
  if (j < line.length && (line[j] === '=' || line[j] === ':')) j++;
  while (j < line.length && (line[j] === ' ' || line[j] === '\t' || line[j] === '\f')) j++;
  return { key, rest: line.slice(j) };
}

const SIMPLE: Record<string, string> = { t: '\t', n: '\n', r: '\r', f: '\f' };

function unescape(s: string, line: number): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') { out += c; continue; }
    const n = s[++i];
    if (n === undefined) break;
    if (n === 'u') {
      const hex = s.slice(i + 1, i + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new PropertiesError(`line ${line}: malformed \\uXXXX escape ${JSON.stringify(`\\u${hex}`)}`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 4;
      continue;
    }
    out += SIMPLE[n] ?? n;
  }
  return out;
}
