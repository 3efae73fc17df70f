import test from 'ava';
import { compileTemplate, TemplateError } from '../src/render/engine.ts';

const kv = new Map([['app/color', 'blue']]);
const render = (src: string, data: object): string => compileTemplate('t.hbs', src).render(data, kv);

test('a syntax error names the file, line and column', (t) => {
  const e1 = t.throws(() => compileTemplate('/etc/x.hbs', 'global\n  maxconn 10\n  {{#each services}\n'), { instanceOf: TemplateError });
  t.is(e1.code, 'E_TEMPLATE_SYNTAX');
  t.is(e1.line, 3);
  t.is(e1.column, 19); // the lone "}"
  t.regex(e1.message, /^\/etc\/x\.hbs:3:19: Parse error/);

  const e2 = t.throws(() => compileTemplate('b.hbs', 'a\n{{#each x}}\n{{/eahc}}\n'), { instanceOf: TemplateError });
  t.is(e2.line, 2);
  t.regex(e2.message, /^b\.hbs:2:\d+: each doesn't match eahc/);
});

test('unescaped output and partials are refused at compile time', (t) => {
  const e = t.throws(() => compileTemplate('u.hbs', 'ok\n  {{{name}}}\n'), { instanceOf: TemplateError });
  t.is(e.line, 2);
  t.is(e.column, 3);
  t.regex(e.message, /unescaped output/);
  t.throws(() => compileTemplate('u.hbs', '{{& name}}'), { message: /unescaped output/ });
  t.throws(() => compileTemplate('p.hbs', '{{> other}}'), { message: /partials/ });
});

test('strict mode: a missing field is an error with its place; #if on a missing field is false', (t) => {
  const e = t.throws(() => render('a\nb {{settings.nope}}', { settings: {} }), { instanceOf: TemplateError });
  t.is(e.code, 'E_RENDER');
  t.is(e.line, 2);
  t.regex(e.message, /"nope" not defined/);
  t.is(render('{{#if settings.nope}}x{{else}}y{{/if}}', { settings: {} }), 'y');
});

test('prototype access is off: constructor, __proto__ and friends give nothing', (t) => {
  t.is(render('[{{#with a}}{{__proto__}}{{/with}}]', { a: {} }), '[]');
  t.is(render('[{{lookup a "constructor"}}]', { a: {} }), '[]');
  t.throws(() => render('{{constructor.name}}', {}), { message: /not defined/ });
});

test('the default escape writes plain words and refuses anything that breaks a line or a word', (t) => {
  t.is(render('server {{name}} {{addr}}:{{port}}', { name: 's1', addr: '10.0.0.1', port: 8080 }), 'server s1 10.0.0.1:8080');
  for (const bad of ['a\nb', 'a b', 'x#y', 'q"', "q'", '$HOME', '%[src]', '{{x}}', 'tab\there', 'cr\rx', 'nul\u0000']) {
    const e = t.throws(() => render('x {{#each l}}{{this}}{{/each}}', { l: ['ok', bad] }), { instanceOf: TemplateError }, JSON.stringify(bad));
    t.regex(e.message, /cannot be written as it is/);
    t.is(e.line, 1);
  }
  t.throws(() => render('{{obj}}', { obj: { a: 1 } }), { message: /cannot print/ });
});

test('escaping helpers come from core: identifiers, values, DNS names and labels', (t) => {
  t.is(render('{{haproxyId name}}', { name: 'orders' }), 'orders');
  t.regex(render('{{haproxyId name}}', { name: 'evil\nserver x' }), /^evil_server_x_[0-9a-f]{8}$/);
  t.is(render('{{haproxyValue v}}', { v: 'a b#c' }), '"a b\\#c"');
  t.throws(() => render('{{haproxyValue v}}', { v: 'a\nb' }), { message: /control character/ });
  t.is(render('{{dnsName v}}', { v: 'Orders_API.Example' }), 'orders-api.example');
  t.is(render('{{dnsLabel v}}', { v: 'My Service!' }), 'my-service');
  t.is(render('{{hostPort a p}}', { a: '::1', p: 80 }), '[::1]:80');
  t.is(render('{{hostPort a p}}', { a: '10.1.2.3', p: 80 }), '10.1.2.3:80');
  t.throws(() => render('{{hostPort a p}}', { a: 'x y', p: 80 }), { message: /neither an IP/ });
  t.throws(() => render('{{hostPort a p}}', { a: '10.1.2.3', p: 70000 }), { message: /not a port/ });
  t.is(render('{{logField v}}', { v: 'a b\nc' }), 'a_b_nc');
});

test('filter, sort and group helpers', (t) => {
  const list = [
    { name: 'b', tags: ['web', 'gantry.host=b.example'], meta: { v: '2' }, status: 'passing' },
    { name: 'a', tags: ['db'], meta: { v: '1' }, status: 'critical' },
    { name: 'c', tags: ['web'], meta: {}, status: 'warning' },
  ];
  t.is(render('{{#each (byTag l "web")}}{{name}}{{/each}}', { l: list }), 'bc');
  t.is(render('{{#each (byTagPrefix l "gantry.")}}{{name}}{{/each}}', { l: list }), 'b');
  t.is(render('{{#each (byMeta l "v")}}{{name}}{{/each}}', { l: list }), 'ba');
  t.is(render('{{#each (byMeta l "v" "1")}}{{name}}{{/each}}', { l: list }), 'a');
  t.is(render('{{#each (byStatus l "passing" "warning")}}{{name}}{{/each}}', { l: list }), 'bc');
  t.is(render('{{#each (sortBy l "name")}}{{name}}{{/each}}', { l: list }), 'abc');
  t.is(render('{{#each (sortBy l "meta.v" "desc")}}{{name}}{{/each}}', { l: list }), 'bac');
  t.is(render('{{#each (groupBy l "status")}}{{key}}:{{len items}};{{/each}}', { l: list }), 'critical:1;passing:1;warning:1;');
  t.is(render('{{tagValue (first l) "gantry.host"}}', { l: list }), 'b.example');
  t.is(render('{{#if (hasTag (last l) "web")}}yes{{/if}}', { l: list }), 'yes');
  t.is(render('{{metaValue (first l) "v"}}|{{metaValue (first l) "nope" "-"}}', { l: list }), '2|-');
  t.is(render('{{kvValue "app/color"}} {{kvValue "missing" "none"}}', {}), 'blue none');
  t.is(render('{{#each (kvKeys "app/")}}{{this}}{{/each}}', {}), 'app/color');
  t.is(render('{{#if (and (eq a 1) (ne b 2) (not c))}}ok{{/if}} {{add a 2}} {{default c "d"}}', { a: 1, b: 3, c: '' }), 'ok 3 d');
});
