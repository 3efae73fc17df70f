// The container → instances rules, table by table, on `docker inspect`-shaped objects.
import test from 'ava';
import type { ContainerInspectInfo } from 'dockerode';
import { asOwnerId } from '@gantry/core';
import { containerInstances, type DockerSyncOptions } from '../src/sources/docker/container.ts';
import { splitTags } from '../src/sources/docker/metadata.ts';

const opts: DockerSyncOptions = { owner: asOwnerId('o'), hostname: 'host1', hostIp: '192.0.2.1', internal: false, explicit: false, tags: [], deregister: 'always' };

interface Spec {
  name?: string; image?: string; env?: string[]; labels?: Record<string, string>;
  ports?: Record<string, Array<{ HostIp: string; HostPort: string }> | null>; exposed?: string[];
  networks?: Record<string, { IPAddress: string; GlobalIPv6Address?: string }>; mode?: string;
  running?: boolean; exitCode?: number; paused?: boolean; health?: string;
}

function inspect(s: Spec): ContainerInspectInfo {
  const exposed: Record<string, object> = {};
  for (const p of s.exposed ?? Object.keys(s.ports ?? {})) exposed[p] = {};
  return {
    Id: 'c0ffee0000000000000000000000000000000000000000000000000000000001',
    Name: `/${s.name ?? 'web'}`,
    Config: { Image: s.image ?? 'registry.example.com/team/orders:1.2', Env: s.env ?? [], Labels: s.labels ?? {}, ExposedPorts: exposed },
    HostConfig: { NetworkMode: s.mode ?? 'bridge' },
    NetworkSettings: { Ports: s.ports ?? {}, Networks: s.networks ?? { bridge: { IPAddress: '172.17.0.5' } } },
    State: { Running: s.running ?? true, Paused: s.paused ?? false, ExitCode: s.exitCode ?? 0, Status: 'running', ...(s.health ? { Health: { Status: s.health } } : {}) },
  } as unknown as ContainerInspectInfo;
}
const one = (s: Spec, o: Partial<DockerSyncOptions> = {}) => containerInstances(inspect(s), { ...opts, ...o });
const pub = (port: string, host = '32768', ip = '0.0.0.0') => ({ [port]: [{ HostIp: ip, HostPort: host }] });

test('default: image base name, published host port, host address for 0.0.0.0, registrator ID', (t) => {
  const r = one({ ports: pub('80/tcp') });
  t.is(r.instances.length, 1);
  t.like(r.instances[0], { name: 'orders', address: '192.0.2.1', port: 32768, id: 'host1:web:80' });
  t.is(one({ ports: pub('80/tcp', '32768', '127.0.0.1') }).instances[0]!.address, '127.0.0.1');
  t.is(one({ ports: pub('80/tcp') }, { ip: '198.51.100.7' }).instances[0]!.address, '198.51.100.7');
});

test('no published port: nothing, unless --internal (container IP, exposed port)', (t) => {
  t.is(one({ exposed: ['80/tcp'], ports: { '80/tcp': null } }).instances.length, 0);
  const r = one({ exposed: ['80/tcp'], ports: { '80/tcp': null } }, { internal: true });
  t.like(r.instances[0], { address: '172.17.0.5', port: 80 });
});

test('multi-network containers use --network, never a random one; IPv6-only networks work', (t) => {
  const networks = { front: { IPAddress: '10.10.0.2' }, back: { IPAddress: '10.20.0.2' } };
  t.is(one({ exposed: ['80/tcp'], networks }, { internal: true, network: 'front' }).instances[0]!.address, '10.10.0.2');
  t.is(one({ exposed: ['80/tcp'], networks }, { internal: true, network: 'back' }).instances[0]!.address, '10.20.0.2');
  // without --network: the same answer every time (sorted), not map order
  const a = one({ exposed: ['80/tcp'], networks }, { internal: true }).instances[0]!.address;
  const b = one({ exposed: ['80/tcp'], networks: { back: networks.back, front: networks.front } }, { internal: true }).instances[0]!.address;
  t.is(a, b);
  const v6 = one({ exposed: ['80/tcp'], networks: { v6net: { IPAddress: '', GlobalIPv6Address: '2001:db8::5' } } }, { internal: true });
  t.is(v6.instances[0]!.address, '2001:db8::5');
  const v6check = one({ exposed: ['80/tcp'], env: ['SERVICE_CHECK_HTTP=/health'], networks: { v6net: { IPAddress: '', GlobalIPv6Address: '2001:db8::5' } } }, { internal: true });
  t.like(v6check.instances[0]!.checks[0], { kind: 'http', url: 'http://[2001:db8::5]:80/health' });
});

test('host networking: host address and exposed ports', (t) => {
  const r = one({ mode: 'host', exposed: ['9000/tcp'] });
  t.like(r.instances[0], { address: '192.0.2.1', port: 9000 });
});

test('--use-ip-from-label overrides the address', (t) => {
  const r = one({ ports: pub('80/tcp'), labels: { 'com.example.ip': '203.0.113.4' } }, { useIpFromLabel: 'com.example.ip' });
  t.is(r.instances[0]!.address, '203.0.113.4');
});

test('SERVICE_IGNORE, --explicit, --require-label', (t) => {
  t.is(one({ ports: pub('80/tcp'), env: ['SERVICE_IGNORE=1'] }).instances.length, 0);
  t.is(one({ ports: pub('80/tcp'), env: ['SERVICE_80_IGNORE=true'] }).instances.length, 0);
  t.is(one({ ports: pub('80/tcp') }, { explicit: true }).instances.length, 0);
  t.is(one({ ports: pub('80/tcp'), env: ['SERVICE_NAME=x'] }, { explicit: true }).instances.length, 1);
  t.is(one({ ports: pub('80/tcp') }, { requireLabel: 'gantry.enable=true' }).instances.length, 0);
  t.is(one({ ports: pub('80/tcp'), labels: { 'gantry.enable': 'true' } }, { requireLabel: 'gantry.enable=true' }).instances.length, 1);
  t.is(one({ ports: pub('80/tcp'), labels: { 'gantry.enable': 'no' } }, { requireLabel: 'gantry.enable=true' }).instances.length, 0);
});

test('port keys override generic keys; a port-specific name drops the -<port> suffix; SERVICE_ID; gantry.* labels', (t) => {
  const r = one({ ports: { ...pub('80/tcp', '1'), ...pub('443/tcp', '2') }, env: ['SERVICE_NAME=shop', 'SERVICE_443_NAME=shop-tls', 'SERVICE_80_ID=custom-id'], labels: { 'gantry.443.tags': 'tls' } });
  const byPort = new Map<number, Record<string, unknown>>(r.instances.map((i) => [i.port, { ...i }]));
  t.like(byPort.get(1), { name: 'shop-80', id: 'custom-id' });
  t.like(byPort.get(2), { name: 'shop-tls', id: 'host1:web:443', tags: ['tls'] });
  t.is(String(one({ ports: pub('80/tcp'), labels: { 'gantry.name': 'modern' } }).instances[0]!.name), 'modern');
});

test('checks from SERVICE_CHECK_* keys', (t) => {
  const mk = (env: string[]) => one({ ports: pub('80/tcp', '8080', '127.0.0.1'), env }).instances[0]!.checks;
  t.deepEqual(mk(['SERVICE_CHECK_HTTP=/health', 'SERVICE_CHECK_INTERVAL=5s', 'SERVICE_CHECK_TIMEOUT=1s']), [{ kind: 'http', url: 'http://127.0.0.1:8080/health', interval: '5s', timeout: '1s' }]);
  t.deepEqual(mk(['SERVICE_CHECK_TCP=true']), [{ kind: 'tcp', address: '127.0.0.1:8080', interval: '10s' }]);
  t.deepEqual(mk(['SERVICE_CHECK_TTL=30s']), [{ kind: 'ttl', ttl: '30s' }]);
  t.deepEqual(mk(['SERVICE_CHECK_GRPC=true', 'SERVICE_CHECK_DEREGISTER_AFTER=1m']), [{ kind: 'grpc', address: '127.0.0.1:8080', interval: '10s', deregisterAfter: '1m' }]);
  // one check, by registrator's order: http wins over tcp and ttl
  t.deepEqual(mk(['SERVICE_CHECK_TCP=true', 'SERVICE_CHECK_TTL=5s', 'SERVICE_CHECK_HTTP=/h']).map((c) => c.kind), ['http']);
  t.deepEqual(mk(['SERVICE_CHECK_TCP=true', 'SERVICE_CHECK_TTL=5s']).map((c) => c.kind), ['ttl']);
  const zero = one({ ports: pub('80/tcp'), env: ['SERVICE_CHECK_TCP=true', 'SERVICE_CHECK_INTERVAL=0'] });
  t.regex(zero.problems[0]!.reason, /more than 0/);
  t.deepEqual(mk(['SERVICE_CHECK_HTTPS=/h', 'SERVICE_CHECK_INITIAL_STATUS=passing']), [{ kind: 'https', url: 'https://127.0.0.1:8080/h', tlsSkipVerify: false, interval: '10s', initialStatus: 'passing' }]);
  const bad = one({ ports: pub('80/tcp'), env: ['SERVICE_CHECK_HTTP=/', 'SERVICE_CHECK_INITIAL_STATUS=great'] });
  t.is(bad.instances.length, 0);
  t.regex(bad.problems[0]!.reason, /passing, warning or critical/);
});

test('script checks only with --allow-script-checks (off by default, as Consul\'s enable_script_checks); refused ones are reported', (t) => {
  const env = ['SERVICE_CHECK_SCRIPT=check $SERVICE_IP $SERVICE_PORT'];
  const allowed = one({ ports: pub('80/tcp', '8080', '127.0.0.1'), env }, { allowScriptChecks: true });
  t.deepEqual(allowed.instances[0]!.checks, [{ kind: 'script', args: ['/bin/sh', '-c', 'check 127.0.0.1 8080'], interval: '10s' }]);
  for (const e of [env, ['SERVICE_CHECK_CMD=/bin/health']]) {
    const refused = one({ ports: pub('80/tcp', '8080', '127.0.0.1'), env: e });
    t.is(refused.instances.length, 0, e[0]);
    t.like(refused.problems[0], { container: 'c0ffee0000000000000000000000000000000000000000000000000000000001', name: 'web', where: `env ${e[0]!.split('=')[0]}`, port: '80' });
    t.regex(refused.problems[0]!.reason, /script checks are off.*--allow-script-checks/);
  }
});

test('other keys become Meta; HEALTHCHECK and pause become status and maintenance; --deregister on-success', (t) => {
  const r = one({ ports: pub('80/tcp'), env: ['SERVICE_VERSION=1.2', 'SERVICE_REGION=eu'], health: 'unhealthy', paused: true });
  t.like(r.instances[0]!.meta, { version: '1.2', region: 'eu', 'gantry-source': 'docker', 'gantry-owner': 'o' });
  t.is(r.instances[0]!.status, 'critical');
  t.true(r.instances[0]!.maintenance);
  t.is(one({ ports: pub('80/tcp'), health: 'healthy' }).instances[0]!.status, 'passing');
  t.is(one({ ports: pub('80/tcp'), health: 'starting' }).instances[0]!.status, 'critical');
  t.is(one({ ports: pub('80/tcp') }).instances[0]!.status, undefined);
  t.is(one({ ports: pub('80/tcp'), running: false, exitCode: 1 }).instances.length, 0);
  const kept = one({ ports: pub('80/tcp'), running: false, exitCode: 1 }, { deregister: 'on-success' });
  t.is(kept.instances[0]!.status, 'critical');
  t.is(one({ ports: pub('80/tcp'), running: false, exitCode: 0 }, { deregister: 'on-success' }).instances.length, 0);
});

test('tags: --tags added, \\, kept, duplicates dropped', (t) => {
  t.deepEqual(splitTags('a\\,b, c ,,d'), ['a,b', 'c', 'd']);
  t.deepEqual(one({ ports: pub('80/tcp'), env: ['SERVICE_TAGS=x,y'] }, { tags: ['y', 'z'] }).instances[0]!.tags, ['x', 'y', 'z']);
});

test('hostile names never reach Consul unescaped', (t) => {
  const r = one({ ports: pub('80/tcp'), name: 'we b', env: ['SERVICE_NAME=orders svc#1', 'SERVICE_ID=a b\nc'] });
  t.is(String(r.instances[0]!.name), 'orders-svc-1');
  t.regex(r.instances[0]!.id, /^[A-Za-z0-9_.:-]+$/);
  // every change escaping made is reported with where it came from, the original and the result
  t.like(r.escaped.find((e) => e.what === 'name'), { where: 'env SERVICE_NAME', original: 'orders svc#1', result: 'orders-svc-1', port: '80', name: 'we b' });
  t.like(r.escaped.find((e) => e.what === 'id'), { where: 'env SERVICE_ID', original: 'a b\nc' });
  t.like(one({ ports: pub('80/tcp'), image: 'team/my_app:1' }).escaped[0], { what: 'name', where: 'image name', original: 'my_app', result: 'my-app' });
  t.deepEqual(one({ ports: pub('80/tcp'), env: ['SERVICE_NAME=clean'] }).escaped, []);
  const meta = one({ ports: pub('80/tcp'), env: ['SERVICE_NOTE=line1\nline2'] });
  t.is(meta.instances.length, 0);
  t.regex(meta.problems[0]!.reason, /control character/);
});
