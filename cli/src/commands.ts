// Every `gantry` subcommand, loaded only when it is the one asked for.
import type { Command } from '@gantry/core';

export const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  registrator: { summary: 'keep Consul in step with Docker (and Kubernetes); audit trail', load: async () => (await import('@gantry/registrator')).registratorCommand },
  audit: { summary: 'print the audit trail of registry changes (gantry audit log)', load: async () => (await import('@gantry/audit')).auditCommand },
  templater: { summary: 'render HAProxy (L7/L4) and a DNS hosts file from Consul; check, write atomically, reload or use the Runtime API', load: async () => (await import('@gantry/templater')).templater },
  gateway: { summary: 'L7 gateway from Consul: Host/path routes, canary, blue/green, mirroring, retries, ejection, Redis-shared rate limits', load: async () => (await import('@gantry/gateway')).gatewayCommand },
  doctor: { summary: 'check that Consul and every engine the flags name (Redis, HAProxy sockets, Docker, Kubernetes) answer', load: async () => (await import('./doctor.ts')).doctor },
};
