// Errors carry a stable `code` so callers and tests match on it, not on text.
export class GantryError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GantryError';
    this.code = code;
  }
}

/** A bad command-line flag or value: the CLI prints the message and exits 2. */
export class UsageError extends GantryError {
  constructor(message: string) {
    super('E_USAGE', message);
    this.name = 'UsageError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
