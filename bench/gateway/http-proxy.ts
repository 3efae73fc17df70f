// node http-proxy (the unmaintained library named for the job), as the bench's
// baseline: one target, keep-alive agent, nothing else. Args: <port> <target-port>.
import http from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${target}`, agent, xfwd: true });
proxy.on('error', (_err, _req, res) => {
  if (res instanceof http.ServerResponse && !res.headersSent) { res.statusCode = 502; res.end(); }
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
