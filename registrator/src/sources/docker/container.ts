// One container (as `docker inspect` shows it) → the Consul instances it stands
// for: one per published port (or exposed port with --internal / host
// networking), named, tagged and checked from its metadata. Pure, so every
// registrator rule is a table test. Bad metadata is a Problem (container id,
// label and reason); only what it concerns is skipped.
import type { ContainerInspectInfo } from 'dockerode';
import {
  escapeConsulServiceName, escapeConsulId, escapeConsulMetaKey, checkConsulMetaValue, checkConsulTag, parseDuration,
  asInstanceId, asServiceName, META, type ServiceInstance, type CheckSpec, type OwnerId, type HealthStatus,
} from '@gantry/core';
import { rawMetadata, metadataForPort, badPortKeys, splitTags, type Metadata } from './metadata.ts';

export interface DockerSyncOptions {
  owner: OwnerId;
  /** the Docker host's name (registrator's ID prefix) */
  hostname: string;
  /** the address published ports are reached at (--ip); default: the binding's, else hostIp */
  ip?: string;
  /** this host's advertise address, for 0.0.0.0 bindings and host networking */
  hostIp: string;
  internal: boolean;
  explicit: boolean;
  /** tags added to every service (--tags) */
  tags: string[];
  /** the network whose address is used for --internal (multi-network containers) */
  network?: string;
  /** take the IP from this label when present */
  useIpFromLabel?: string;
  deregister: 'always' | 'on-success';
  /** only containers with this label (KEY or KEY=VALUE) */
  requireLabel?: string;
  /** register SERVICE_CHECK_SCRIPT / SERVICE_CHECK_CMD checks (--allow-script-checks; off by default) */
  allowScriptChecks?: boolean;
}

export interface Problem { container: string; name: string; where: string; reason: string; port?: string }
/** A value escaping changed to fit Consul: the original (untrusted, escape it for a log) and what was written. */
export interface Rewritten { container: string; name: string; where: string; what: 'name' | 'id' | 'meta key'; original: string; result: string; port?: string }
export interface ContainerResult { instances: ServiceInstance[]; problems: Problem[]; escaped: Rewritten[]; skipped?: string }

interface PortBinding { exposed: string; proto: string; hostPort?: string; hostIp?: string }

function ports(c: ContainerInspectInfo, o: DockerSyncOptions): PortBinding[] {
  const out: PortBinding[] = [];
  const hostMode = c.HostConfig?.NetworkMode === 'host';
  const published = c.NetworkSettings?.Ports ?? {};
  const exposed = Object.keys({ ...(c.Config?.ExposedPorts ?? {}), ...published });
  for (const key of exposed.sort()) {
    const [port, proto = 'tcp'] = key.split('/');
    const bindings = (published[key] ?? []) as Array<{ HostIp: string; HostPort: string }>;
    if (o.internal || hostMode) { out.push({ exposed: port!, proto }); continue; }
    // one binding per port (IPv4 first, as registrator does)
    const b = bindings.find((x) => !x.HostIp.includes(':')) ?? bindings[0];
    if (b?.HostPort) out.push({ exposed: port!, proto, hostPort: b.HostPort, hostIp: b.HostIp });
  }
  return out;
}

function networkAddress(c: ContainerInspectInfo, o: DockerSyncOptions): string | undefined {
  const nets = c.NetworkSettings?.Networks ?? {};
  const names = Object.keys(nets).sort();
  const pick = o.network ?? (names.length === 1 ? names[0] : (c.HostConfig?.NetworkMode && nets[c.HostConfig.NetworkMode] ? c.HostConfig.NetworkMode : names[0]));
  const n = pick ? nets[pick] : undefined;
  return n?.IPAddress || n?.GlobalIPv6Address || undefined;
}

const CHECK_KEYS = ['check_http', 'check_https', 'check_tcp', 'check_ttl', 'check_grpc', 'check_grpc_use_tls', 'check_cmd', 'check_script', 'check_interval', 'check_timeout', 'check_initial_status', 'check_deregister_after', 'check_tls_skip_verify', 'check_http_method', 'check_https_method'];
const RESERVED = new Set(['name', 'tags', 'id', 'ignore', ...CHECK_KEYS]);

function checkFor(m: Metadata, address: string, port: number, containerId: string, allowScripts: boolean): { checks: CheckSpec[]; problem?: { where: string; reason: string } } {
  const v = m.values;
  const host = address.includes(':') ? `[${address}]` : address;
  const durationOf = (key: string, def?: string): string | undefined | { bad: string } => {
    const raw = v[key] ?? def;
    if (raw === undefined) return undefined;
    try { parseDuration(raw); return raw; } catch { return { bad: raw }; }
  };
  const interval = durationOf('check_interval', '10s');
  const timeout = durationOf('check_timeout');
  const dereg = durationOf('check_deregister_after');
  for (const [k, d] of [['check_interval', interval], ['check_timeout', timeout], ['check_deregister_after', dereg]] as const) {
    if (d && typeof d === 'object') return { checks: [], problem: { where: m.origin[k] ?? k, reason: `invalid duration ${JSON.stringify(d.bad)} (use e.g. 10s)` } };
  }
  const initial = v.check_initial_status;
  if (initial !== undefined && !['passing', 'warning', 'critical'].includes(initial)) {
    return { checks: [], problem: { where: m.origin.check_initial_status ?? 'check_initial_status', reason: 'expected passing, warning or critical' } };
  }
  const common = {
    interval: interval as string,
    ...(typeof timeout === 'string' ? { timeout } : {}),
    ...(typeof dereg === 'string' ? { deregisterAfter: dereg } : {}),
    ...(initial ? { initialStatus: initial as HealthStatus } : {}),
  };
  // one check, chosen as gliderlabs/registrator chooses: http, https, cmd/script, ttl, tcp, grpc
  const path = (p: string): string => (p.startsWith('/') ? p : `/${p}`);
  const script = v.check_cmd ?? v.check_script;
  let check: CheckSpec | undefined;
  if (v.check_http) check = { kind: 'http', url: `http://${host}:${port}${path(v.check_http)}`, ...(v.check_http_method ? { method: v.check_http_method } : {}), ...common };
  else if (v.check_https) check = { kind: 'https', url: `https://${host}:${port}${path(v.check_https)}`, tlsSkipVerify: v.check_tls_skip_verify === 'true', ...(v.check_https_method ? { method: v.check_https_method } : {}), ...common };
  else if (script) {
    if (!allowScripts) {
      const key = v.check_cmd ? 'check_cmd' : 'check_script';
      return { checks: [], problem: { where: m.origin[key] ?? key, reason: 'script checks are off (start the registrator with --allow-script-checks to register them)' } };
    }
    const cmd = script.replace(/\$SERVICE_IP/g, address).replace(/\$SERVICE_PORT/g, String(port));
    check = { kind: 'script', args: v.check_cmd ? ['docker', 'exec', containerId, '/bin/sh', '-c', cmd] : ['/bin/sh', '-c', cmd], ...common };
  } else if (v.check_ttl) {
    const ttl = durationOf('check_ttl');
    if (!ttl || typeof ttl === 'object') return { checks: [], problem: { where: m.origin.check_ttl ?? 'check_ttl', reason: `invalid duration ${JSON.stringify(v.check_ttl)}` } };
    check = { kind: 'ttl', ttl, ...(typeof dereg === 'string' ? { deregisterAfter: dereg } : {}), ...(initial ? { initialStatus: initial as HealthStatus } : {}) };
  } else if (v.check_tcp) check = { kind: 'tcp', address: `${host}:${port}`, ...common };
  else if (v.check_grpc) check = { kind: 'grpc', address: `${host}:${port}`, ...(v.check_grpc_use_tls === 'true' ? { useTls: true } : {}), ...common };
  if (check && 'interval' in check && parseDuration(check.interval) <= 0) {
    return { checks: [], problem: { where: m.origin.check_interval ?? 'check_interval', reason: 'the check interval must be more than 0' } };
  }
  return { checks: check ? [check] : [] };
}

/** Docker HEALTHCHECK state → the status of the check Gantry keeps for it. */
export function healthStatus(c: ContainerInspectInfo): HealthStatus | undefined {
  const h = c.State?.Health?.Status;
  if (!h || h === 'none') return undefined;
  return h === 'healthy' ? 'passing' : 'critical'; // starting: not ready yet
}

export function containerInstances(c: ContainerInspectInfo, o: DockerSyncOptions): ContainerResult {
  const id = c.Id;
  const cname = (c.Name ?? '').replace(/^\//, '');
  const labels = c.Config?.Labels ?? {};
  const env = c.Config?.Env ?? [];
  const problems: Problem[] = [];
  const escaped: Rewritten[] = [];
  if (o.requireLabel) {
    const [k, want] = o.requireLabel.split('=', 2);
    if (!(k! in labels) || (want !== undefined && labels[k!] !== want)) return { instances: [], problems, escaped, skipped: `no ${o.requireLabel} label` };
  }
  const raw = rawMetadata(env, labels);
  for (const b of badPortKeys(env, labels)) problems.push({ container: id, name: cname, ...b });

  const running = c.State?.Running === true;
  const exitedBadly = !running && c.State?.ExitCode !== 0 && o.deregister === 'on-success';
  if (!running && !exitedBadly) return { instances: [], problems, escaped, skipped: 'not running' };

  const hostMode = c.HostConfig?.NetworkMode === 'host';
  const list = ports(c, o);
  const isGroup = list.length > 1;
  const image = c.Config?.Image ?? '';
  const defaultName = (image.split('/').pop() ?? image).split(':')[0]!.split('@')[0]!;
  const labelIp = o.useIpFromLabel ? labels[o.useIpFromLabel] : undefined;
  const containerIp = networkAddress(c, o);
  const docker = healthStatus(c);
  const out: ServiceInstance[] = [];

  for (const p of list) {
    const m = metadataForPort(raw, p.exposed);
    const where = (key: string): string => m.origin[key] ?? key;
    const fail = (w: string, reason: string): void => { problems.push({ container: id, name: cname, where: w, reason, port: p.exposed }); };
    const note = (w: string, what: Rewritten['what'], original: string, result: string): void => { escaped.push({ container: id, name: cname, where: w, what, original, result, port: p.exposed }); };
    if (m.values.ignore) continue;
    if (o.explicit && !m.values.name) continue;

    let name = m.values.name ?? defaultName;
    if (isGroup && !m.portSpecificName) name = `${name}-${p.exposed}`;
    const n = escapeConsulServiceName(name);
    if (!n.ok) { fail(where('name'), n.reason); continue; }
    if (n.changed) note(m.values.name ? where('name') : 'image name', 'name', name, n.value);

    const address = labelIp ?? (o.internal ? containerIp : undefined) ?? (hostMode ? o.ip ?? o.hostIp : undefined)
      ?? o.ip ?? (p.hostIp && p.hostIp !== '0.0.0.0' && p.hostIp !== '::' ? p.hostIp : o.hostIp);
    if (!address) { fail('address', `no address for port ${p.exposed} (no IP on network ${o.network ?? '(default)'})`); continue; }
    const port = Number(o.internal || hostMode ? p.exposed : p.hostPort);

    let instanceId = m.values.id ?? `${o.hostname}:${cname}:${p.exposed}${p.proto === 'udp' ? ':udp' : ''}`;
    const idr = escapeConsulId(instanceId);
    if (!idr.ok) { fail(where('id'), idr.reason); continue; }
    if (idr.changed) note(m.values.id ? where('id') : 'container name', 'id', instanceId, idr.value);
    instanceId = idr.value;

    const tags: string[] = [];
    let tagProblem = false;
    for (const tag of [...splitTags(m.values.tags), ...o.tags, ...(p.proto === 'udp' ? ['udp'] : [])]) {
      const r = checkConsulTag(tag);
      if (!r.ok) { fail(where('tags'), r.reason); tagProblem = true; break; }
      if (!tags.includes(tag)) tags.push(tag);
    }
    if (tagProblem) continue;

    const meta: Record<string, string> = {};
    let metaProblem = false;
    for (const [k, v] of Object.entries(m.values)) {
      if (RESERVED.has(k)) continue;
      const kr = escapeConsulMetaKey(k);
      const vr = checkConsulMetaValue(v);
      if (!kr.ok || !vr.ok) { fail(where(k), (!kr.ok ? kr.reason : !vr.ok ? vr.reason : '')); metaProblem = true; break; }
      if (kr.changed) note(where(k), 'meta key', k, kr.value);
      meta[kr.value] = v;
    }
    if (metaProblem) continue;

    const checked = checkFor(m, address, port, id, o.allowScriptChecks === true);
    if (checked.problem) { fail(checked.problem.where, checked.problem.reason); continue; }

    Object.assign(meta, {
      [META.owner]: o.owner,
      [META.source]: 'docker',
      [META.origin]: `${o.hostname}/${id.slice(0, 12)}`,
      'docker-container': cname,
      'docker-image': image.slice(0, 512),
    });
    const paused = c.State?.Paused === true;
    const status: HealthStatus | undefined = exitedBadly ? 'critical' : docker;
    out.push({
      id: asInstanceId(instanceId),
      name: asServiceName(n.value),
      address,
      port,
      tags,
      meta,
      checks: checked.checks,
      origin: { source: 'docker', ref: id, host: o.hostname, name: cname, image },
      ...(status ? { status } : {}),
      ...(paused ? { maintenance: true } : {}),
    });
  }
  return { instances: out, problems, escaped };
}
