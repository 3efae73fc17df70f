// deploy/kubernetes/registrator.yaml against the real apiserver: every object
// passes a server-side dry run, and the ClusterRole grants exactly what the
// registrator needs (checked with SubjectAccessReviews for its ServiceAccount).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthorizationV1Api, KubernetesObjectApi, loadAllYaml, type KubernetesObject } from '@kubernetes/client-node';
import { startKube } from '../../test/harness/engines/kube.ts';
import { manageEngines } from '../../test/harness/ava.ts';
import { repoRoot } from '../../test/harness/bins.ts';
import { waitUntil } from '../../test/harness/process.ts';

const track = manageEngines(test);

test('the Kubernetes manifest is accepted by a server-side dry run, and its RBAC is least privilege', async (t) => {
  const kube = await startKube();
  track('kube', kube);
  const kc = kube.kubeConfig();
  const objects = loadAllYaml(readFileSync(join(repoRoot, 'deploy', 'kubernetes', 'registrator.yaml'), 'utf8')) as KubernetesObject[];
  t.deepEqual(objects.map((o) => o.kind), ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment']);
  const api = KubernetesObjectApi.makeApiClient(kc);
  // the namespace must exist for the namespaced dry runs
  await api.create(objects[0]!);
  for (const o of objects.slice(1)) {
    const created = await api.create(o, undefined, 'All');
    t.is(created.metadata?.name, o.metadata?.name, `${o.kind} dry run`);
  }
  const deployment = objects[4] as KubernetesObject & { spec: { replicas: number } };
  t.is(deployment.spec.replicas, 2);

  for (const o of objects.slice(1, 4)) await api.create(o); // RBAC for real, to ask the authorizer
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const can = async (verb: string, resource: string, group = ''): Promise<boolean> => {
    const r = await authz.createSubjectAccessReview({ body: { spec: { user: 'system:serviceaccount:gantry:gantry-registrator', groups: ['system:serviceaccounts', 'system:serviceaccounts:gantry'], resourceAttributes: { verb, resource, group } } } });
    return r.status?.allowed === true;
  };
  // the authorizer reads roles and bindings through its own informers: the binding just made
  // reaches it a moment later. Until one grant is seen every answer is a denial, which would make
  // the denials below pass for the wrong reason; after it, every answer is exact
  await waitUntil('the authorizer sees the new ClusterRoleBinding', () => can('get', 'services'), { timeoutMs: 20_000 });
  for (const verb of ['get', 'list', 'watch']) {
    t.true(await can(verb, 'services'), `${verb} services`);
    t.true(await can(verb, 'nodes'), `${verb} nodes`);
    t.true(await can(verb, 'endpointslices', 'discovery.k8s.io'), `${verb} endpointslices`);
  }
  t.true(await can('create', 'events'));
  for (const [verb, resource, group] of [['delete', 'services', ''], ['update', 'services', ''], ['list', 'secrets', ''], ['create', 'pods', ''], ['delete', 'endpointslices', 'discovery.k8s.io']] as const) {
    t.false(await can(verb, resource, group), `${verb} ${resource} must be denied`);
  }
});
