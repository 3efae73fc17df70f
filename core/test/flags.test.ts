import test from 'ava';
import { parseFlags, helpText, type FlagSpec } from '../src/flags.ts';
import { UsageError } from '../src/errors.ts';

const specs: FlagSpec[] = [
  { name: 'consul-addr', type: 'url', env: 'CONSUL_HTTP_ADDR', default: 'http://127.0.0.1:8500', description: 'Consul' },
  { name: 'consul-token', type: 'string', env: 'CONSUL_HTTP_TOKEN', secret: true, description: 'token' },
  { name: 'resync', type: 'duration', default: '30s', description: 'resync' },
  { name: 'explicit', type: 'boolean', default: false, description: 'explicit' },
  { name: 'tags', type: 'list', default: [], description: 'tags' },
  { name: 'deregister', type: 'enum', choices: ['always', 'on-success'], default: 'always', description: 'dereg' },
  { name: 'retry-attempts', type: 'int', default: 0, min: -1, description: 'attempts' },
  { name: 'admin-addr', type: 'addr', default: '127.0.0.1:0', description: 'admin' },
];

test('flags: values from argv, then env twins, then defaults', (t) => {
  const f = parseFlags(specs, ['--resync=5s', '--explicit', '--tags', 'a,b', '--tags=c', 'pos'], { CONSUL_HTTP_ADDR: 'https://c:8501', GANTRY_DEREGISTER: 'on-success' });
  t.is(f.str('consul-addr'), 'https://c:8501');
  t.is(f.ms('resync'), 5000);
  t.true(f.bool('explicit'));
  t.deepEqual(f.list('tags'), ['a', 'b', 'c']);
  t.is(f.str('deregister'), 'on-success');
  t.is(f.int('retry-attempts'), 0);
  t.deepEqual(f.positionals, ['pos']);
  t.false(parseFlags(specs, ['--no-explicit'], {}).bool('explicit'));
  t.is(parseFlags(specs, [], {}).ms('resync'), 30_000);
});

test('flags: a bad flag or value names the flag and the value', (t) => {
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--bogus'], {}, /unknown flag "--bogus"/],
    [['--resync', '5x'], {}, /flag --resync: invalid value "5x": expected a duration/],
    [['--consul-addr', 'not a url'], {}, /flag --consul-addr: invalid value "not a url"/],
    [['--consul-addr=ftp://h'], {}, /scheme must be one of http, https/],
    [['--deregister', 'never'], {}, /expected one of always, on-success/],
    [['--retry-attempts', '1.5'], {}, /whole number/],
    [['--retry-attempts', '-5'], {}, /at least -1/],
    [['--admin-addr', 'localhost'], {}, /expected host:port/],
    [['--resync'], {}, /needs a value/],
    [[], { GANTRY_RESYNC: 'soon' }, /environment variable GANTRY_RESYNC \(flag --resync\): invalid value "soon"/],
  ];
  for (const [argv, env, re] of cases) {
    const err = t.throws(() => parseFlags(specs, argv, env), { instanceOf: UsageError }, argv.join(' '));
    t.regex(err.message, re);
  }
});

test('flags: a secret value is never echoed in an error', (t) => {
  const secretSpecs: FlagSpec[] = [{ name: 'redis-password', type: 'int', secret: true, description: 'x' }];
  const err = t.throws(() => parseFlags(secretSpecs, ['--redis-password', 'hunter2'], {}));
  t.false(err.message.includes('hunter2'));
  t.regex(err.message, /\(hidden\)/);
});

test('help lists every flag with its environment twin', (t) => {
  const text = helpText('gantry x', 'does x', specs);
  for (const s of specs) t.true(text.includes(`--${s.name}`), s.name);
  t.true(text.includes('env: CONSUL_HTTP_ADDR'));
  t.true(text.includes('env: GANTRY_RESYNC'));
  t.true(text.includes('env: GANTRY_RETRY_ATTEMPTS'));
});
