// Profiling aid (not part of `npm run bench`): the gateway's request pipeline
// on a fixed one-service catalog snapshot, without Consul, so the data path can
// be measured and profiled (`node --cpu-prof`) alone, e.g. against HAProxy on
// the same upstream. Args: <listen-port> <upstream-port> [access-log: 0|1].
import http from 'node:http';
import type { CatalogInstance, CatalogSnapshot } from '@gantry/core';
import { standaloneGateway } from './standalone.ts';

const [port, upstreamPort, accessLog] = process.argv.slice(2).map(Number);
const inst: CatalogInstance = {
  key: 'node\u0000bench-1', node: 'node', nodeAddress: '127.0.0.1', id: 'bench-1', service: 'bench',
  address: '127.0.0.1', port: upstreamPort!, tags: [], meta: {}, createIndex: 1, modifyIndex: 1, status: 'passing',
};
const snap: CatalogSnapshot = { services: new Map([['bench', [inst]]]), kv: new Map(), indexes: { catalog: '1', health: '1', kv: null }, version: 1 };
const { gateway, source } = standaloneGateway(() => snap, { accessLog: accessLog === 1 });
source.start();
const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 60_000, requireHostHeader: false });
gateway.attach(server);
server.listen(port, '127.0.0.1', () => process.stderr.write('ready\n'));
process.on('SIGINT', () => { server.close(); server.closeAllConnections(); process.exit(0); });
