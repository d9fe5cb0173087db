import { commonFields, int, loadConfig, natsFields, type ConfigOf } from '@talon/kit';

export function sandboxSpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('sandbox', env),
    ...natsFields('sandbox', env),
    concurrency: int('SANDBOX_CONCURRENCY', { doc: 'Skill invocations one sandbox node runs at once.', default: 4, min: 1, max: 256 }),
  };
}

export type SandboxConfig = ConfigOf<ReturnType<typeof sandboxSpec>>;

export function loadSandboxConfig(env: Record<string, string | undefined> = process.env): SandboxConfig {
  return loadConfig('sandbox', sandboxSpec(env), env);
}
