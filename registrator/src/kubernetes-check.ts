// Can this host reach the kube-apiserver the registrator would sync from? For
// `gantry doctor`: the same kubeconfig rules as --kubeconfig (file, else
// in-cluster, else ~/.kube/config), one authenticated GET /version.
export async function kubernetesVersion(kubeconfig: string | undefined, timeoutMs: number): Promise<{ server: string; version: string }> {
  const { KubeConfig, VersionApi } = await import('@kubernetes/client-node'); // large: only when asked
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig); else kc.loadFromDefault();
  const server = kc.getCurrentCluster()?.server ?? '(no cluster in the kubeconfig)';
  const api = kc.makeApiClient(VersionApi);
  let timer: NodeJS.Timeout | undefined;
  try {
    const info = await Promise.race([
      api.getCode(),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs); }),
    ]);
    return { server, version: info.gitVersion };
  } finally {
    clearTimeout(timer);
  }
}
