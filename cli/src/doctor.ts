// `gantry doctor`: can this host reach what Gantry needs? Prints one line per check.
import { createConsul, consulFlags, consulConfigFromFlags, errorMessage, type Command, type FlagSpec } from '@gantry/core';

const flags: readonly FlagSpec[] = [
  ...consulFlags,
  { name: 'timeout', type: 'duration', default: '5s', description: 'how long each check may take' },
];

export const doctor: Command = {
  name: 'doctor',
  summary: 'Checks that the Consul agent answers (leader elected, ACL token accepted) and prints what it found.',
  flags,
  async run(f, ctx) {
    const consul = createConsul(consulConfigFromFlags(f));
    try {
      const leader = await consul.request<string>('GET', '/v1/status/leader', { timeoutMs: f.ms('timeout') });
      const self = await consul.request<{ Config?: { NodeName?: string; Datacenter?: string; Version?: string } }>('GET', '/v1/agent/self', { timeoutMs: f.ms('timeout') });
      const c = self.body.Config ?? {};
      ctx.stdout.write(`consul: ok ${consul.baseUrl} leader=${leader.body} node=${c.NodeName} dc=${c.Datacenter} version=${c.Version}\n`);
      return 0;
    } catch (err) {
      ctx.stdout.write(`consul: FAILED ${consul.baseUrl}: ${errorMessage(err)}\n`);
      return 1;
    } finally {
      consul.close();
    }
  },
};
