// A Dubbo consumer's view of ZooKeeper, through Apache Curator as Dubbo 2.7's
// ZookeeperRegistry does it: getChildren of /dubbo/<interface>/providers with a
// watcher re-armed on every change, each child URL-decoded (URLDecoder). Prints
// one line per listing: PROVIDERS <decoded URL>\t<decoded URL>... (empty: none),
// and SESSION <state> on connection changes. Usage: java -cp <jars> DubboConsumer.java <connect> <interface> [root]
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.CuratorWatcher;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;

public class DubboConsumer {
  static CuratorFramework client;
  static String path;

  static synchronized void list() throws Exception {
    List<String> children;
    try {
      children = client.getChildren().usingWatcher((CuratorWatcher) (WatchedEvent e) -> list()).forPath(path);
    } catch (KeeperException.NoNodeException e) {
      client.checkExists().usingWatcher((CuratorWatcher) (WatchedEvent ev) -> list()).forPath(path);
      children = Collections.emptyList();
    }
    List<String> urls = new ArrayList<>();
    for (String c : children) urls.add(URLDecoder.decode(c, StandardCharsets.UTF_8));
    Collections.sort(urls);
    System.out.println("PROVIDERS " + String.join("\t", urls));
    System.out.flush();
  }

  public static void main(String[] args) throws Exception {
    String root = args.length > 2 ? args[2] : "/dubbo";
    path = root + "/" + args[1] + "/providers";
    client = CuratorFrameworkFactory.builder().connectString(args[0]).sessionTimeoutMs(30000).connectionTimeoutMs(10000)
        .retryPolicy(new RetryNTimes(Integer.MAX_VALUE, 500)).build();
    client.getConnectionStateListenable().addListener((c, s) -> { System.out.println("SESSION " + s); System.out.flush(); });
    client.start();
    client.blockUntilConnected();
    list();
    Thread.sleep(Long.MAX_VALUE);
  }
}
