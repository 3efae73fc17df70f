// JSON logs, one line an event, secrets redacted wherever they appear in an object.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Paths pino censors; any key named like a secret, at any depth we log. */
export const REDACT_PATHS = [
  'token', '*.token', '*.*.token',
  'password', '*.password', '*.*.password',
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'headers["x-consul-token"]', '*.headers["x-consul-token"]',
  'consulToken', '*.consulToken', 'secret', '*.secret', 'aclToken', '*.aclToken',
];

export interface LoggerConfig {
  level?: string;
  /** the part logging: registrator, templater ... */
  component: string;
  /** where lines go (default stdout); tests pass a stream */
  destination?: NodeJS.WritableStream;
}

export function createLogger(cfg: LoggerConfig): Logger {
  const opts: LoggerOptions = {
    level: cfg.level ?? process.env.GANTRY_LOG_LEVEL ?? 'info',
    base: { component: cfg.component },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return cfg.destination ? pino(opts, cfg.destination as pino.DestinationStream) : pino(opts);
}

/** A URL with its password (and user) replaced, for logs and errors: redis://:secret@h → redis://***@h */
export function redactUrl(input: string): string {
  try {
    const u = new URL(input);
    // nothing to hide: the address exactly as given (URL's toString would add a trailing slash)
    if (!u.password && !u.username) return input;
    u.username = u.username ? '***' : '';
    u.password = '';
    return u.toString();
  } catch {
    return input.replace(/\/\/[^@/]*@/, '//***@');
  }
}
