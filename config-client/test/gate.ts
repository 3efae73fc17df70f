// A TCP pass-through in front of a real Consul that the test can shut: while
// shut, every connection through it is cut and new ones are refused at once,
// as the app sees a stopped Consul. It lets a test change Consul while the
// client cannot reach it, then let the client back in.
import net from 'node:net';

export interface Gate {
  readonly addr: string;
  shut(): void;
  open(): void;
  /** cuts every connection; new ones go to this port */
  retarget(port: number): void;
  close(): Promise<void>;
}

export async function startGate(targetPort: number): Promise<Gate> {
  let shut = false;
  let target = targetPort;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (shut) { client.destroy(); return; }
    const upstream = net.connect({ host: '127.0.0.1', port: target });
    sockets.add(client);
    sockets.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    addr: `http://127.0.0.1:${port}`,
    shut() {
      shut = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    open() { shut = false; },
    retarget(port) {
      target = port;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
