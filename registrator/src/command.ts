// `gantry registrator`: the Docker engine (and, with --kubernetes, a cluster)
// kept in step with Consul by the reconciler, with an audit trail in Redis,
// metrics and /healthz on the admin port.
import { hostname, networkInterfaces } from 'node:os';
import {
  createConsul, consulFlags, commonFlags, consulConfigFromFlags, createLogger, createRegistry, startAdminServer,
  asOwnerId, errorMessage, UsageError, type Command, type FlagSpec, type Flags, type Logger, type ConsulClient,
} from '@gantry/core';
import type { Reconciler } from './reconciler.ts';
import { wire, type Part } from './wire.ts';
import { DockerSource } from './sources/docker/source.ts';
import { DockerClient } from './sources/docker/client.ts';
import { ConsulAgentSink } from './sinks/consul-agent.ts';
import type { AuditWriter } from '@gantry/audit';
import { Heartbeat } from '@gantry/audit/heartbeat';
import { entryFromProblem } from './audit-entry.ts';
import { AgentRejoin } from './agent-rejoin.ts';
import { registratorMetrics } from './metrics.ts';
import { bridgeFlags } from './sources/zookeeper/flags.ts';

export const registratorFlags: readonly FlagSpec[] = [
  ...consulFlags,
  ...commonFlags,
  { name: 'admin-addr', type: 'addr', default: '127.0.0.1:9101', description: 'where /metrics and /healthz listen' },
  { name: 'owner', type: 'string', description: 'owner id written in Meta.gantry-owner (default registrator@<the Consul agent\'s node name>)' },
  { name: 'resync', type: 'duration', default: '30s', description: 'full reconciliation every (registrator: -resync)' },
  { name: 'retry-attempts', type: 'int', default: -1, min: -1, description: 'Consul connection attempts at start, -1 for ever (registrator: -retry-attempts)' },
  { name: 'retry-interval', type: 'duration', default: '2s', description: 'wait between those attempts (registrator: -retry-interval)' },
  // Docker
  { name: 'docker', type: 'boolean', default: true, description: 'register the containers of the local Docker engine' },
  { name: 'docker-socket', type: 'string', env: 'GANTRY_DOCKER_SOCKET', default: '/var/run/docker.sock', description: 'the Docker engine\'s unix socket' },
  { name: 'docker-timeout', type: 'duration', default: '10s', description: 'how long a Docker list or inspect (or opening the event stream) may take' },
  { name: 'allow-script-checks', type: 'boolean', default: false, description: 'register SERVICE_CHECK_SCRIPT / SERVICE_CHECK_CMD checks (off: such ports are refused and reported, like Consul\'s enable_script_checks)' },
  { name: 'internal', type: 'boolean', default: false, description: 'register the container IP and exposed port instead of the published host port' },
  { name: 'explicit', type: 'boolean', default: false, description: 'only containers with a SERVICE_NAME' },
  { name: 'tags', type: 'list', default: [], description: 'tags added to every service (comma separated)' },
  { name: 'ip', type: 'string', description: 'the address published ports are registered with (default: the binding\'s, else this host\'s)' },
  { name: 'use-ip-from-label', type: 'string', description: 'take the address from this container label when present' },
  { name: 'network', type: 'string', description: 'for --internal: the network whose address a multi-network container is registered with' },
  { name: 'deregister', type: 'enum', choices: ['always', 'on-success'], default: 'always', description: 'deregister stopped containers always, or only when they exited 0' },
  { name: 'require-label', type: 'string', description: 'only containers with this label (KEY or KEY=VALUE)' },
  { name: 'health-ttl', type: 'duration', default: '60s', description: 'TTL of the check that mirrors a Docker HEALTHCHECK (refreshed every third)' },
  // Kubernetes
  { name: 'kubernetes', type: 'boolean', default: false, description: 'sync Kubernetes Services and EndpointSlices too' },
  { name: 'kubeconfig', type: 'string', env: 'KUBECONFIG', description: 'kubeconfig file (default: in-cluster, else ~/.kube/config)' },
  { name: 'k8s-cluster', type: 'string', default: 'default', description: 'cluster name: in Meta, in IDs and in the owner, so clusters can share one Consul' },
  { name: 'k8s-default-sync', type: 'boolean', default: true, description: 'sync Services without a service-sync annotation' },
  { name: 'k8s-allow-namespaces', type: 'list', default: ['*'], description: 'namespaces to sync (* = all)' },
  { name: 'k8s-deny-namespaces', type: 'list', default: ['kube-system', 'kube-public'], description: 'namespaces never synced (deny wins)' },
  { name: 'k8s-service-prefix', type: 'string', default: '', description: 'prefix of every Consul service name' },
  { name: 'k8s-namespace-suffix', type: 'boolean', default: false, description: 'append -<namespace> to Consul service names' },
  { name: 'k8s-tag', type: 'string', default: 'k8s', description: 'tag on every Kubernetes instance' },
  { name: 'k8s-node-port-sync-type', type: 'enum', choices: ['ExternalOnly', 'ExternalFirst', 'InternalOnly'], default: 'ExternalFirst', description: 'which node address NodePort Services are registered with' },
  { name: 'k8s-lb-endpoints', type: 'boolean', default: false, description: 'LoadBalancer Services: register endpoints instead of ingress addresses' },
  { name: 'k8s-consul-node', type: 'string', description: 'synthetic Consul node the records live on (default k8s-sync-<cluster>)' },
  { name: 'k8s-leader-election', type: 'boolean', default: true, description: 'with several replicas, only the holder of a Consul lock writes' },
  { name: 'k8s-leader-ttl', type: 'duration', default: '5s', description: 'liveness TTL of the leader; failover takes about this long' },
  ...bridgeFlags,
  // Audit
  { name: 'audit-redis', type: 'url', schemes: ['redis', 'rediss', 'redis+sentinel'], secret: true, description: 'Redis URL for the audit stream (off when empty); redis+sentinel://host:port,host:port/<master> follows Sentinel failovers; secret: never echoed in errors' },
  { name: 'audit-key', type: 'string', default: 'gantry:audit', description: 'Redis stream key' },
  { name: 'audit-max-len', type: 'int', default: 100_000, min: 1, description: 'approximate maximum length of the stream' },
  { name: 'audit-buffer', type: 'int', default: 10_000, min: 1, description: 'entries kept while Redis is down (then dropped and counted)' },
  { name: 'agent-rejoin', type: 'duration', default: '3s', description: 'how often to ask how the Consul servers see this agent\'s node; unreachable or failed (serfHealth critical): ask the agent to join a server (Consul itself retries only every 30 s). Needs agent:write and node:read with ACLs; 0 turns it off' },
  { name: 'heartbeat-ttl', type: 'duration', default: '15s', description: 'TTL of the session holding this writer\'s heartbeat under gantry/writers/ (at least Consul\'s session_ttl_min); 0 turns it off' },
];

/** This host's first non-internal IPv4 address (registrator's advertise address). */
export function hostAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('172.17.')) return a.address;
  }
  return '127.0.0.1';
}

/**
 * Waits until Consul answers, then returns the agent's node name: stable per
 * host, unlike the process's hostname (a re-created registrator container gets
 * a new one), so owner and instance IDs made from it survive a re-creation.
 * Falls back to the hostname when the agent will not say (ACL without agent:read).
 */
async function waitForConsul(consul: ConsulClient, f: Flags, log: Logger, signal: AbortSignal): Promise<string> {
  const attempts = f.int('retry-attempts');
  for (let i = 1; ; i++) {
    try {
      await consul.request('GET', '/v1/status/leader', { timeoutMs: 5000, signal });
      try {
        const self = await consul.request<{ Config?: { NodeName?: string } }>('GET', '/v1/agent/self', { timeoutMs: 5000, signal });
        const node = self.body?.Config?.NodeName;
        if (node) return node;
        throw new Error('no Config.NodeName in /v1/agent/self');
      } catch (err) {
        if (signal.aborted) throw err;
        log.warn({ err: errorMessage(err), hostname: hostname() }, 'the Consul agent did not say its node name; using this host\'s name for owner and IDs');
        return hostname();
      }
    } catch (err) {
      if (signal.aborted) throw err;
      if (attempts !== -1 && i >= attempts) throw new Error(`Consul at ${consul.baseUrl} did not answer after ${i} attempts: ${errorMessage(err)}`);
      log.warn({ attempt: i, err: errorMessage(err) }, 'waiting for Consul');
      await new Promise((r) => setTimeout(r, f.ms('retry-interval')));
    }
  }
}

export const registratorCommand: Command = {
  name: 'registrator',
  summary: 'Keeps Consul exactly in step with the containers of the local Docker engine (and, with --kubernetes, a cluster\'s Services). Reads registrator\'s SERVICE_* env and labels and gantry.* labels.',
  flags: registratorFlags,
  async run(f, ctx) {
    const log = createLogger({ component: 'registrator', level: f.str('log-level') });
    if (!f.bool('docker') && !f.bool('kubernetes') && !f.optStr('zookeeper') && f.list('static').length === 0) throw new UsageError('nothing to do: --docker is off and none of --kubernetes, --zookeeper, --static is set');
    const consul = createConsul(consulConfigFromFlags(f));
    const registry = createRegistry('registrator');
    const m = registratorMetrics(registry);
    const host = hostname();
    const parts: Part[] = [];
    let audit: AuditWriter | undefined;
    const auditUrl = f.optStr('audit-redis');
    if (auditUrl) {
      const { AuditWriter } = await import('@gantry/audit'); // ioredis only when auditing
      audit = new AuditWriter({
        url: auditUrl, key: f.str('audit-key'), maxLen: f.int('audit-max-len'), bufferSize: f.int('audit-buffer'), log,
        onDropped: (n) => m.auditDropped.inc(n), onWritten: (n) => m.auditWritten.inc(n),
      });
    }
    const admin = await startAdminServer({
      addr: f.str('admin-addr'), registry, log,
      health: () => {
        const status = Object.fromEntries(parts.map((p) => [p.name, p.healthy() ? 'ok' : 'degraded']));
        if (audit) m.auditPending.set(audit.pending);
        return { ok: parts.length > 0 && parts.every((p) => p.healthy()), ...status, auditPending: audit?.pending ?? 0, auditDropped: audit?.droppedCount ?? 0 };
      },
    });
    try {
      const node = await waitForConsul(consul, f, log, ctx.signal);
      const running: Array<Promise<void>> = [];
      /** this writer's liveness in Consul, read by `gantry audit drift` */
      const heartbeat = (owner: string, source: string): Heartbeat | undefined => {
        if (f.ms('heartbeat-ttl') <= 0) return undefined;
        const hb = new Heartbeat({ consul, owner, source, ttlMs: f.ms('heartbeat-ttl'), log });
        running.push(hb.run(ctx.signal));
        return hb;
      };

      if (f.bool('docker')) {
        const owner = f.optStr('owner') ?? `registrator@${node}`;
        const ref: { reconciler?: Reconciler } = {};
        const source = new DockerSource({
          docker: new DockerClient(f.str('docker-socket'), { requestTimeoutMs: f.ms('docker-timeout'), connectTimeoutMs: f.ms('docker-timeout') }),
          log, owner: asOwnerId(owner), hostname: node, allowScriptChecks: f.bool('allow-script-checks'),
          hostIp: f.optStr('ip') ?? hostAddress(), ...(f.optStr('ip') ? { ip: f.str('ip') } : {}),
          internal: f.bool('internal'), explicit: f.bool('explicit'), tags: f.list('tags'),
          ...(f.optStr('network') ? { network: f.str('network') } : {}),
          ...(f.optStr('use-ip-from-label') ? { useIpFromLabel: f.str('use-ip-from-label') } : {}),
          ...(f.optStr('require-label') ? { requireLabel: f.str('require-label') } : {}),
          deregister: f.str('deregister') as 'always' | 'on-success',
          onProblem: (p) => { m.problems.inc({ source: 'docker' }); audit?.append(entryFromProblem(owner, 'docker', p)); },
          onEscaped: (e) => m.escaped.inc({ source: 'docker', what: e.what }),
          onStreamRestart: () => m.streamRestarts.inc({ source: 'docker', stream: 'events', reason: 'closed' }),
          onReconnected: () => ref.reconciler?.trigger('resync', true),
        });
        // with the default owner, records of an earlier registrator on this agent
        // (another owner registrator@…: an older hostname-based default) are ours
        const adopt = f.optStr('owner') ? undefined : (o: string): boolean => o.startsWith('registrator@');
        const sink = new ConsulAgentSink({ consul, owner: asOwnerId(owner), log, statusTtlMs: f.ms('health-ttl'), ...(adopt ? { adopt } : {}) });
        const r = wire('docker', source, sink, owner, f, log, m, audit, undefined, heartbeat(owner, 'docker'), 0);
        ref.reconciler = r;
        parts.push({ name: 'docker', reconciler: r, healthy: () => source.connected });
        running.push(r.run(ctx.signal));
        log.info({ owner, node, socket: f.str('docker-socket') }, 'docker source started');
      }

      if (f.ms('agent-rejoin') > 0) {
        const rejoin = new AgentRejoin({
          consul, log, intervalMs: f.ms('agent-rejoin'),
          onJoin: (ok) => { m.agentJoins.inc({ result: ok ? 'ok' : 'failed' }); m.agentCutOff.set(1); },
          onRejoined: () => { m.agentCutOff.set(0); for (const p of parts) p.reconciler.trigger('resync', true); },
        });
        running.push(rejoin.run(ctx.signal));
      }

      if (f.bool('kubernetes')) {
        // loaded only when asked for: the Kubernetes client is large
        const { startKubernetesPart } = await import('./kubernetes-part.ts');
        const part = await startKubernetesPart({ f, log, m, audit, consul, host, signal: ctx.signal, heartbeat });
        parts.push(part.part);
        running.push(...part.running);
      }
      if (f.optStr('zookeeper')) {
        const { startZooKeeperPart } = await import('./zookeeper-part.ts'); // the ZooKeeper client only when bridging
        const zk = await startZooKeeperPart({ f, log, m, audit, consul, host, signal: ctx.signal, heartbeat });
        parts.push(...zk.parts);
        running.push(...zk.running);
      }
      if (f.list('static').length) {
        const { startStaticPart } = await import('./static-part.ts');
        const st = await startStaticPart({ f, log, m, audit, consul, host, signal: ctx.signal, heartbeat });
        parts.push(st.part);
        running.push(st.running);
      }
      log.info({ admin: admin.url }, 'registrator running');
      await Promise.allSettled(running);
      return 0;
    } finally {
      await admin.close();
      await audit?.close();
      consul.close();
      log.info('registrator stopped');
    }
  },
};
