// The whole kit in one import. Services import the subpaths instead (@talon/kit/config,
// /errors, /log, /grpc, /db, /nats, ...; see package.json "exports"), so a service loads
// only what it uses: memory and vault never load the NATS client through here.
export * from './config.ts';
export * from './errors.ts';
export * from './log.ts';
export * from './telemetry.ts';
export * from './identity.ts';
export * from './grpc.ts';
export * from './subjects.ts';
export * from './contracts.ts';
export * from './conversations.ts';
export * from './nats.ts';
export * from './lifecycle.ts';
export * from './egress-client.ts';
export * from './db.ts';
export * from './database-url.ts';
export * from './service.ts';
export * from './ports.ts';
