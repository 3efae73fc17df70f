// The least a Node process can do to proxy the bench's requests, as a floor for
// the gateway's figures: one upstream, keep-alive sockets, the request head
// forwarded with X-Forwarded-For, the response forwarded once its
// Content-Length is in. No routing, no policy, no checks of any kind (it trusts
// both sides), no timeouts, no metrics: never a product, only a yardstick of
// what Node's sockets cost here. Args: <port> <upstream-port>.
import net from 'node:net';

const [port, upstreamPort] = process.argv.slice(2).map(Number) as [number, number];
const CRLF2 = Buffer.from('\r\n\r\n');
const idle: net.Socket[] = [];

function upstream(use: (s: net.Socket) => void): void {
  const s = idle.pop();
  if (s && !s.destroyed) { use(s); return; }
  const u = net.connect(upstreamPort, '127.0.0.1', () => use(u));
  u.setNoDelay(true);
  u.on('error', () => undefined);
}

net.createServer({ noDelay: true }, (client) => {
  let buf: Buffer | undefined;
  let busy = false;
  client.on('error', () => undefined);
  const next = (): void => {
    if (busy || !buf) return;
    const end = buf.indexOf(CRLF2);
    if (end === -1) return;
    const head = buf.toString('latin1', 0, end);
    buf = buf.length > end + 4 ? buf.subarray(end + 4) : undefined;
    busy = true;
    const out = `${head}\r\nx-forwarded-for: ${client.remoteAddress ?? ''}\r\n\r\n`;
    upstream((u) => {
      let got: Buffer | undefined;
      let remaining = -1;
      const onData = (d: Buffer): void => {
        if (remaining < 0) {
          got = got ? Buffer.concat([got, d]) : d;
          const e = got.indexOf(CRLF2);
          if (e === -1) return;
          const m = /\r\ncontent-length: *(\d+)/i.exec(got.toString('latin1', 0, e));
          remaining = Number(m?.[1] ?? 0) - (got.length - e - 4);
          client.write(got);
        } else {
          remaining -= d.length;
          client.write(d);
        }
        if (remaining <= 0) {
          u.off('data', onData);
          idle.push(u);
          busy = false;
          next();
        }
      };
      u.on('data', onData);
      u.write(out);
    });
  };
  client.on('data', (d: Buffer) => { buf = buf ? Buffer.concat([buf, d]) : d; next(); });
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
