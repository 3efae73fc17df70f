// Where the engines' binaries are: Debian's packages on PATH, and the ones
// Gantry builds from source (Consul, kube-apiserver) cached under ~/.cache/gantry/bin.
import { readFileSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function readVersions(): Record<string, string> {
  const text = readFileSync(join(repoRoot, 'scripts', 'versions.env'), 'utf8');
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

export const versions = readVersions();
export const binDir = process.env.GANTRY_BIN_DIR ?? join(homedir(), '.cache', 'gantry', 'bin');

function built(name: string, version: string | undefined): string {
  const p = join(binDir, `${name}-${version ?? 'unknown'}`);
  if (!existsSync(p)) {
    throw new Error(`${name} ${version} is not built (expected ${p}); run 'make deps' (scripts/build-${name}.sh)`);
  }
  return p;
}

export const consulBin = (): string => built('consul', versions.CONSUL_VERSION);
export const kubeApiserverBin = (): string => built('kube-apiserver', versions.KUBE_VERSION);

/** A binary from the system (Debian packages); fails loudly when missing. */
export function systemBin(name: string, candidates: string[] = []): string {
  const dirs = [...candidates, ...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin'];
  for (const d of dirs) {
    const p = d.endsWith(`/${name}`) ? d : join(d, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} not found on PATH or in /usr/sbin; run 'make deps' to install it`);
}
