// The flags of the ZooKeeper bridge and of static service files (`gantry registrator`).
import type { FlagSpec } from '@gantry/core';

export const bridgeFlags: readonly FlagSpec[] = [
  { name: 'zookeeper', type: 'string', env: 'GANTRY_ZOOKEEPER', description: 'host:port,host:port[/chroot]: bridge Dubbo providers between this ZooKeeper and Consul' },
  { name: 'zk-roots', type: 'list', default: ['/dubbo'], description: 'Dubbo registry roots to import (<root>/<interface>/providers)' },
  { name: 'zk-layout', type: 'enum', choices: ['interface', 'application', 'both'], default: 'interface', description: 'what to import: Dubbo 2 interface nodes (<root>/<interface>/providers), application-level instances (Dubbo 3, Spring Cloud Zookeeper, Curator ServiceDiscovery: <app-root>/<app>/<instance> with ServiceInstance JSON), or both' },
  { name: 'zk-app-roots', type: 'list', default: ['/services'], description: 'application-layout roots to import (<root>/<app>/<instance>); used with --zk-layout application|both' },
  { name: 'zk-service-name', type: 'string', default: 'interface', description: 'Consul name of an imported provider: interface, application, or a template such as {application}-{interface} (made DNS-safe)' },
  { name: 'zk-name', type: 'string', default: 'default', description: 'this bridge\'s name: in its owner id, its Consul node and its leader key' },
  { name: 'zk-session-timeout', type: 'duration', default: '10s', description: 'ZooKeeper session timeout' },
  { name: 'zk-import', type: 'boolean', default: true, description: 'import Dubbo providers from ZooKeeper into Consul' },
  { name: 'zk-export', type: 'boolean', default: true, description: 'export passing Consul instances tagged dubbo.interface=<interface> (or Meta dubbo-interface) as Dubbo provider nodes' },
  { name: 'zk-leader-ttl', type: 'duration', default: '5s', description: 'several bridges on one ZooKeeper: liveness TTL of the leader (failover takes about this long)' },
  { name: 'static', type: 'list', default: [], description: 'files or directories of Consul service definitions (JSON or YAML) for machines without an agent; watched' },
];
