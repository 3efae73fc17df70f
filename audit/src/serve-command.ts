// `gantry audit serve`: runs the registry page until Ctrl-C.
import { createConsul, consulConfigFromFlags, createLogger, createRegistry, UsageError, type Flags, type CommandContext } from '@gantry/core';
import { startPageServer } from './page/server.ts';
import { driftOptionsFromFlags } from './drift-command.ts';

export async function runServe(f: Flags, ctx: CommandContext): Promise<number> {
  const log = createLogger({ component: 'audit-page', level: 'info' });
  const basic = f.optStr('basic-auth');
  if (basic !== undefined && !basic.includes(':')) throw new UsageError('flag --basic-auth: expected user:password');
  const consul = createConsul(consulConfigFromFlags(f));
  let server;
  try {
    server = await startPageServer({
      addr: f.str('addr'), consul, log, registry: createRegistry('audit-page'), refreshMs: f.ms('refresh'),
      audit: { url: f.str('audit-redis'), key: f.str('audit-key'), windowMs: f.ms('window') },
      drift: driftOptionsFromFlags(f), token: f.optStr('token'), basicAuth: basic,
    });
  } catch (err) {
    consul.close();
    if (err instanceof Error && err.message.startsWith('refusing')) throw new UsageError(err.message);
    throw err;
  }
  ctx.stdout.write(`registry page: ${server.url}/\n`);
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await server.close();
  consul.close();
  return 0;
}
