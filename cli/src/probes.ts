// Small probes of the engines `gantry doctor` checks that have no client in
// core: Redis (AUTH from the URL, then PING) and HAProxy's sockets (one
// command each). Each resolves with what it found or rejects with why; none
// ever puts a password in its message.
import net from 'node:net';
import tls from 'node:tls';
import { redactUrl } from '@gantry/core';

/** `halfClose`: end our side after the command (HAProxy's master CLI answers only then) */
function exchange(connect: () => net.Socket, send: string, done: (text: string) => boolean, timeoutMs: number, what: string, halfClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect();
    let text = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`${what}: no answer within ${timeoutMs} ms`)); }, timeoutMs);
    const finish = (err?: Error): void => { clearTimeout(timer); s.destroy(); if (err) reject(err); else resolve(text); };
    const write = (): void => { if (halfClose) s.end(send); else s.write(send); };
    if (s instanceof tls.TLSSocket) s.once('secureConnect', write); else s.once('connect', write);
    s.on('data', (d: Buffer) => { text += d.toString('utf8'); if (done(text)) finish(); });
    s.once('error', (err: Error) => finish(new Error(`${what}: ${err.message}`)));
    s.once('close', () => finish());
  });
}

const resp = (...args: string[]): string => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/** PING through the URL's credentials; resolves with the server's version. */
export async function probeRedis(url: string, timeoutMs: number): Promise<string> {
  const u = new URL(url);
  const port = Number(u.port || 6379);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const connect = (): net.Socket => (u.protocol === 'rediss:' ? tls.connect({ host, port, servername: host }) : net.connect({ host, port }));
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  const auth = pass ? (user ? resp('AUTH', user, pass) : resp('AUTH', pass)) : '';
  const text = await exchange(connect, `${auth}${resp('PING')}${resp('INFO', 'server')}`, (t) => /redis_version:[^\r\n]*\r\n/.test(t) || /^-/m.test(t), timeoutMs, redactUrl(url));
  const err = /^-(.*)$/m.exec(text);
  if (err) throw new Error(`${redactUrl(url)}: ${err[1]!.trim()}`); // Redis's answer names no password
  const v = /redis_version:([^\r\n]+)/.exec(text)?.[1];
  if (!v) throw new Error(`${redactUrl(url)}: no answer to PING/INFO (is it Redis?)`);
  return v;
}

/** One command on an HAProxy admin (Runtime API) or master CLI socket. */
export async function probeHAProxySocket(path: string, kind: 'admin' | 'master', timeoutMs: number): Promise<string> {
  const cmd = kind === 'admin' ? 'show info\n' : 'show proc\n';
  const text = await exchange(() => net.connect(path), cmd, () => false, timeoutMs, path, true);
  if (kind === 'admin') {
    const v = /^Version: (.*)$/m.exec(text);
    if (!v) throw new Error(`${path}: no "show info" answer (is it the admin socket?)`);
    return `version=${v[1]} pid=${/^Pid: (\d+)/m.exec(text)?.[1] ?? '?'}`;
  }
  if (!/^#\s*<PID>/m.test(text)) throw new Error(`${path}: no "show proc" answer (is it the master socket?)`);
  return `workers=${text.split('\n').filter((l) => /^\d+\s+worker/.test(l)).length}`;
}
