// HAProxy's Host → backend map (the shipped template routes L7 requests with
// `use_backend %[var(txn.host),map(<file>,gantry_no_route)]`): the file a reload
// loads, and the Runtime API commands that bring a running HAProxy's copy to
// the view without a reload (`add map`, `set map`, `del map`). Hosts are
// escaped DNS names and backends HAProxy identifiers (view.ts), so a line is
// always "<host> <backend>".
import type { HostRoute } from '../view.ts';

export function renderHostMap(routes: readonly HostRoute[]): string {
  let out = '# Written by gantry templater: Host -> backend. Do not edit: the next render replaces it.\n';
  for (const r of routes) out += `${r.host} ${r.backend}\n`;
  return out;
}

/** `show map <file>`: "<ref> <key> <value>" a line */
export function parseShowMap(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^0x[0-9a-f]+ (\S+) (\S+)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** the commands that make the running map equal the wanted routes */
export function planHostMap(file: string, wanted: readonly HostRoute[], current: ReadonlyMap<string, string>): string[] {
  const cmds: string[] = [];
  const want = new Map(wanted.map((r) => [r.host, r.backend]));
  // additions and changes first, so a moved name never has a gap; deletions last
  for (const [host, backend] of want) {
    const cur = current.get(host);
    if (cur === undefined) cmds.push(`add map ${file} ${host} ${backend}`);
    else if (cur !== backend) cmds.push(`set map ${file} ${host} ${backend}`);
  }
  for (const host of current.keys()) if (!want.has(host)) cmds.push(`del map ${file} ${host}`);
  return cmds;
}
