// The informer against a real apiserver whose connection is cut (a socat proxy
// in front of it) while the watched resourceVersion is compacted away in etcd:
// the re-watch gets 410 Gone, the informer lists again, and its store matches.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, type V1Service } from '@kubernetes/client-node';
import { createLogger } from '@gantry/core';
import { startKube } from '../../test/harness/engines/kube.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { spawnEngine, freePort, waitUntil, tcpReady, type ManagedProcess } from '../../test/harness/process.ts';
import { systemBin } from '../../test/harness/bins.ts';
import { Informer } from '../src/sources/kubernetes/informer.ts';

const track = manageEngines(test);

test('watch expired (410 Gone) after a disconnection: list again, store converges', async (t) => {
  const kube = await startKube();
  track('kube', kube);
  const port = await freePort();
  let proxy: ManagedProcess | undefined;
  const startProxy = async (): Promise<void> => {
    proxy = spawnEngine('socat', systemBin('socat'), [`TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `TCP:127.0.0.1:${kube.port}`], { logFile: join(kube.dir, 'socat.log') });
    await waitUntil('proxy', () => tcpReady('127.0.0.1', port), { proc: proxy, timeoutMs: 5000 });
  };
  track('socat', { tail: (n) => proxy?.tail(n) ?? '', stop: async () => { await proxy?.stop(); } });
  await startProxy();
  const proxied = join(kube.dir, 'kubeconfig-proxied');
  writeFileSync(proxied, readFileSync(kube.kubeconfigPath, 'utf8').replace(`127.0.0.1:${kube.port}`, `127.0.0.1:${port}`));
  const kc = new KubeConfig();
  kc.loadFromFile(proxied);
  const direct = kube.kubeConfig().makeApiClient(CoreV1Api);
  const viaProxy = kc.makeApiClient(CoreV1Api);
  await direct.createNamespace({ body: { metadata: { name: 'churn' } } });
  const restarts: string[] = [];
  const informer = new Informer<V1Service>({
    name: 'services', kc, watchPath: '/api/v1/services', log: createLogger({ component: 'test', level: 'warn' }),
    list: (cont) => viaProxy.listServiceForAllNamespaces({ limit: 50, ...(cont ? { _continue: cont } : {}) }),
    onChange: () => undefined,
    onRestart: (_, reason) => restarts.push(reason),
  });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  void informer.run(ac.signal);
  await informer.whenSynced();
  await direct.createNamespacedService({ namespace: 'churn', body: { metadata: { name: 'first' }, spec: { ports: [{ port: 80 }] } } });
  await waitUntil('first seen', async () => informer.store.has('churn/first'), { timeoutMs: 10_000 });

  // cut the informer off, change things, and compact etcd past what it saw
  await proxy!.stop();
  for (let i = 0; i < 30; i++) await direct.createNamespacedService({ namespace: 'churn', body: { metadata: { name: `s${i}` }, spec: { ports: [{ port: 80 }] } } });
  await direct.deleteNamespacedService({ name: 'first', namespace: 'churn' });
  const rev = (await (await fetch(`${kube.etcdUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64') }) })).json()) as { header: { revision: string } };
  const compacted = await fetch(`${kube.etcdUrl}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: rev.header.revision, physical: true }) });
  t.is(compacted.status, 200);
  await kube.restart(); // the apiserver's watch cache starts after the compaction
  await startProxy();

  await waitUntil('converged', async () => informer.store.size >= 31 && !informer.store.has('churn/first') && informer.store.has('churn/s29'), { timeoutMs: 30_000 });
  t.true(restarts.includes('gone'), `restarts: ${restarts.join(',')}`);
  t.false(informer.store.has('churn/first'));
  t.is([...informer.store.keys()].filter((k) => k.startsWith('churn/')).length, 30);
});
