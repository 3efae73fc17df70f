// A Dubbo 3 provider's application-level registration, written by Apache
// Curator's own ServiceDiscovery (Debian's libcurator-discovery-java) with the
// payload class Dubbo 3 registers (org.apache.dubbo.registry.zookeeper.ZookeeperInstance:
// id, name, metadata), through Curator's JsonInstanceSerializer — the bytes Dubbo 3's
// ZookeeperServiceDiscovery writes at <basePath>/<app>/<id>. Prints REGISTERED <path>;
// unregisters when the JVM is stopped (SIGTERM).
// Usage: java -cp <jars> CuratorProvider.java <connect> <basePath> <app> <id> <address> <port> [key=value ...]
package org.apache.dubbo.registry.zookeeper;

import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.RetryNTimes;
import org.apache.curator.utils.ZKPaths;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;

public class CuratorProvider {
  public static void main(String[] args) throws Exception {
    CuratorFramework client = CuratorFrameworkFactory.builder().connectString(args[0]).sessionTimeoutMs(30000).connectionTimeoutMs(10000)
        .retryPolicy(new RetryNTimes(Integer.MAX_VALUE, 500)).build();
    client.start();
    client.blockUntilConnected();
    Map<String, String> metadata = new LinkedHashMap<>();
    for (int i = 6; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      metadata.put(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    ZookeeperInstance payload = new ZookeeperInstance(args[3], args[2], metadata);
    ServiceInstance<ZookeeperInstance> instance = ServiceInstance.<ZookeeperInstance>builder()
        .name(args[2]).id(args[3]).address(args[4]).port(Integer.parseInt(args[5])).payload(payload).build();
    ServiceDiscovery<ZookeeperInstance> discovery = ServiceDiscoveryBuilder.builder(ZookeeperInstance.class).client(client).basePath(args[1])
        .serializer(new JsonInstanceSerializer<>(ZookeeperInstance.class)).thisInstance(instance).build();
    discovery.start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try { discovery.close(); client.close(); } catch (Exception e) { /* exiting */ }
    }));
    System.out.println("REGISTERED " + ZKPaths.makePath(args[1], args[2], args[3]));
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}

/** the shape of Dubbo 3's org.apache.dubbo.registry.zookeeper.ZookeeperInstance */
class ZookeeperInstance {
  public String id;
  public String name;
  public Map<String, String> metadata = new LinkedHashMap<>();
  public ZookeeperInstance() {}
  ZookeeperInstance(String id, String name, Map<String, String> metadata) { this.id = id; this.name = name; this.metadata = metadata; }
}
