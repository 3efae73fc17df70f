// Catalog writes straight into a real Consul through its HTTP API, for tests that
// need services, checks and KV pairs without an agent-side registration.

export interface Registration {
  id: string;
  name: string;
  address?: string;
  port?: number;
  tags?: string[];
  meta?: Record<string, string>;
  /** a check registered with the service, in the same write; undefined: no check */
  check?: 'passing' | 'warning' | 'critical';
  node?: string;
}

async function consulCall(addr: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${addr}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`Consul ${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) as unknown : undefined;
}

/** one catalog write: node, service and (optionally) its check together */
export async function register(addr: string, r: Registration): Promise<void> {
  const node = r.node ?? 'gantry-test-node';
  await consulCall(addr, 'PUT', '/v1/catalog/register', {
    Node: node,
    Address: '127.0.0.1',
    SkipNodeUpdate: true,
    Service: { ID: r.id, Service: r.name, Address: r.address ?? '127.0.0.1', Port: r.port ?? 80, Tags: r.tags ?? [], Meta: r.meta ?? {} },
    ...(r.check ? { Check: { CheckID: `check:${r.id}`, Name: 'test', ServiceID: r.id, Status: r.check } } : {}),
  });
}

export async function setCheck(addr: string, id: string, status: 'passing' | 'warning' | 'critical', node = 'gantry-test-node'): Promise<void> {
  await consulCall(addr, 'PUT', '/v1/catalog/register', { Node: node, Address: '127.0.0.1', SkipNodeUpdate: true, Check: { CheckID: `check:${id}`, Name: 'test', ServiceID: id, Status: status } });
}

export async function deregister(addr: string, id: string, node = 'gantry-test-node'): Promise<void> {
  await consulCall(addr, 'PUT', '/v1/catalog/deregister', { Node: node, ServiceID: id });
}

export async function kvPut(addr: string, key: string, value: string): Promise<void> {
  const res = await fetch(`${addr}/v1/kv/${key}`, { method: 'PUT', body: value });
  if (!res.ok) throw new Error(`KV put ${key}: ${res.status}`);
}
