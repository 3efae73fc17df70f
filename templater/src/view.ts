// The view model templates see, built from the watcher's snapshot:
//   services — every Consul service, with its instances in the health asked for
//              (passing | warning | any), tags and meta, as Consul holds them (raw)
//   groups   — what a shipped template serves: a service, or a service of one
//              tenant (tenant from a tag or meta), with its DNS name, HAProxy backend
//              name, L4 port and VIP, extra hosts and paths from tags, and its
//              instances laid out in stable server slots
//   http/tcp — the groups served at L7 (by Host) and at L4 (by VIP:port)
//   kv       — the KV pairs under the watched prefix
//   settings — the operator's values from the templater config (trusted)
// Strings from Consul stay raw in services/instances (templates escape them with
// helpers); what a group carries ready to write (fqdn, backend, aliases, hosts,
// address, port, vip) has been validated or escaped here through core/escape.ts,
// and what could not be made safe is left out, counted and logged.
import { isIP } from 'node:net';
import { escapeDnsLabel, escapeDnsName, escapeHAProxyIdentifier, escapeHAProxyValue, escapeLogField, type CatalogInstance, type CatalogSnapshot, type HealthStatus } from '@gantry/core';
import { tagValuesOf } from './render/helpers.ts';

export type HealthFilter = 'passing' | 'warning' | 'any';
export type NameLayout = 'dash' | 'dot' | 'dot-bare';
export const NAME_LAYOUTS: readonly NameLayout[] = ['dash', 'dot', 'dot-bare'];

export interface ViewOptions {
  health: HealthFilter;
  /** the DNS domain names are made under, e.g. gantry.test */
  domain: string;
  /**
   * how a tenant's service is named: dash `<tenant>-<service>.<domain>` (the default),
   * dot `<tenant>.<service>.<domain>`, dot-bare `<tenant>.<service>` (seed 000's
   * `developer1.redis`); the other forms stay as aliases. A service without a
   * tenant is `<service>.<domain>` in every layout.
   */
  nameLayout?: NameLayout | undefined;
  /** tag prefix for L4: "gantry.tcp" reads "gantry.tcp=6379"; meta key "gantry-tcp" too */
  tcpTag: string;
  /** tag prefix for the tenant: "gantry.tenant=developer1"; meta key "gantry-tenant" too */
  tenantTag: string;
  /** tag prefix for extra L7 host names: "gantry.host=api.example.com" */
  hostTag: string;
  /**
   * where a host name from a tag may be: inside domain, or inside one of these
   * suffixes (--allow-host-suffix); any other name is refused and reported (a
   * container is not trusted to take over a name)
   */
  allowHostSuffixes?: readonly string[] | undefined;
  /** tag prefix for L7 path prefixes: "gantry.path=/orders" */
  pathTag: string;
  /** server slots a backend starts with (it grows as needed, never shrinks while running) */
  minSlots: number;
  /** operator values the templates read as settings.* */
  settings: Record<string, unknown>;
}

export interface InstanceView {
  key: string;
  id: string;
  node: string;
  address: string;
  port: number;
  status: HealthStatus;
  tags: readonly string[];
  meta: Readonly<Record<string, string>>;
  tenant: string | null;
}

export interface ServiceView {
  name: string;
  tags: string[];
  /** meta values every instance agrees on */
  meta: Record<string, string>;
  /** instances in the health asked for */
  instances: InstanceView[];
  /** instances in any health */
  all: InstanceView[];
}

export interface SlotView {
  /** server name in the backend: s1, s2 ... */
  name: string;
  instance: InstanceView | null;
  /** validated address and port of the instance, or null for an empty slot */
  address: string | null;
  port: number | null;
}

export interface GroupView {
  /** "service" or "tenant/service" */
  key: string;
  service: string;
  tenant: string | null;
  /** escaped DNS label: "<tenant>-<service>" or "<service>" */
  label: string;
  /** the name clients use, in the operator's layout (label.domain by default) */
  fqdn: string;
  /** the tenant's other names for the same address (the layouts not chosen) */
  aliases: string[];
  /** HAProxy backend name: l7_<fqdn> or l4_<fqdn>, or the spare backend it was given (gantry_spare_<n>) */
  backend: string;
  /** true when the group lives in a spare backend (a new service served without a reload) */
  spare: boolean;
  mode: 'http' | 'tcp';
  tcpPort: number | null;
  vip: string | null;
  /** extra Host names (escaped DNS names) from host tags */
  hosts: string[];
  /** every Host the group answers to: fqdn, aliases, hosts */
  matchHosts: string[];
  /** path prefixes from path tags, each checked to be a valid HAProxy value */
  paths: string[];
  tags: string[];
  instances: InstanceView[];
  slots: SlotView[];
}

export interface View {
  services: ServiceView[];
  /** services by name (no prototype: a service named "constructor" is just a name) */
  service: Record<string, ServiceView>;
  groups: GroupView[];
  /** every L7 group (in its own backend or a spare one) */
  http: GroupView[];
  tcp: GroupView[];
  /** the L7 groups written as their own backend (retired ones included) */
  l7Backends: GroupView[];
  /**
   * own backends of L7 groups that left the catalog since the last reload: still in
   * l7Backends with every slot empty, in no host map, group or hosts list (the Runtime
   * API empties them; the next reload's compact layout drops them)
   */
  retired: GroupView[];
  /** the spare L7 backends the config holds, each with the group it serves (or none) */
  spares: SpareView[];
  /** Host → backend, for HAProxy's host map (every name of every L7 group) */
  hostMap: HostRoute[];
  /** groups that need a reload for a backend of their own (no spare left, or path routes) */
  overflow: string[];
  /** host names from tags claimed by more than one service: who keeps each, who was refused */
  hostConflicts: HostConflict[];
  kv: Record<string, string>;
  health: HealthFilter;
  domain: string;
  settings: Record<string, unknown>;
}

export interface SpareView {
  backend: string;
  group: string | null;
  slots: SlotView[];
}

export interface HostRoute { host: string; backend: string }

/** one claim on a host name from a tag: which registration made it */
export interface Claim { group: string; service: string; instance: string; createIndex: number }
export interface HostConflict { host: string; kept: Claim; refused: Claim[] }

/** Consul's CreateIndex of the registration; unknown (0) sorts last */
const createIndexOf = (inst: CatalogInstance): number => (inst.createIndex > 0 ? inst.createIndex : Number.MAX_SAFE_INTEGER);

export interface Skip { reason: string; subject: string; detail: string }

/** Where an L7 group is served: its own backend, a spare one, or nowhere until a reload (overflow). */
export type Route = { backend: string; spare: boolean } | 'overflow';

/** Hooks for the stateful parts: VIP, slot and spare backend assignment. */
export interface ViewAssign {
  vip(groupKey: string): string | null;
  slots(backend: string, instances: InstanceView[]): SlotView[];
  /** the spare backends and where each L7 group goes; none: every group in its own backend, no spares */
  routes?: {
    route(g: GroupView): Route;
    spares(): string[];
    /** the group of a spare backend after routing, or null */
    groupOf(spare: string): string | null;
    /** own groups of the running config missing from this view (their backends stay, emptied) */
    retired?(present: ReadonlySet<string>): GroupView[];
  } | undefined;
}

const allowed: Record<HealthFilter, ReadonlySet<HealthStatus>> = {
  passing: new Set(['passing']),
  warning: new Set(['passing', 'warning']),
  any: new Set(['passing', 'warning', 'critical']),
};

export const metaKeyOf = (tagPrefix: string): string => tagPrefix.replace(/[^A-Za-z0-9_-]/g, '-');

function firstValue(inst: CatalogInstance, tagPrefix: string, metaKey: string): string | undefined {
  if (inst.tags.length) {
    const p = `${tagPrefix}=`;
    for (const t of inst.tags) if (t.startsWith(p)) return t.slice(p.length);
  }
  return Object.prototype.hasOwnProperty.call(inst.meta, metaKey) ? inst.meta[metaKey] : undefined;
}

function parsePort(v: string | undefined): number | null | 'bad' {
  if (v === undefined) return null;
  if (!/^\d{1,5}$/.test(v)) return 'bad';
  const n = Number(v);
  return n >= 1 && n <= 65535 ? n : 'bad';
}

/** an address HAProxy and a hosts file can take as is: an IP, or a host name that needs no escaping */
export function validAddress(a: string): boolean {
  if (isIP(a) !== 0) return true;
  const r = escapeDnsName(a);
  return r.ok && !r.changed && a.length <= 253;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function buildView(snap: CatalogSnapshot, o: ViewOptions, assign: ViewAssign, skip: (s: Skip) => void = () => undefined): View {
  const ok = allowed[o.health];
  const suffixes = (o.allowHostSuffixes ?? []).map((x) => x.replace(/^\.+/, '').toLowerCase()).filter(Boolean);
  const inside = (h: string, d: string): boolean => h === d || h.endsWith(`.${d}`);
  const hostAllowed = (h: string): boolean => inside(h, o.domain) || suffixes.some((x) => inside(h, x));
  const metaKey = { tenant: metaKeyOf(o.tenantTag), tcp: metaKeyOf(o.tcpTag), host: metaKeyOf(o.hostTag) };
  const services: ServiceView[] = [];
  const byName: Record<string, ServiceView> = Object.create(null) as Record<string, ServiceView>;
  interface Pending { key: string; service: string; serviceLabel: string; tenant: string | null; label: string; instances: InstanceView[]; tcpPorts: number[]; hosts: Map<string, Claim>; paths: Set<string>; tags: Set<string>; exact: boolean }
  const pending = new Map<string, Pending>();

  for (const [name, list] of snap.services) {
    if (name === 'consul') continue; // Consul's own servers are not a workload
    const all: InstanceView[] = [];
    const serviceLabel = escapeDnsLabel(name);
    if (!serviceLabel.ok) skip({ reason: 'service_name', subject: name, detail: serviceLabel.reason });
    for (const inst of list) {
      const tenantRaw = firstValue(inst, o.tenantTag, metaKey.tenant);
      let tenant: string | null = null;
      if (tenantRaw !== undefined) {
        const t = escapeDnsLabel(tenantRaw);
        if (!t.ok) { skip({ reason: 'tenant', subject: name, detail: t.reason }); continue; }
        tenant = t.value;
      }
      const view: InstanceView = { key: inst.key, id: inst.id, node: inst.node, address: inst.address, port: inst.port, status: inst.status, tags: inst.tags, meta: inst.meta, tenant };
      all.push(view);
      if (!serviceLabel.ok) continue;
      // groups: one a (tenant, service)
      const gkey = tenant ? `${tenant}/${name}` : name;
      let g = pending.get(gkey);
      if (!g) {
        const label = escapeDnsLabel(tenant ? `${tenant}-${serviceLabel.value}` : serviceLabel.value);
        if (!label.ok) { skip({ reason: 'service_name', subject: name, detail: label.reason }); continue; }
        g = { key: gkey, service: name, serviceLabel: serviceLabel.value, tenant, label: label.value, instances: [], tcpPorts: [], hosts: new Map(), paths: new Set(), tags: new Set(), exact: !serviceLabel.changed };
        pending.set(gkey, g);
      }
      for (const t of inst.tags) g.tags.add(t);
      const tcp = parsePort(firstValue(inst, o.tcpTag, metaKey.tcp));
      if (tcp === 'bad') skip({ reason: 'tcp_port', subject: name, detail: `${o.tcpTag} of instance ${escapeLogField(inst.id, 80)} is not a port` });
      else if (tcp !== null) g.tcpPorts.push(tcp);
      const hostMeta = Object.prototype.hasOwnProperty.call(inst.meta, metaKey.host) ? [inst.meta[metaKey.host]!] : [];
      for (const h of inst.tags.length || hostMeta.length ? [...tagValuesOf(inst.tags, o.hostTag), ...hostMeta] : []) {
        const r = escapeDnsName(h.toLowerCase());
        if (!r.ok || h.length > 253 || !h.includes('.')) { skip({ reason: 'host_tag', subject: name, detail: r.ok ? 'not a dotted host name' : r.reason }); continue; }
        if (!hostAllowed(r.value)) {
          skip({ reason: 'host_outside', subject: `${name}\u0000${r.value}`, detail: `host ${r.value} of service ${escapeLogField(name, 80)} instance ${escapeLogField(inst.id, 80)} is outside --domain ${o.domain}${suffixes.length ? ` and --allow-host-suffix ${suffixes.join(',')}` : ' (no --allow-host-suffix given)'}; refused` });
          continue;
        }
        const claim: Claim = { group: gkey, service: name, instance: inst.id, createIndex: createIndexOf(inst) };
        const prev = g.hosts.get(r.value);
        if (!prev || claim.createIndex < prev.createIndex) g.hosts.set(r.value, claim);
      }
      for (const p of inst.tags.length ? tagValuesOf(inst.tags, o.pathTag) : []) {
        if (p.startsWith('/') && escapeHAProxyValue(p).ok) g.paths.add(p);
        else skip({ reason: 'path_tag', subject: name, detail: 'not a path starting with / without control characters' });
      }
      if (!ok.has(inst.status)) continue;
      if (!validAddress(inst.address)) { skip({ reason: 'address', subject: name, detail: `instance ${escapeLogField(inst.id, 80)} address ${JSON.stringify(escapeLogField(inst.address, 80))} is neither an IP nor a host name` }); continue; }
      if (!Number.isInteger(inst.port) || inst.port < 1 || inst.port > 65535) { skip({ reason: 'port', subject: name, detail: `instance ${escapeLogField(inst.id, 80)} has port ${inst.port}` }); continue; }
      g.instances.push(view);
    }
    const instances = all.filter((i) => ok.has(i.status));
    const tags = [...new Set(all.flatMap((i) => i.tags))].sort(cmp);
    const meta: Record<string, string> = Object.create(null) as Record<string, string>;
    const first = all[0];
    if (first) for (const [k, v] of Object.entries(first.meta)) if (all.every((i) => i.meta[k] === v)) meta[k] = v;
    const sv: ServiceView = { name, tags, meta, instances, all };
    services.push(sv);
    byName[name] = sv;
  }

  // one DNS name, one group: an exact name (no escaping needed) wins over an escaped one, then the first by key
  const groups: GroupView[] = [];
  const taken = new Map<string, string>();
  const ordered = [...pending.values()].sort((a, b) => Number(b.exact) - Number(a.exact) || cmp(a.key, b.key));
  for (const g of ordered) {
    const { fqdn, aliases } = namesOf(g, o);
    if (fqdn.length > 253) { skip({ reason: 'service_name', subject: g.service, detail: 'DNS name longer than 253' }); continue; }
    const holder = taken.get(fqdn);
    if (holder !== undefined) { skip({ reason: 'name_collision', subject: g.service, detail: `${fqdn} is already the name of ${escapeLogField(holder, 80)}` }); continue; }
    taken.set(fqdn, g.key);
    const mode = g.tcpPorts.length ? 'tcp' : 'http';
    const backendRaw = `${mode === 'tcp' ? 'l4' : 'l7'}_${fqdn}`;
    const backend = escapeHAProxyIdentifier(backendRaw);
    if (!backend.ok) { skip({ reason: 'service_name', subject: g.service, detail: backend.reason }); continue; }
    const instances = g.instances.sort((a, b) => cmp(a.key, b.key));
    groups.push({
      key: g.key, service: g.service, tenant: g.tenant, label: g.label, fqdn,
      aliases,
      backend: backend.value, spare: false, mode,
      tcpPort: mode === 'tcp' ? Math.min(...g.tcpPorts) : null,
      vip: mode === 'tcp' ? assign.vip(g.key) : null,
      hosts: [...g.hosts.keys()].sort(cmp),
      paths: [...g.paths].sort(cmp),
      matchHosts: [],
      tags: [...g.tags].sort(cmp),
      instances,
      slots: [],
    });
  }
  groups.sort((a, b) => cmp(a.fqdn, b.fqdn));
  // an alias is one group's only: not another group's name, not claimed twice
  const claimed = new Set(taken.keys());
  for (const g of groups) g.aliases = g.aliases.filter((a) => !claimed.has(a) && (claimed.add(a), true));
  // a host from a tag: never a generated name; claimed by two groups, the earliest registration
  // (Consul's CreateIndex, then the group key) keeps it, and the conflict is reported
  const claims = new Map<string, Claim[]>();
  for (const g of ordered) for (const [h, c] of g.hosts) claims.set(h, [...(claims.get(h) ?? []), c]);
  const winner = new Map<string, string>();
  const hostConflicts: HostConflict[] = [];
  const inView = new Set(groups.map((g) => g.key));
  for (const [h, list] of [...claims].sort((a, b) => cmp(a[0], b[0]))) {
    list.sort((a, b) => a.createIndex - b.createIndex || cmp(a.group, b.group));
    const present = list.filter((c) => inView.has(c.group));
    if (claimed.has(h)) {
      for (const c of present) skip({ reason: 'host_tag', subject: `${c.service}\u0000${h}`, detail: `host ${h} of service ${escapeLogField(c.service, 80)} instance ${escapeLogField(c.instance, 80)} is the generated name of another service; refused` });
      continue;
    }
    const [first, ...rest] = present;
    if (!first) continue;
    winner.set(h, first.group);
    if (rest.length) {
      hostConflicts.push({ host: h, kept: first, refused: rest });
      for (const c of rest) skip({ reason: 'host_conflict', subject: `${c.service}\u0000${h}`, detail: `host ${h} claimed by service ${escapeLogField(c.service, 80)} instance ${escapeLogField(c.instance, 80)} (CreateIndex ${c.createIndex}) is kept by service ${escapeLogField(first.service, 80)} instance ${escapeLogField(first.instance, 80)} (CreateIndex ${first.createIndex}), the earlier registration` });
    }
  }
  for (const g of groups) g.hosts = g.hosts.filter((h) => winner.get(h) === g.key);
  const overflow: string[] = [];
  const byKey = new Map(groups.map((g) => [g.key, g]));
  for (const g of groups) {
    g.matchHosts = [g.fqdn, ...g.aliases, ...g.hosts];
    if (g.mode === 'http' && assign.routes) {
      const r = assign.routes.route(g);
      if (r === 'overflow') overflow.push(g.key);
      else { g.backend = r.backend; g.spare = r.spare; }
    }
    g.slots = overflow.at(-1) === g.key ? [] : assign.slots(g.backend, g.instances);
    // an L4 group without a VIP (pool exhausted, reported by the pool's keeper) is kept out of tcp and hosts
  }
  const overflowing = new Set(overflow);
  const routed = (g: GroupView): boolean => g.mode === 'http' && !overflowing.has(g.key);
  const spares: SpareView[] = (assign.routes?.spares() ?? []).map((backend) => {
    const key = assign.routes!.groupOf(backend);
    const g = key === null ? undefined : byKey.get(key);
    return { backend, group: g ? g.key : null, slots: g ? g.slots : assign.slots(backend, []) };
  });
  const backendsTaken = new Set(groups.map((g) => g.backend));
  const retired = (assign.routes?.retired?.(new Set(byKey.keys())) ?? [])
    .filter((g) => !backendsTaken.has(g.backend))
    .map((g): GroupView => ({ ...g, instances: [], slots: assign.slots(g.backend, []) }));
  const hostMap: HostRoute[] = [];
  for (const g of groups) if (routed(g)) for (const h of g.matchHosts) hostMap.push({ host: h, backend: g.backend });
  hostMap.sort((a, b) => cmp(a.host, b.host));
  const kv: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of snap.kv) kv[k] = v;
  return {
    services,
    service: byName,
    groups,
    http: groups.filter(routed),
    tcp: groups.filter((g) => g.mode === 'tcp' && g.vip !== null),
    l7Backends: retired.length ? [...groups.filter((g) => routed(g) && !g.spare), ...retired].sort((a, b) => cmp(a.fqdn, b.fqdn)) : groups.filter((g) => routed(g) && !g.spare),
    retired,
    spares,
    hostMap,
    overflow,
    hostConflicts,
    kv,
    health: o.health,
    domain: o.domain,
    settings: o.settings,
  };
}

/** a group's name in the operator's layout, and its other forms as aliases */
function namesOf(g: { tenant: string | null; label: string; serviceLabel: string }, o: ViewOptions): { fqdn: string; aliases: string[] } {
  const dash = `${g.label}.${o.domain}`;
  if (!g.tenant) return { fqdn: dash, aliases: [] };
  const forms: Record<NameLayout, string> = { dash, dot: `${g.tenant}.${g.serviceLabel}.${o.domain}`, 'dot-bare': `${g.tenant}.${g.serviceLabel}` };
  const layout = o.nameLayout ?? 'dash';
  const aliases = NAME_LAYOUTS.filter((l) => l !== layout).map((l) => forms[l]).filter((a) => a.length <= 253);
  return { fqdn: forms[layout], aliases };
}

/** The view with every slot emptied: what a render looks like apart from which instance sits in which slot. */
export function skeletonOf(view: View, slotCounts?: ReadonlyMap<string, number>): View {
  const emptySlots = (backend: string, slots: readonly SlotView[]): SlotView[] => {
    const n = slotCounts?.get(backend);
    return (n === undefined ? slots : slots.slice(0, n)).map((s) => ({ name: s.name, instance: null, address: null, port: null }));
  };
  const groups = view.groups.map((g): GroupView => ({ ...g, slots: emptySlots(g.backend, g.slots) }));
  const byKey = new Map(groups.map((g) => [g.key, g]));
  return {
    ...view,
    groups,
    http: view.http.map((g) => byKey.get(g.key)!),
    tcp: view.tcp.map((g) => byKey.get(g.key)!),
    l7Backends: view.l7Backends.map((g) => byKey.get(g.key) ?? { ...g, slots: emptySlots(g.backend, g.slots) }),
    spares: view.spares.map((s) => ({ backend: s.backend, group: null, slots: emptySlots(s.backend, s.slots) })),
    hostMap: [],
    hostConflicts: [],
  };
}
