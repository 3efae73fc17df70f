// Handlebars, set up for writing config files from untrusted data:
// - its own environment (nothing registered globally), strict mode (a missing
//   field is an error, not an empty string), prototype access off;
// - `{{value}}` goes through defaultEscape instead of HTML escaping: helper
//   output as is, plain words as is, anything that could break a line is an error;
// - `{{{value}}}` and `{{& value}}` (no escaping at all) are refused at compile time;
// - syntax errors carry file, line and column.
import Handlebars from 'handlebars';
import { GantryError, errorMessage } from '@gantry/core';
import { createHelpers, defaultEscape, RenderError } from './helpers.ts';

export class TemplateError extends GantryError {
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  constructor(code: string, file: string, line: number | undefined, column: number | undefined, message: string) {
    super(code, `${file}${line === undefined ? '' : `:${line}`}${column === undefined ? '' : `:${column}`}: ${message}`);
    this.file = file;
    this.line = line;
    this.column = column;
  }
}

export interface CompiledTemplate {
  readonly file: string;
  render(data: object, kv: ReadonlyMap<string, string>): string;
}

const ESCAPE_HELPER = '__gantryEscape';

interface CompilerInternals {
  source: { currentLocation?: { start: { line: number; column: number } } };
  pushSource(s: unknown): void;
  appendToBuffer(parts: unknown[]): unknown;
  aliasable(name: string): unknown;
  popStack(): unknown;
}
type CompilerCtor = new () => object;

function createEnv(): typeof Handlebars {
  const hb = Handlebars.create();
  // every escaped mustache calls our escape (a helper, so it reaches the compiled code) instead of HTML escaping
  const Base = (hb as unknown as { JavaScriptCompiler: CompilerCtor }).JavaScriptCompiler;
  class GantryCompiler extends Base {
    appendEscaped(this: CompilerInternals): void {
      // the trailing object stands for the options object Handlebars' helper wrapper expects last,
      // and says where the mustache is, for the error message
      const at = this.source.currentLocation?.start;
      const loc = at ? `{line:${Number(at.line)},column:${Number(at.column) + 1}}` : '{}';
      this.pushSource(this.appendToBuffer([this.aliasable(`container.helpers.${ESCAPE_HELPER}`), '(', this.popStack(), `, ${loc})`]));
    }
  }
  // child programs ({{#each}} bodies) are compiled with prototype.compiler
  (GantryCompiler.prototype as unknown as { compiler: CompilerCtor }).compiler = GantryCompiler;
  (hb as unknown as { JavaScriptCompiler: CompilerCtor }).JavaScriptCompiler = GantryCompiler;
  return hb;
}

const env = createEnv();
let currentKv: ReadonlyMap<string, string> = new Map();
const helpers = {
  ...createHelpers(() => currentKv),
  [ESCAPE_HELPER]: (value: unknown, at: { line?: number; column?: number }) => {
    try {
      return defaultEscape(value);
    } catch (err) {
      throw Object.assign(err as Error, { lineNumber: at.line, column: at.column === undefined ? undefined : at.column - 1 });
    }
  },
};

interface Loc { start: { line: number; column: number } }
interface AnyNode { type: string; escaped?: boolean; loc?: Loc; [k: string]: unknown }

/** finds `{{{x}}}` / `{{& x}}` anywhere in the tree */
function findUnescaped(node: unknown): AnyNode | undefined {
  if (Array.isArray(node)) {
    for (const n of node) { const f = findUnescaped(n); if (f) return f; }
    return undefined;
  }
  if (!node || typeof node !== 'object') return undefined;
  const n = node as AnyNode;
  if (n.type === 'MustacheStatement' && n.escaped === false) return n;
  if (n.type === 'PartialStatement' || n.type === 'PartialBlockStatement' || n.type === 'DecoratorBlock' || n.type === 'Decorator') return n;
  for (const key of ['body', 'program', 'inverse']) {
    const f = findUnescaped(n[key]);
    if (f) return f;
  }
  return undefined;
}

/** Parses and compiles; throws TemplateError (E_TEMPLATE_SYNTAX) with file:line:column. */
export function compileTemplate(file: string, source: string): CompiledTemplate {
  let ast: hbs.AST.Program;
  try {
    ast = env.parse(source);
  } catch (err) {
    const e = err as { lineNumber?: number; column?: number; message?: string };
    const lexer = (env as unknown as { Parser?: { lexer?: { yylloc?: { first_line: number; first_column: number } } } }).Parser?.lexer;
    const loc = lexer?.yylloc;
    const line = e.lineNumber ?? loc?.first_line;
    const column = e.column !== undefined ? e.column + 1 : loc ? loc.first_column + 1 : undefined;
    const first = errorMessage(err).split('\n');
    // "Parse error on line 3:" + the snippet: keep the expectation line, which says what was wrong
    const why = first.length > 1 ? `${first[0]!.replace(/ on line \d+:?$/, '')}: ${first.slice(3).join(' ').trim() || first.slice(1).join(' ')}` : first[0]!;
    throw new TemplateError('E_TEMPLATE_SYNTAX', file, line, column, why.replace(/ - \d+:\d+$/, ''));
  }
  const bad = findUnescaped(ast);
  if (bad) {
    const what = bad.type === 'MustacheStatement'
      ? 'unescaped output ({{{ }}} or {{& }}) is not allowed: every value goes through the default escape or a helper'
      : 'partials and decorators are not supported';
    throw new TemplateError('E_TEMPLATE_SYNTAX', file, bad.loc?.start.line, bad.loc ? bad.loc.start.column + 1 : undefined, what);
  }
  let fn: Handlebars.TemplateDelegate;
  try {
    fn = env.compile(ast, { strict: true, noEscape: false, preventIndent: true });
    // compile is lazy: a first call surfaces compile-time errors (block mismatch) now, not at the first render
    fn({}, { helpers, allowProtoPropertiesByDefault: false, allowProtoMethodsByDefault: false });
  } catch (err) {
    const e = err as { lineNumber?: number; column?: number };
    if (e.lineNumber !== undefined && !/not defined in/.test(errorMessage(err)) && !(err instanceof RenderError)) {
      throw new TemplateError('E_TEMPLATE_SYNTAX', file, e.lineNumber, e.column === undefined ? undefined : e.column + 1, errorMessage(err).replace(/ - \d+:\d+$/, ''));
    }
    // a missing field or a helper error on empty data is not a syntax error
  }
  return {
    file,
    render(data, kv) {
      currentKv = kv;
      try {
        return fn(data, { helpers, allowProtoPropertiesByDefault: false, allowProtoMethodsByDefault: false });
      } catch (err) {
        const e = err as { lineNumber?: number; column?: number };
        throw new TemplateError('E_RENDER', file, e.lineNumber, e.column === undefined ? undefined : e.column + 1, errorMessage(err).replace(/ - \d+:\d+$/, ''));
      } finally {
        currentKv = new Map();
      }
    },
  };
}
