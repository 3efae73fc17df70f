// One Redis connection factory for every part (audit trail, gateway rate
// limits): a plain URL connects directly, a redis+sentinel:// URL asks the
// sentinels for the master and follows failovers (see redis-url.ts). Kept out
// of core's index so parts that never talk to Redis do not load ioredis:
// import from '@gantry/core/redis'.
import { Redis, type RedisOptions } from 'ioredis';
import { parseRedisUrl } from './redis-url.ts';

export { parseRedisUrl, REDIS_URL_SCHEMES, type RedisTarget } from './redis-url.ts';

export function createRedis(url: string, options: RedisOptions = {}): Redis {
  const t = parseRedisUrl(url);
  if (t.kind === 'direct') return new Redis(url, options);
  return new Redis({
    ...options,
    sentinels: t.sentinels,
    name: t.name,
    db: t.db,
    ...(t.username ? { username: t.username } : {}),
    ...(t.password ? { password: t.password } : {}),
    ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword } : {}),
    // a sentinel that is down is retried like the master; a failover is noticed
    // from the sentinels' +switch-master, not only from the broken connection
    sentinelRetryStrategy: (times) => Math.min(2000, 100 * times),
    failoverDetector: true,
  });
}
