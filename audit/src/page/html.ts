// The registry page, rendered on the server. Every value from Consul, a
// heartbeat or the audit stream goes through h() (HTML-escaped): a tag
// `<img src=x onerror=alert(1)>` is text. The page carries no inline script or
// style (the CSP forbids them); /app.js adds the live timeline.
import type { ServiceRecord } from '../catalog.ts';
import type { DriftReport } from '../drift.ts';
import type { AuditEntry } from '../entry.ts';
import type { OwnerLiveness } from '../writers.ts';

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** HTML-escapes text for element content and quoted attribute values. */
export function h(value: string | number | boolean | null | undefined): string {
  return String(value ?? '').replace(/[&<>"'`]/g, (c) => HTML_ESCAPES[c]!);
}

/** A query string built from parts, each component URL-encoded (then HTML-escaped where used). */
export function qs(params: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

export interface Filter { q: string; source: string; owner: string; health: string; service: string; page: number; pageSize: number }

/** Where an instance came from, as the page shows it. */
export function sourceOf(r: ServiceRecord): { kind: string; text: string } {
  const m = r.meta;
  const kind = m['gantry-source'] ?? (r.owner ? 'gantry' : 'unowned');
  switch (kind) {
    case 'docker':
      return { kind, text: `docker host ${m['docker-host'] ?? r.node} · container ${m['docker-container'] ?? m['gantry-origin'] ?? '?'}${m['docker-image'] ? ` · image ${m['docker-image']}` : ''}` };
    case 'kubernetes':
      return { kind, text: `kubernetes ${m['k8s-cluster'] ?? '?'}/${m['k8s-namespace'] ?? '?'}/${m['k8s-pod'] ?? m['k8s-service'] ?? '?'}` };
    case 'zookeeper':
      return { kind, text: `zookeeper znode ${m['zk-znode'] ?? m['gantry-origin'] ?? '?'}` };
    case 'static':
      return { kind, text: `static file ${m['static-file'] ?? m['gantry-origin'] ?? '?'}` };
    default:
      return { kind, text: r.owner ? `${kind} ${m['gantry-origin'] ?? ''}` : 'registered by hand or another tool' };
  }
}

export function matches(r: ServiceRecord, f: Filter): boolean {
  if (f.service && r.service !== f.service) return false;
  if (f.health && r.health !== f.health) return false;
  if (f.owner && (r.owner ?? '(unowned)') !== f.owner) return false;
  if (f.source && sourceOf(r).kind !== f.source) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    const hay = `${r.service} ${r.id} ${r.address}:${r.port} ${r.node} ${r.owner ?? ''} ${r.tags.join(' ')} ${Object.entries(r.meta).map(([k, v]) => `${k}=${v}`).join(' ')}`.toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}

function liveness(owner: string | undefined, owners: Map<string, OwnerLiveness>, now: number): string {
  if (!owner) return '<span class="muted">unowned</span>';
  const w = owners.get(owner);
  if (!w) return `${h(owner)} <span class="bad">no heartbeat</span>`;
  return w.alive ? `${h(owner)} <span class="ok">alive</span>` : `${h(owner)} <span class="bad">gone ${h(Math.round((now - Date.parse(w.lastSeen)) / 1000))}s</span>`;
}

/** The instance table (one page of it) with its pager: also served alone for live refresh. */
export function renderTable(records: ServiceRecord[], owners: Map<string, OwnerLiveness>, f: Filter, now: number): string {
  const rows = records.filter((r) => matches(r, f));
  const pages = Math.max(1, Math.ceil(rows.length / f.pageSize));
  const page = Math.min(Math.max(1, f.page), pages);
  const slice = rows.slice((page - 1) * f.pageSize, page * f.pageSize);
  const base = { q: f.q, source: f.source, owner: f.owner, health: f.health, service: f.service };
  const body = slice.map((r) => {
    const s = sourceOf(r);
    return `<tr data-service="${h(r.service)}" data-id="${h(r.id)}"><td><a href="/service/${h(encodeURIComponent(r.service))}">${h(r.service)}</a></td><td>${h(r.id)}</td><td>${h(r.address)}:${h(r.port)}</td>`
      + `<td class="src src-${h(s.kind)}">${h(s.text)}</td><td>${liveness(r.owner, owners, now)}</td><td class="health ${h(r.health)}">${h(r.health)}</td>`
      + `<td>${r.tags.map((t) => `<span class="tag">${h(t)}</span>`).join(' ')}</td><td class="meta">${Object.entries(r.meta).map(([k, v]) => `<div>${h(k)}=${h(v)}</div>`).join('')}</td></tr>`;
  }).join('\n');
  const link = (p: number, label: string): string => `<a href="/${h(qs({ ...base, page: p }))}">${h(label)}</a>`;
  const pager = `<p class="pager" id="pager">${rows.length} of ${records.length} instances · page ${page} of ${pages} ${page > 1 ? link(page - 1, '← previous') : ''} ${page < pages ? link(page + 1, 'next →') : ''}</p>`;
  return `${pager}<table id="instances"><thead><tr><th>service</th><th>instance</th><th>address</th><th>source</th><th>owner</th><th>health</th><th>tags</th><th>meta</th></tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** items of one drift list drawn on the page */
const SHOWN = 50;

export function renderDrift(d: DriftReport | undefined): string {
  if (!d) return '<section id="drift"><h2>Drift</h2><p class="muted">computing…</p></section>';
  // a list shows its first SHOWN items; the rest are counted (all of them: /api/drift)
  const parts: string[] = [];
  const sec = <T,>(title: string, cls: string, list: T[], item: (x: T) => string): void => {
    if (!list.length) return;
    const more = list.length > SHOWN ? `<li class="muted">… and ${list.length - SHOWN} more (<a href="/api/drift">all</a>)</li>` : '';
    parts.push(`<h3 class="${cls}">${h(title)} (${list.length})</h3><ul>${list.slice(0, SHOWN).map((x) => `<li>${item(x)}</li>`).join('')}${more}</ul>`);
  };
  sec('Orphans: owner gone', 'bad', d.orphans, (o) => `${h(o.service)} <code>${h(o.id)}</code> ${h(o.address)}:${h(o.port)} — owner ${h(o.owner)} ${o.lastSeen ? `gone ${h(Math.round((o.goneForMs ?? 0) / 1000))}s` : 'never sent a heartbeat'}${o.lastEntry ? ` — last entry ${h(o.lastEntry.time)} ${h(o.lastEntry.action)} (${h(o.lastEntry.reason)})` : ''}`);
  sec('Duplicate address:port', 'bad', d.duplicateAddresses, (g) => `${h(g.address)}:${h(g.port)} — ${g.records.map((r) => `${h(r.service)}/<code>${h(r.id)}</code>`).join(', ')}`);
  sec('Names claimed twice', 'bad', d.duplicateNames, (n) => `${h(n.kind)} <code>${h(n.name)}</code>: ${n.services.map((s) => h(s.service)).join(', ')} — ${h(n.winner)} keeps it (earliest registration)`);
  sec('No passing instance', 'bad', d.noPassing, (s) => `${h(s.service)} (${h(s.instances)} instances)${s.since ? ` since ${h(s.since)}` : ''}`);
  sec('Flapping checks', 'bad', d.flapping, (s) => `${h(s.service)} <code>${h(s.instance)}</code>: ${h(s.changes)} changes in the last hour`);
  sec('Refused registrations', 'bad', d.refused, (r) => `${h(r.time)} ${h(r.source)} ${h(r.originName || r.origin)}: ${h(r.reason)}`);
  sec('Bad heartbeats', 'bad', d.badHeartbeats, (b) => h(b.error));
  sec('Unowned (hand-registered or another tool; not drift)', 'muted', d.unowned, (r) => `${h(r.service)} <code>${h(r.id)}</code> ${h(r.address)}:${h(r.port)}`);
  const writers = d.writers.map((w) => `<li>${h(w.owner)} (${h(w.source)}, ${h(w.version)}) <span class="${w.alive ? 'ok' : 'bad'}">${w.alive ? 'alive' : 'gone'}</span> — last heartbeat ${h(w.lastSeen)}, last full pass ${h(w.lastFullPass ?? 'none')}</li>`).join('');
  return `<section id="drift" data-clean="${d.clean}"><h2>Drift: ${d.clean ? '<span class="ok">none</span>' : '<span class="bad">found</span>'}</h2><p class="muted">computed ${h(d.generatedAt)} over ${h(d.counts.instances)} instances</p>${parts.join('')}<h3>Writers</h3><ul id="writers">${writers}</ul></section>`;
}

export function renderEntry(e: AuditEntry & { id: string }): string {
  return `<li data-id="${h(e.id)}"><time>${h(e.time)}</time> <b>${h(e.action)}</b> <a href="/service/${h(encodeURIComponent(e.service))}">${h(e.service)}</a> <code>${h(e.instance)}</code> ${h(e.source)} ${h(e.originName)} ${e.host ? `on ${h(e.host)}` : ''} — ${h(e.reason)} by ${h(e.owner)}${e.status ? ` status ${h(e.status)}` : ''}${e.error ? ` <span class="bad">${h(e.error)}</span>` : ''}${e.detail ? ` ${h(e.detail)}` : ''}</li>`;
}

function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${h(title)}</title><link rel="stylesheet" href="/style.css"><script src="/app.js" defer></script></head><body>${body}</body></html>`;
}

export function renderIndex(o: { records: ServiceRecord[]; owners: Map<string, OwnerLiveness>; drift: DriftReport | undefined; entries: Array<AuditEntry & { id: string }>; filter: Filter; now: number; readError: string | null }): string {
  const f = o.filter;
  const opt = (value: string, current: string, label = value): string => `<option value="${h(value)}"${value === current ? ' selected' : ''}>${h(label)}</option>`;
  const ownersList = [...new Set(o.records.map((r) => r.owner ?? '(unowned)'))].sort();
  const form = `<form id="filter" method="get" action="/"><input type="search" name="q" value="${h(f.q)}" placeholder="search service, id, address, tag, meta"> `
    + `<select name="source">${opt('', f.source, 'any source')}${['docker', 'kubernetes', 'zookeeper', 'static', 'unowned'].map((s) => opt(s, f.source)).join('')}</select> `
    + `<select name="health">${opt('', f.health, 'any health')}${['passing', 'warning', 'critical'].map((s) => opt(s, f.health)).join('')}</select> `
    + `<select name="owner">${opt('', f.owner, 'any owner')}${ownersList.map((s) => opt(s, f.owner)).join('')}</select> `
    + `<input type="text" name="service" value="${h(f.service)}" placeholder="service"> <button type="submit">filter</button></form>`;
  const timeline = `<section id="timeline-box"><h2>Timeline <span id="live" class="muted">(live)</span></h2><ol id="timeline" reversed>${[...o.entries].reverse().slice(0, 50).map(renderEntry).join('')}</ol></section>`;
  const err = o.readError ? `<p class="bad" id="read-error">registry read failed: ${h(o.readError)}</p>` : '';
  return layout('Gantry registry', `<header><h1>Gantry registry</h1><p class="muted">read-only · ${h(o.records.length)} instances · <a href="/api/drift">drift JSON</a></p></header>${err}<main><section id="registry">${form}<div id="table">${renderTable(o.records, o.owners, f, o.now)}</div></section>${renderDrift(o.drift)}${timeline}</main>`);
}

export function renderService(o: { name: string; records: ServiceRecord[]; owners: Map<string, OwnerLiveness>; entries: Array<AuditEntry & { id: string }>; now: number }): string {
  const mine = o.records.filter((r) => r.service === o.name);
  const hist = o.entries.filter((e) => e.service === o.name).reverse();
  const f: Filter = { q: '', source: '', owner: '', health: '', service: o.name, page: 1, pageSize: 1000 };
  return layout(`${o.name} — Gantry registry`, `<header><h1>Service ${h(o.name)}</h1><p><a href="/">← all services</a></p></header><main><section><h2>Instances (${mine.length})</h2>${renderTable(mine, o.owners, f, o.now)}</section>`
    + `<section><h2>History: who registered or deregistered it, when, why (${hist.length})</h2><ol id="history" reversed>${hist.map(renderEntry).join('')}</ol></section></main>`);
}
