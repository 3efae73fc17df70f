// One command to a unix (or TCP) socket that answers and closes: HAProxy's admin
// and master CLI sockets, ZooKeeper's four-letter words.
import net from 'node:net';

export function socketCommand(target: string | { host: string; port: number }, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = typeof target === 'string' ? net.connect(target) : net.connect(target.port, target.host);
    let out = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`${command.trim()}: no answer from ${JSON.stringify(target)} in ${timeoutMs} ms`)); }, timeoutMs);
    sock.setEncoding('utf8');
    // write, then half-close: HAProxy's master CLI answers once our side is done
    sock.on('connect', () => sock.end(command.endsWith('\n') ? command : `${command}\n`));
    sock.on('data', (d: string) => { out += d; });
    sock.on('error', (err) => { clearTimeout(timer); reject(err); });
    sock.on('close', () => { clearTimeout(timer); resolve(out); });
  });
}
