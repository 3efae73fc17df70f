// `gantry doctor`: can this host reach what Gantry needs? Consul always; every
// other engine a flag names (the same flags, and environment twins, as the
// commands that use them). Prints one line per check; exit 1 when one failed.
// Secrets (passwords in URLs, tokens) are never printed.
import { createConsul, consulFlags, consulConfigFromFlags, errorMessage, redactUrl, type Command, type FlagSpec, type Flags } from '@gantry/core';

const flags: readonly FlagSpec[] = [
  ...consulFlags,
  { name: 'timeout', type: 'duration', default: '5s', description: 'how long each check may take' },
  { name: 'audit-redis', type: 'url', schemes: ['redis', 'rediss'], secret: true, description: 'check this Redis (AUTH from the URL, then PING)' },
  { name: 'haproxy-admin-socket', type: 'string', description: 'check HAProxy\'s admin socket (show info)' },
  { name: 'haproxy-master-socket', type: 'string', description: 'check HAProxy\'s master CLI socket (show proc)' },
  { name: 'docker-socket', type: 'string', env: 'GANTRY_DOCKER_SOCKET', description: 'check the Docker engine on this socket (GET /version)' },
  { name: 'kubernetes', type: 'boolean', default: false, description: 'check the kube-apiserver (kubeconfig: --kubeconfig, else in-cluster, else ~/.kube/config)' },
  { name: 'kubeconfig', type: 'string', env: 'KUBECONFIG', description: 'check the kube-apiserver this kubeconfig names (implies --kubernetes)' },
];

type Check = { name: string; target: string; run: () => Promise<string> };

function checks(f: Flags): Check[] {
  const ms = f.ms('timeout');
  const out: Check[] = [];
  const redis = f.optStr('audit-redis');
  if (redis) out.push({ name: 'redis', target: redactUrl(redis), run: async () => `version=${await (await import('./probes.ts')).probeRedis(redis, ms)}` });
  const admin = f.optStr('haproxy-admin-socket');
  if (admin) out.push({ name: 'haproxy admin socket', target: admin, run: async () => (await import('./probes.ts')).probeHAProxySocket(admin, 'admin', ms) });
  const master = f.optStr('haproxy-master-socket');
  if (master) out.push({ name: 'haproxy master socket', target: master, run: async () => (await import('./probes.ts')).probeHAProxySocket(master, 'master', ms) });
  const docker = f.optStr('docker-socket');
  if (docker) {
    out.push({
      name: 'docker', target: docker, run: async () => {
        const { DockerClient } = await import('@gantry/registrator');
        const c = new DockerClient(docker, { requestTimeoutMs: ms });
        try {
          const v = await c.version();
          return `version=${v.Version} api=${v.ApiVersion}`;
        } finally { c.close(); }
      },
    });
  }
  const kubeconfig = f.optStr('kubeconfig');
  if (f.bool('kubernetes') || kubeconfig) {
    out.push({
      name: 'kubernetes', target: kubeconfig ?? '(in-cluster or ~/.kube/config)', run: async () => {
        const { kubernetesVersion } = await import('@gantry/registrator');
        const v = await kubernetesVersion(kubeconfig, ms);
        return `server=${redactUrl(v.server)} version=${v.version}`;
      },
    });
  }
  return out;
}

export const doctor: Command = {
  name: 'doctor',
  summary: 'Checks that the Consul agent answers (leader elected, ACL token accepted), and every other engine the flags name: Redis, HAProxy\'s sockets, Docker, the kube-apiserver.',
  flags,
  async run(f, ctx) {
    const consul = createConsul(consulConfigFromFlags(f));
    let failed = 0;
    try {
      const leader = await consul.request<string>('GET', '/v1/status/leader', { timeoutMs: f.ms('timeout') });
      const self = await consul.request<{ Config?: { NodeName?: string; Datacenter?: string; Version?: string } }>('GET', '/v1/agent/self', { timeoutMs: f.ms('timeout') });
      const c = self.body.Config ?? {};
      ctx.stdout.write(`consul: ok ${consul.baseUrl} leader=${leader.body} node=${c.NodeName} dc=${c.Datacenter} version=${c.Version}\n`);
    } catch (err) {
      ctx.stdout.write(`consul: FAILED ${consul.baseUrl}: ${errorMessage(err)}\n`);
      failed++;
    } finally {
      consul.close();
    }
    for (const c of checks(f)) {
      try {
        ctx.stdout.write(`${c.name}: ok ${c.target} ${await c.run()}\n`);
      } catch (err) {
        ctx.stdout.write(`${c.name}: FAILED ${c.target}: ${errorMessage(err)}\n`);
        failed++;
      }
    }
    return failed ? 1 : 0;
  },
};
