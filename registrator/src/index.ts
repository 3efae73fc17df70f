export { registratorCommand } from './command.ts';
export { Reconciler, plan, type Source, type Sink, type Applied } from './reconciler.ts';
