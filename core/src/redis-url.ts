// Redis connection URLs: a plain redis:// (or rediss://) URL, or a Sentinel
// deployment, redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/<db>].
// The password (userinfo) is the data nodes' one; sentinels are asked without
// one unless ?sentinelPassword= is given. Errors name the URL redacted.
import { GantryError } from './errors.ts';
import { redactUrl } from './logger.ts';

export type RedisTarget =
  | { kind: 'direct'; url: string }
  | {
      kind: 'sentinel';
      sentinels: Array<{ host: string; port: number }>;
      /** the master's name the sentinels monitor */
      name: string;
      username?: string;
      password?: string;
      sentinelPassword?: string;
      db: number;
    };

export const REDIS_URL_SCHEMES = ['redis', 'rediss', 'redis+sentinel'] as const;

const bad = (url: string, why: string): GantryError =>
  new GantryError('E_REDIS_URL', `invalid Redis URL ${JSON.stringify(redactUrl(url))}: ${why}`);

export function parseRedisUrl(url: string): RedisTarget {
  const scheme = /^([a-z+]+):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'redis' || scheme === 'rediss') {
    try { new URL(url); } catch { throw bad(url, 'not a URL'); }
    return { kind: 'direct', url };
  }
  if (scheme !== 'redis+sentinel') throw bad(url, `scheme must be one of ${REDIS_URL_SCHEMES.join(', ')}`);
  const rest = url.slice('redis+sentinel://'.length);
  const [beforeQuery = '', query = ''] = rest.split('?', 2);
  const at = beforeQuery.lastIndexOf('@', beforeQuery.indexOf('/') === -1 ? undefined : beforeQuery.indexOf('/'));
  const userinfo = at === -1 ? '' : beforeQuery.slice(0, at);
  const [hostList = '', name = '', db = '0', ...extra] = beforeQuery.slice(at + 1).split('/');
  if (extra.length) throw bad(url, 'expected /<master name>[/<db>] after the sentinels');
  if (!name) throw bad(url, 'the master name is missing (redis+sentinel://host:port,host:port/<master>)');
  if (!/^\d+$/.test(db)) throw bad(url, `database ${JSON.stringify(db)} is not a number`);
  const sentinels = hostList.split(',').map((hp) => {
    const m = /^(\[[0-9a-f:.]+\]|[^:\s[\]]+)(?::(\d{1,5}))?$/i.exec(hp.trim());
    const port = Number(m?.[2] ?? 26379);
    if (!m || port < 1 || port > 65535) throw bad(url, `sentinel address ${JSON.stringify(hp)} is not host:port`);
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });
  const target: RedisTarget = { kind: 'sentinel', sentinels, name: decodeURIComponent(name), db: Number(db) };
  if (userinfo) {
    const colon = userinfo.indexOf(':');
    const user = decodeURIComponent(colon === -1 ? userinfo : userinfo.slice(0, colon));
    const pass = colon === -1 ? '' : decodeURIComponent(userinfo.slice(colon + 1));
    if (user) target.username = user;
    if (pass) target.password = pass;
  }
  const sp = new URLSearchParams(query).get('sentinelPassword');
  if (sp) target.sentinelPassword = sp;
  return target;
}
