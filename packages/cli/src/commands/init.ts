import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_PORTS } from '@talon/kit/service';
import { prepareHome, writePrivate } from '../platform/home.ts';
import { ensureNkeys, ensurePki } from '../platform/identity.ts';
import { writeNatsConfig } from '../platform/nats-server.ts';
import { clusterPassword, NATS_SERVER_NAME_ENV, parseRoutes, renderNatsClusterConfig } from '../platform/nats-cluster.ts';
import { assertHomeUntracked } from '../platform/git-guard.ts';
import { homeDir } from '../context.ts';

interface InitOptions {
  natsHost: string;
  natsPort: string;
  natsStore: string;
  natsCluster?: string;
  natsClusterName: string;
  natsMonitor?: string;
  dns: string;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description(
      'create the identity material without starting anything: CA, one certificate per service, NATS nkeys and server config (for containers and Kubernetes)',
    )
    .option('--nats-host <host>', 'address nats-server listens on, written into its config', '0.0.0.0')
    .option('--nats-port <port>', 'port nats-server listens on', String(DEFAULT_PORTS.nats))
    .option('--nats-store <dir>', 'JetStream directory inside the NATS container', '/data/jetstream')
    .option(
      '--nats-cluster <routes>',
      `one node of a JetStream cluster: every node's route address, comma-separated (host[:6222]); each node sets ${NATS_SERVER_NAME_ENV}`,
    )
    .option('--nats-cluster-name <name>', 'name of the NATS cluster (with --nats-cluster)', 'talon')
    .option('--nats-monitor <host:port>', "nats-server's monitoring endpoint, /healthz for probes (with --nats-cluster)")
    .option(
      '--dns <names>',
      'extra DNS names for every service certificate, comma-separated, with {service} as a placeholder',
      '{service},{service}.talon,{service}.talon.svc,{service}.talon.svc.cluster.local',
    )
    .action(async (o: InitOptions) => {
      // Refused before anything is written: keys in a tracked folder end up in a commit.
      assertHomeUntracked(homeDir());
      const home = prepareHome(resolve(homeDir()));
      const patterns = o.dns
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      await ensurePki(
        home,
        (what) => console.error(`created ${what}`),
        (svc) => ['localhost', ...patterns.map((p) => p.replaceAll('{service}', svc))],
      );
      const users = ensureNkeys(home);
      const nats = { host: o.natsHost, port: Number(o.natsPort), storeDir: o.natsStore, users };
      if (o.natsCluster) {
        const routes = parseRoutes(o.natsCluster);
        const password = clusterPassword(join(home.nats, 'cluster.password'));
        writePrivate(
          home.natsConfig,
          renderNatsClusterConfig({ ...nats, name: o.natsClusterName, routes, password, monitor: o.natsMonitor }),
        );
      } else writeNatsConfig({ file: home.natsConfig, ...nats });
      console.log(`Identity material is in ${home.root}:`);
      console.log(`  ${join(home.pki, '<service>.crt|.key')} and ca.crt  (mount each service only its own pair)`);
      console.log(`  ${join(home.nats, '<service>.nk')}                 (NATS nkey seeds; vault and memory have none)`);
      console.log(`  ${home.natsConfig}          (nats-server configuration with per-service permissions)`);
    });
}
