// @gantry/config-client: Consul KV prefixes mirrored in memory.
export { ConfigClient, type PrefixStatus } from './client.ts';
export type {
  ChangeEvent,
  ChangeType,
  ClientEvents,
  ConfigClientOptions,
  ConfigTree,
  ConfigValue,
  Consistency,
  DocumentFormat,
  InvalidDocument,
  PrefixFormat,
  PrefixSpec,
  Source,
  Warning,
} from './types.ts';
export { documentFormat, parseConfigDocument } from './documents.ts';
export { parseProperties } from './properties.ts';
