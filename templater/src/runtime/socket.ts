// One request to an HAProxy CLI socket (master CLI or Runtime API): connect,
// send the line, half-close, read until HAProxy closes. Several commands can
// share a line separated by ';'; lines longer than HAProxy's buffer are not
// accepted, so batch() cuts a long list of commands into several requests.
import net from 'node:net';
import { GantryError, errorMessage } from '@gantry/core';

export function cliRequest(socketPath: string, line: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new GantryError('E_HAPROXY_TIMEOUT', `${socketPath}: no answer to ${JSON.stringify(line.slice(0, 60))} in ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.end(line.endsWith('\n') ? line : `${line}\n`));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new GantryError('E_HAPROXY_UNREACHABLE', `${socketPath}: ${errorMessage(err)}`, { cause: err }));
    });
    sock.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('utf8')); });
  });
}

/** HAProxy's default line buffer is 16 kB (tune.bufsize); stay well below it */
const MAX_LINE = 8000;

/** sends commands in as few requests as fit; returns each request's answer */
export async function batch(socketPath: string, commands: readonly string[], timeoutMs = 10_000): Promise<string[]> {
  const answers: string[] = [];
  let line = '';
  for (const c of commands) {
    if (c.includes('\n') || c.includes(';')) throw new GantryError('E_HAPROXY_COMMAND', `command ${JSON.stringify(c.slice(0, 60))} contains a line break or ';'`);
    if (line && line.length + c.length + 2 > MAX_LINE) {
      answers.push(await cliRequest(socketPath, line, timeoutMs));
      line = '';
    }
    line = line ? `${line}; ${c}` : c;
  }
  if (line) answers.push(await cliRequest(socketPath, line, timeoutMs));
  return answers;
}
