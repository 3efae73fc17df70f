// A real kube-apiserver (built from source by scripts/build-kube-apiserver.sh) on its
// own etcd, both on free loopback ports, with a fresh PKI made by openssl at start:
// a self-signed CA, a serving cert for 127.0.0.1/localhost, a service-account signing
// key pair, and a cluster-admin client (a client cert with O=system:masters, and the
// same identity as a static bearer token). No controller-manager or scheduler runs:
// objects are stored and watched, nothing reconciles them.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { kubeApiserverBin, systemBin } from '../bins.ts';
import { spawnEngine, tempDir, freePorts, waitUntil, removeDir, type ManagedProcess } from '../process.ts';

export interface KubeEngine {
  readonly name: string;
  /** https://127.0.0.1:port */
  readonly server: string;
  readonly port: number;
  /** http://127.0.0.1:port of the apiserver's own etcd */
  readonly etcdUrl: string;
  readonly dir: string;
  /** kubeconfig (certs embedded) for a cluster-admin user, context "gantry" */
  readonly kubeconfigPath: string;
  /** PEM files: the CA that signed the serving and client certs */
  readonly caFile: string;
  /** bearer token of the same cluster-admin identity (group system:masters) */
  readonly token: string;
  apiserver: ManagedProcess;
  etcd: ManagedProcess;
  /** a freshly loaded KubeConfig for the cluster-admin user */
  kubeConfig(): KubeConfig;
  /** stop the apiserver alone and start it again on the same port and etcd */
  restart(): Promise<void>;
  /** stop the apiserver and etcd and remove the temp dir */
  stop(): Promise<void>;
  /** the tails of the apiserver's and etcd's logs */
  tail(lines?: number): string;
}

export interface KubeOptions {
  /** extra kube-apiserver flags (--name=value), appended last */
  extraArgs?: string[];
  /** how long to wait for /readyz (default 90 s) */
  readyTimeoutMs?: number;
}

const SERVICE_CIDR = '10.0.0.0/16'; // room for the 1,000-Service benchmark
const SERVICE_IP = '10.0.0.1'; // the first address: the "kubernetes" Service
const ISSUER = 'https://kubernetes.default.svc.cluster.local';

interface Pki {
  caFile: string; caPem: string;
  serverCert: string; serverKey: string;
  clientCertPem: string; clientKeyPem: string;
  saKey: string; saPub: string;
  tokenFile: string; token: string;
}

function openssl(cwd: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() || e.message}`);
  }
}

/** EC P-256 keys everywhere: generated in milliseconds, accepted by Go and node:tls. */
function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'openssl.cnf'), [
    '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', 'CN = unused',
    '[ca_ext]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign,digitalSignature',
    'subjectKeyIdentifier = hash',
    '[server_ext]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage = serverAuth', 'authorityKeyIdentifier = keyid',
    `subjectAltName = IP:127.0.0.1,DNS:localhost,IP:${SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local`,
    '[client_ext]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage = clientAuth', 'authorityKeyIdentifier = keyid',
    '',
  ].join('\n'));
  const genKey = (out: string): void => openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]);
  const serial = (): string => `0x${randomBytes(8).toString('hex')}`;
  const sign = (name: string, subj: string, ext: string): void => {
    genKey(`${name}.key`);
    openssl(dir, ['req', '-new', '-config', 'openssl.cnf', '-key', `${name}.key`, '-subj', subj, '-out', `${name}.csr`]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial(),
      '-days', '3650', '-sha256', '-extfile', 'openssl.cnf', '-extensions', ext, '-out', `${name}.crt`]);
  };
  genKey('ca.key');
  openssl(dir, ['req', '-x509', '-new', '-config', 'openssl.cnf', '-key', 'ca.key', '-subj', '/CN=gantry-test-ca',
    '-days', '3650', '-sha256', '-set_serial', serial(), '-extensions', 'ca_ext', '-out', 'ca.crt']);
  sign('apiserver', '/CN=kube-apiserver', 'server_ext');
  sign('admin', '/O=system:masters/CN=gantry-admin', 'client_ext');
  genKey('sa.key');
  openssl(dir, ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
  const token = randomBytes(24).toString('hex');
  const tokenFile = join(dir, 'tokens.csv');
  // token,user,uid,"group1,group2"
  writeFileSync(tokenFile, `${token},gantry-admin,gantry-admin,"system:masters"\n`, { mode: 0o600 });
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return {
    caFile: join(dir, 'ca.crt'), caPem: read('ca.crt'),
    serverCert: join(dir, 'apiserver.crt'), serverKey: join(dir, 'apiserver.key'),
    clientCertPem: read('admin.crt'), clientKeyPem: read('admin.key'),
    saKey: join(dir, 'sa.key'), saPub: join(dir, 'sa.pub'),
    tokenFile, token,
  };
}

function kubeconfigYaml(server: string, pki: Pki): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: gantry',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(pki.caPem)}`,
    'users:',
    '- name: gantry-admin',
    '  user:',
    `    client-certificate-data: ${b64(pki.clientCertPem)}`,
    `    client-key-data: ${b64(pki.clientKeyPem)}`,
    'contexts:',
    '- name: gantry',
    '  context:',
    '    cluster: gantry',
    '    user: gantry-admin',
    'current-context: gantry',
    '',
  ].join('\n');
}

/** GET path over TLS with the admin client cert; resolves with the status code. */
function httpsStatus(port: number, path: string, pki: Pki): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({
      host: '127.0.0.1', port, path,
      ca: pki.caPem, cert: pki.clientCertPem, key: pki.clientKeyPem,
      timeout: 2000, agent: false,
    }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
  });
}

/** waitUntil's error carries the log tail of a process that exited early */
const isBindError = (err: unknown): boolean => /address already in use/i.test(String(err));

export async function startKube(opts: KubeOptions = {}): Promise<KubeEngine> {
  const apiserverBin = kubeApiserverBin();
  const etcdBin = systemBin('etcd');
  const dir = tempDir('kube');
  try {
    const pki = makePki(join(dir, 'pki'));
    const etcdLog = join(dir, 'etcd.log');
    const apiLog = join(dir, 'kube-apiserver.log');
    const readyTimeoutMs = opts.readyTimeoutMs ?? 90_000;

    // Ports are picked by the kernel and released before use; another test file may
    // grab one in between, so a start that fails to bind is retried on new ports.
    const launchEtcd = async (clientPort: number, peerPort: number): Promise<ManagedProcess> => {
      const client = `http://127.0.0.1:${clientPort}`;
      const peer = `http://127.0.0.1:${peerPort}`;
      const proc = spawnEngine('etcd', etcdBin, [
        '--name', 'gantry',
        '--data-dir', join(dir, 'etcd'),
        '--listen-client-urls', client, '--advertise-client-urls', client,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `gantry=${peer}`, '--initial-cluster-state', 'new',
        '--initial-cluster-token', `gantry-${clientPort}`,
        '--unsafe-no-fsync', '--logger', 'zap', '--log-level', 'warn',
      ], { logFile: etcdLog, cwd: dir });
      try {
        await waitUntil('etcd', async () => {
          const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
          const body = (await res.json()) as { health?: string };
          return res.ok && body.health === 'true';
        }, { proc, timeoutMs: 30_000 });
      } catch (err) {
        await proc.kill();
        throw err;
      }
      return proc;
    };

    let etcd: ManagedProcess | undefined;
    let etcdPort = 0;
    for (let attempt = 1; !etcd; attempt++) {
      const [c, p] = await freePorts(2);
      try {
        etcd = await launchEtcd(c!, p!);
        etcdPort = c!;
      } catch (err) {
        removeDir(join(dir, 'etcd'));
        if (attempt >= 3 || !isBindError(err)) throw err;
      }
    }
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;

    const apiArgs = (port: number): string[] => [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${port}`,
      `--cert-dir=${join(dir, 'certs')}`,
      `--tls-cert-file=${pki.serverCert}`, `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caFile}`,
      `--token-auth-file=${pki.tokenFile}`,
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      `--service-account-issuer=${ISSUER}`,
      `--api-audiences=${ISSUER}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--authorization-mode=Node,RBAC',
      // no controller-manager creates the "default" ServiceAccount of a namespace:
      // without this, creating a Pod fails with "serviceaccount default not found"
      '--disable-admission-plugins=ServiceAccount',
      // the apiserver would publish its own address as the endpoints of the "kubernetes"
      // Service, and 127.0.0.1 is rejected there (loopback) every 10 s: the Service is
      // still created, without endpoints
      '--endpoint-reconciler-type=none',
      '--enable-priority-and-fairness=false',
      '--profiling=false',
      '--v=1',
      ...(opts.extraArgs ?? []),
    ];

    const launchApiserver = async (port: number): Promise<ManagedProcess> => {
      const proc = spawnEngine('kube-apiserver', apiserverBin, apiArgs(port), { logFile: apiLog, cwd: dir });
      try {
        await waitUntil('kube-apiserver /readyz', async () => (await httpsStatus(port, '/readyz', pki)) === 200,
          { proc, timeoutMs: readyTimeoutMs, intervalMs: 250 });
      } catch (err) {
        await proc.kill();
        throw err;
      }
      return proc;
    };

    let apiserver: ManagedProcess | undefined;
    let port = 0;
    for (let attempt = 1; !apiserver; attempt++) {
      const [p] = await freePorts(1);
      try {
        apiserver = await launchApiserver(p!);
        port = p!;
      } catch (err) {
        if (attempt >= 3 || !isBindError(err)) {
          await etcd.stop();
          throw err;
        }
      }
    }

    const server = `https://127.0.0.1:${port}`;
    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, pki), { mode: 0o600 });

    const engine: KubeEngine = {
      name: 'kube-apiserver',
      server, port, etcdUrl, dir, kubeconfigPath,
      caFile: pki.caFile,
      token: pki.token,
      apiserver,
      etcd,
      kubeConfig() {
        const kc = new KubeConfig();
        kc.loadFromFile(kubeconfigPath);
        return kc;
      },
      async restart() {
        await engine.apiserver.stop(15_000);
        // the old listener is closed once the process has exited; retry a bind race briefly
        for (let attempt = 1; ; attempt++) {
          try {
            engine.apiserver = await launchApiserver(port);
            return;
          } catch (err) {
            if (attempt >= 5 || !isBindError(err)) throw err;
            await new Promise((r) => setTimeout(r, 500));
          }
        }
      },
      async stop() {
        await engine.apiserver.stop(15_000);
        await engine.etcd.stop();
        removeDir(dir);
      },
      tail: (n = 40) =>
        `--- kube-apiserver (${apiLog}) ---\n${engine.apiserver.tail(n)}\n--- etcd (${etcdLog}) ---\n${engine.etcd.tail(Math.ceil(n / 2))}`,
    };
    return engine;
  } catch (err) {
    removeDir(dir);
    throw err;
  }
}
