// `gantry templater`: Consul → view → Handlebars → check → atomic write → reload
// (or the HAProxy Runtime API without a reload). Flags (each with an env twin)
// for the shipped templates; --config for any number of templates.
import { join, resolve } from 'node:path';
import {
  CatalogWatcher, UsageError, createConsul, createLogger, createRegistry, startAdminServer, consulFlags, commonFlags,
  consulConfigFromFlags, escapeDnsName, errorMessage, type Command, type FlagSpec, type Flags,
} from '@gantry/core';
import { Runner } from './runner.ts';
import { TemplateError } from './render/engine.ts';
import { BUILTINS, haproxyLogTarget, loadConfigFile, parseWait, resolveSource, type TemplateSpec } from './config.ts';
import { createTemplaterMetrics } from './metrics.ts';
import { VipPool } from './vip/pool.ts';
import { VipInterface } from './vip/iface.ts';
import { NAME_LAYOUTS, type HealthFilter, type NameLayout, type ViewOptions } from './view.ts';

export const templaterFlags: readonly FlagSpec[] = [
  ...consulFlags,
  ...commonFlags,
  { name: 'config', type: 'string', description: 'JSON file with "templates" (source, destination, perms, check, reload, runtime, wait, backup, allowEmpty, vars) and "settings"' },
  { name: 'template', type: 'list', default: [], description: 'source:destination, repeatable (no check, no reload); source may be builtin:haproxy or builtin:hosts' },
  { name: 'haproxy-cfg', type: 'string', description: 'render the shipped HAProxy template (L7 + L4) to this file' },
  { name: 'haproxy-master-socket', type: 'string', description: 'HAProxy master CLI socket: reload through it, confirmed with show proc' },
  { name: 'haproxy-admin-socket', type: 'string', description: 'HAProxy admin socket (Runtime API) the shipped template declares (default <state-dir>/haproxy-admin.sock)' },
  { name: 'haproxy-state-file', type: 'string', description: 'server-state-file the shipped template declares (default <state-dir>/haproxy-server-state)' },
  { name: 'haproxy-map-file', type: 'string', description: 'Host → backend map the shipped template routes by, kept in step through the Runtime API (default <state-dir>/haproxy-hosts.map)' },
  { name: 'spare-backends', type: 'int', default: 8, min: 0, max: 1000, description: 'spare L7 backends in the shipped config: new services go live in them through the Runtime API, without a reload (0: a reload each); doubled at the reload after they ran out' },
  { name: 'spare-backends-percent', type: 'int', default: 1, min: 0, max: 100, description: 'the spare pool is at least this many per 100 L7 services at each reload (a burst of new services on a big catalog fits without waiting for a reload; with --spare-backends 0, none)' },
  { name: 'haproxy-bin', type: 'string', default: 'haproxy', description: 'haproxy binary for the check (haproxy -c -f)' },
  { name: 'hosts-file', type: 'string', description: 'render the shipped hosts template (for dnsmasq --addn-hosts or CoreDNS hosts) to this file' },
  { name: 'dnsmasq-pid-file', type: 'string', description: 'send SIGHUP to the pid in this file after the hosts file changed' },
  { name: 'domain', type: 'string', default: 'gantry.test', description: 'DNS domain the names are made under (<service>.<domain>)' },
  { name: 'name-layout', type: 'enum', choices: [...NAME_LAYOUTS], default: 'dash', description: 'a tenant\'s service name: dash <tenant>-<service>.<domain>, dot <tenant>.<service>.<domain>, dot-bare <tenant>.<service> (the others stay aliases)' },
  { name: 'haproxy-log', type: 'string', default: 'stdout', description: 'HAProxy request logs (httplog/tcplog) of the shipped template: stdout, none, or a syslog address (host:port, udp@host:port, /dev/log)' },
  { name: 'l7-bind', type: 'string', default: '127.0.0.1:80', description: 'HAProxy bind of the L7 frontend (shipped template)' },
  { name: 'l7-address', type: 'string', default: '127.0.0.1', description: 'address the hosts file gives L7 names (where HAProxy listens)' },
  { name: 'stats-bind', type: 'string', description: 'HAProxy stats page bind (shipped template; none by default)' },
  { name: 'vip-pool', type: 'string', default: '127.77.0.0/24', description: 'IPv4 CIDR L4 VIPs are taken from' },
  { name: 'vip-grace', type: 'duration', default: '10m', description: 'how long a group that no longer wants its VIP (gone, or its gantry.tcp tag removed) keeps it before it goes back to the pool' },
  { name: 'vip-interface', type: 'string', default: 'lo', description: 'interface the VIPs are added to' },
  { name: 'vip-manage', type: 'boolean', default: true, description: 'add VIPs to --vip-interface (and remove unused ones); off when something else does' },
  { name: 'health', type: 'enum', choices: ['passing', 'warning', 'any'], default: 'passing', description: 'instances in this health (or better) are served' },
  { name: 'kv-prefix', type: 'string', description: 'watch the KV pairs under this prefix (templates read them as kv.* or with kvValue)' },
  { name: 'wait', type: 'string', default: '50ms:1s', description: 'quiescence min:max: render after min of quiet, at most max after the first change' },
  { name: 'tcp-tag', type: 'string', default: 'gantry.tcp', description: 'tag (tag=port) or meta (dots as dashes) giving a service an L4 VIP on that port' },
  { name: 'tenant-tag', type: 'string', default: 'gantry.tenant', description: 'tag (tag=tenant) or meta giving the tenant prefix (<tenant>-<service>.<domain>)' },
  { name: 'host-tag', type: 'string', default: 'gantry.host', description: 'tag (tag=host) adding an L7 Host name' },
  { name: 'allow-host-suffix', type: 'list', default: [], description: 'host names from --host-tag are accepted only inside --domain or one of these suffixes (repeatable, e.g. example.com); others are refused and reported' },
  { name: 'path-tag', type: 'string', default: 'gantry.path', description: 'tag (tag=/prefix) adding an L7 path route under the bare domain' },
  { name: 'min-slots', type: 'int', default: 4, min: 1, max: 1000, description: 'server slots each backend starts with (filled through the Runtime API)' },
  { name: 'state-dir', type: 'string', default: '/var/lib/gantry/templater', description: 'where VIP assignments (and default sockets/state files) are kept' },
  { name: 'admin-addr', type: 'addr', default: '127.0.0.1:9102', description: 'admin endpoint (/metrics, /healthz)' },
  { name: 'once', type: 'boolean', default: false, description: 'render and apply every template once, then exit (0: all applied)' },
  { name: 'allow-empty', type: 'boolean', default: false, description: 'write renders of an empty catalog (refused by default)' },
  { name: 'consul-wait', type: 'duration', default: '5m', description: 'max wait of each blocking query' },
  { name: 'consul-min-spacing', type: 'duration', default: '100ms', description: 'minimum time between two queries to one Consul endpoint' },
  { name: 'resync-interval', type: 'duration', default: '5m', description: 'full catalog sweep this often (a request a node), 0 to disable' },
  { name: 'probe-interval', type: 'duration', default: '2s', description: 'how often the HAProxy master is probed (down/back detection)' },
  { name: 'reload-timeout', type: 'duration', default: '10s', description: 'how long a reload may take to be confirmed' },
  { name: 'max-reloads', type: 'int', default: 5, min: 1, description: 'mworker-max-reloads in the shipped template (old workers killed after this many reloads)' },
  { name: 'hard-stop-after', type: 'duration', default: '30s', description: 'hard-stop-after in the shipped template' },
  { name: 'haproxy-timeout-connect', type: 'duration', default: '1s', description: 'timeout connect in the shipped template: a connection to an instance that died (its address gone) fails after this and the request is redispatched to another instance' },
];

/** the Host → backend map of the shipped template: a path HAProxy's map() takes as it is */
function hostMapFile(f: Flags, stateDir: string): string {
  const path = resolve(f.optStr('haproxy-map-file') ?? join(stateDir, 'haproxy-hosts.map'));
  if (!/^\/[A-Za-z0-9._/-]+$/.test(path)) throw new UsageError(`flag --haproxy-map-file: invalid value ${JSON.stringify(path)}: the path may hold only letters, digits and . _ / -`);
  return path;
}

function shippedTemplates(f: Flags, stateDir: string, wait: { minMs: number; maxMs: number }): TemplateSpec[] {
  const out: TemplateSpec[] = [];
  const common = { mode: 0o644, backup: true, allowEmpty: f.bool('allow-empty'), waitMinMs: wait.minMs, waitMaxMs: wait.maxMs, checkTimeoutMs: 30_000, vars: {} };
  const cfg = f.optStr('haproxy-cfg');
  if (cfg) {
    const master = f.optStr('haproxy-master-socket');
    out.push({
      ...common,
      name: 'haproxy',
      source: BUILTINS.haproxy!,
      destination: resolve(cfg),
      check: [f.str('haproxy-bin'), '-c', '-f', '{{path}}'],
      reload: master ? { master } : undefined,
      runtime: { socket: f.optStr('haproxy-admin-socket') ?? join(stateDir, 'haproxy-admin.sock'), stateFile: f.optStr('haproxy-state-file') ?? join(stateDir, 'haproxy-server-state'), hostMap: hostMapFile(f, stateDir) },
    });
  }
  const hosts = f.optStr('hosts-file');
  if (hosts) {
    const pid = f.optStr('dnsmasq-pid-file');
    out.push({ ...common, name: 'hosts', source: BUILTINS.hosts!, destination: resolve(hosts), reload: pid ? { signal: 'SIGHUP', pidFile: pid } : undefined });
  }
  for (const pair of f.list('template')) {
    const i = pair.lastIndexOf(':');
    if (i <= 0 || i === pair.length - 1) throw new UsageError(`flag --template: invalid value ${JSON.stringify(pair)}: expected source:destination`);
    const source = resolveSource(pair.slice(0, i), process.cwd());
    out.push({ ...common, name: pair.slice(i + 1), source, destination: resolve(pair.slice(i + 1)) });
  }
  return out;
}

export const templater: Command = {
  name: 'templater',
  summary: 'Renders Handlebars templates (HAProxy L7/L4, a dnsmasq hosts file, your own) from Consul, checks them, writes them atomically and reloads, or applies instance changes through the HAProxy Runtime API without a reload.',
  flags: templaterFlags,
  async run(f, ctx) {
    const log = createLogger({ component: 'templater', level: f.str('log-level'), destination: ctx.stdout });
    const stateDir = resolve(f.str('state-dir'));
    const wait = parseWait(f.str('wait'), 'flag --wait');
    const domain = escapeDnsName(f.str('domain'));
    if (!domain.ok || domain.changed) throw new UsageError(`flag --domain: invalid value ${JSON.stringify(f.str('domain'))}: expected a lower-case DNS name such as gantry.test`);
    let templates = shippedTemplates(f, stateDir, wait);
    let fileSettings: Record<string, unknown> = {};
    const configFile = f.optStr('config');
    if (configFile) {
      const c = loadConfigFile(configFile, { wait: f.str('wait') });
      templates = [...templates, ...c.templates];
      fileSettings = c.settings;
    }
    if (!templates.length) throw new UsageError('nothing to render: give --haproxy-cfg, --hosts-file, --template or --config');
    const names = new Set<string>();
    for (const t of templates) {
      if (names.has(t.destination)) throw new UsageError(`two templates write ${t.destination}`);
      names.add(t.destination);
    }
    const settings: Record<string, unknown> = {
      domain: domain.value,
      l7Bind: f.str('l7-bind'),
      l7Address: f.str('l7-address'),
      statsBind: f.optStr('stats-bind') ?? null,
      logTarget: haproxyLogTarget(f.str('haproxy-log')),
      adminSocket: f.optStr('haproxy-admin-socket') ?? join(stateDir, 'haproxy-admin.sock'),
      serverStateFile: f.optStr('haproxy-state-file') ?? join(stateDir, 'haproxy-server-state'),
      hostMapFile: hostMapFile(f, stateDir),
      maxReloads: f.int('max-reloads'),
      hardStopAfter: `${Math.max(1, Math.round(f.ms('hard-stop-after') / 1000))}s`,
      maxconn: 4000,
      timeoutConnect: `${Math.max(1, f.ms('haproxy-timeout-connect'))}ms`, timeoutClient: '30s', timeoutServer: '30s', timeoutTcp: '1h',
      ...fileSettings,
    };
    const viewOptions = (): ViewOptions => ({
      health: f.str('health') as HealthFilter,
      domain: domain.value,
      nameLayout: f.str('name-layout') as NameLayout,
      allowHostSuffixes: f.list('allow-host-suffix').map((x) => {
        const r = escapeDnsName(x.replace(/^\.+/, '').toLowerCase());
        if (!r.ok || r.changed) throw new UsageError(`flag --allow-host-suffix: invalid value ${JSON.stringify(x)}: expected a DNS name such as example.com`);
        return r.value;
      }),
      tcpTag: f.str('tcp-tag'), tenantTag: f.str('tenant-tag'), hostTag: f.str('host-tag'), pathTag: f.str('path-tag'),
      minSlots: f.int('min-slots'),
      settings,
    });

    const pool = new VipPool({ pool: f.str('vip-pool'), stateFile: join(stateDir, 'vips.json'), graceMs: f.ms('vip-grace') });
    const iface = f.bool('vip-manage') ? new VipInterface({ iface: f.str('vip-interface'), inPool: (ip) => pool.contains(ip) }) : undefined;

    const registry = createRegistry('templater');
    const metrics = createTemplaterMetrics(registry);
    const consul = createConsul(consulConfigFromFlags(f));
    const kvPrefix = f.optStr('kv-prefix');
    const watcher = new CatalogWatcher({
      consul, log,
      kvPrefix,
      // one-shot reads (node probes) two at a time when no KV query blocks: a change is found in
      // fewer round trips, and Consul still sees at most four connections (two blocking queries)
      fetchConcurrency: kvPrefix === undefined ? 2 : 1,
      waitMs: f.ms('consul-wait'),
      minSpacingMs: f.ms('consul-min-spacing'),
      resyncMs: f.ms('resync-interval'),
      onRequest: (endpoint) => metrics.consulRequests.inc({ endpoint }),
      onRequestError: (endpoint) => metrics.consulErrors.inc({ endpoint }),
    });

    let runner: Runner;
    try {
      runner = new Runner({
        source: watcher, templates, view: viewOptions(), vip: { pool, iface }, log, metrics, spares: f.int('spare-backends'), sparesPercent: f.int('spare-backends-percent'),
        probeIntervalMs: f.ms('probe-interval'), reloadTimeoutMs: f.ms('reload-timeout'),
      });
    } catch (err) {
      consul.close();
      if (err instanceof TemplateError) throw new UsageError(err.message);
      throw err;
    }

    watcher.start(ctx.signal);
    if (f.bool('once')) {
      try {
        const done = await Promise.race([
          runner.once(),
          new Promise<boolean>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('interrupted')), { once: true })),
        ]);
        for (const s of runner.statuses()) ctx.stderr.write(`${s.name}: ${s.lastResult}${s.lastError ? ` (${s.lastError.split('\n')[0]})` : ''}\n`);
        return done ? 0 : 1;
      } finally {
        watcher.stop();
        await watcher.closed();
        consul.close();
      }
    }

    const admin = await startAdminServer({
      addr: f.str('admin-addr'), registry, log,
      health: () => {
        const snap = watcher.snapshot();
        const statuses = runner.statuses();
        return {
          ok: snap !== undefined && statuses.every((s) => s.targetUp),
          consul: { synced: snap !== undefined, lastError: watcher.lastError ?? null, indexes: snap?.indexes ?? null },
          templates: statuses,
          // host names two services claim: who keeps each (the earliest registration) and who was refused
          hostConflicts: runner.hostConflicts(),
        };
      },
    });
    runner.start();
    log.info({ templates: templates.map((t) => ({ name: t.name, source: t.source, destination: t.destination })), admin: admin.url }, 'templater started');
    await new Promise<void>((resolveStop) => {
      if (ctx.signal.aborted) resolveStop();
      ctx.signal.addEventListener('abort', () => resolveStop(), { once: true });
    });
    log.info('stopping');
    watcher.stop();
    await runner.stop().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'stopping the runner'));
    await watcher.closed();
    await admin.close();
    consul.close();
    return 0;
  },
};
