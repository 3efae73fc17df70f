export { registratorCommand } from './command.ts';
export { Reconciler, plan, type Source, type Sink, type Applied } from './reconciler.ts';
export { DockerClient } from './sources/docker/client.ts';
export { kubernetesVersion } from './kubernetes-check.ts';
