import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { createLogger } from '@talon/kit/log';
import { connectNats, provisionJetStream } from '@talon/kit/nats';
import { CliError, homeDir, natsUrl } from '../context.ts';

export function registerProvision(program: Command): void {
  program
    .command('provision')
    .description(
      'create or update every JetStream stream and bucket Talon needs (idempotent; talon up does it itself — run it for compose and Kubernetes, where services wait for it)',
    )
    .option('--replicas <n>', 'copies of each stream and bucket: 1 on one NATS server, 3 on a 3-node cluster', '1')
    .option('--wait <seconds>', 'how long to keep trying to reach NATS (it may start after this job)', '60')
    .action(async (o: { replicas: string; wait: string }) => {
      const replicas = Number(o.replicas);
      if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new CliError('--replicas must be a whole number from 1 to 5');
      const waitS = Number(o.wait);
      if (!Number.isFinite(waitS) || waitS < 0) throw new CliError('--wait must be a number of seconds');
      const seed = join(homeDir(), 'nats', 'admin.nk');
      if (!existsSync(seed))
        throw new CliError(`missing the NATS admin seed ${seed}: run \`talon init\` first, or set TALON_HOME to its folder`);
      console.error(`provisioning JetStream at ${natsUrl()} with ${replicas} replica(s)`);
      let nc;
      try {
        nc = await connectNats({
          servers: natsUrl(),
          user: 'admin',
          seedFile: seed,
          log: createLogger({ service: 'talon', level: 'silent' }),
          connectTimeoutMs: waitS * 1000,
        });
      } catch {
        throw new CliError(`cannot reach NATS at ${natsUrl()} within ${waitS} s; set TALON_NATS_URL, or raise --wait`);
      }
      try {
        await provisionJetStream(nc, { replicas, onProgress: (what) => console.error(`  ${what}`) });
      } catch (err) {
        throw new CliError(
          `provisioning failed: ${(err as Error).message}. With --replicas above 1, NATS must run as a cluster of at least that many servers`,
        );
      } finally {
        await nc.close();
      }
      console.log('JetStream is provisioned; services waiting for it start now');
    });
}
