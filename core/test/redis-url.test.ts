import test from 'ava';
import { parseRedisUrl } from '../src/redis-url.ts';
import { parseFlags, type FlagSpec } from '../src/flags.ts';
import { GantryError, UsageError } from '../src/errors.ts';

test('redis urls: a plain redis:// or rediss:// URL connects directly', (t) => {
  t.deepEqual(parseRedisUrl('redis://127.0.0.1:6379/2'), { kind: 'direct', url: 'redis://127.0.0.1:6379/2' });
  t.deepEqual(parseRedisUrl('rediss://:pw@r.example:6380'), { kind: 'direct', url: 'rediss://:pw@r.example:6380' });
});

test('redis urls: redis+sentinel:// names the sentinels, the master, the database and the credentials', (t) => {
  t.deepEqual(parseRedisUrl('redis+sentinel://127.0.0.1:26379,127.0.0.2:26380,[::1]:26381/gantry'), {
    kind: 'sentinel', name: 'gantry', db: 0,
    sentinels: [{ host: '127.0.0.1', port: 26379 }, { host: '127.0.0.2', port: 26380 }, { host: '::1', port: 26381 }],
  });
  t.deepEqual(parseRedisUrl('redis+sentinel://app:p%40ss@s1,s2:1234/my%20master/3?sentinelPassword=sp'), {
    kind: 'sentinel', name: 'my master', db: 3, username: 'app', password: 'p@ss', sentinelPassword: 'sp',
    sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 1234 }],
  });
  t.deepEqual(parseRedisUrl('redis+sentinel://:secret@s1:1/m'), { kind: 'sentinel', name: 'm', db: 0, password: 'secret', sentinels: [{ host: 's1', port: 1 }] });
});

test('redis urls: a bad URL is an E_REDIS_URL error that names what is wrong and never shows the password', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['redis+sentinel://:hunter2@s1:26379', /master name is missing/],
    ['redis+sentinel://:hunter2@s1:99999/m', /sentinel address "s1:99999"/],
    ['redis+sentinel://:hunter2@s1/m/x', /database "x"/],
    ['redis+sentinel://:hunter2@s1/m/0/extra', /expected \/<master name>/],
    ['memcached://:hunter2@h:1', /scheme must be one of redis, rediss, redis\+sentinel/],
  ];
  for (const [url, why] of cases) {
    const err = t.throws(() => parseRedisUrl(url), { instanceOf: GantryError });
    t.is(err?.code, 'E_REDIS_URL');
    t.regex(err?.message ?? '', why);
    t.false(err?.message.includes('hunter2'), `${url}: the password is not in the message`);
  }
});

test('redis urls: a url flag allowing redis+sentinel takes one; a bad one fails naming the flag, without the password', (t) => {
  const specs: FlagSpec[] = [{ name: 'audit-redis', type: 'url', schemes: ['redis', 'rediss', 'redis+sentinel'], description: 'audit' }];
  const url = 'redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/gantry';
  t.is(parseFlags(specs, ['--audit-redis', url], {}).str('audit-redis'), url);
  const err = t.throws(() => parseFlags(specs, ['--audit-redis', 'redis+sentinel://:hunter2@h:1'], {}), { instanceOf: UsageError });
  t.regex(err?.message ?? '', /audit-redis.*master name is missing/);
  t.false(err?.message.includes('hunter2'));
  const plain = t.throws(() => parseFlags(specs, ['--audit-redis', 'http://:hunter2@h:1'], {}), { instanceOf: UsageError });
  t.false(plain?.message.includes('hunter2'), 'a URL flag\'s bad value is shown redacted');
  // a flag that does not allow Sentinel refuses it
  t.throws(() => parseFlags([{ name: 'r', type: 'url', schemes: ['redis'], description: 'r' }], ['--r', url], {}), { instanceOf: UsageError });
});
