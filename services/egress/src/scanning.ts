// Adapter between the proxy and the leak scanner in ./scan.
import type { SecretFingerprint } from '@talon/proto';
import type { ScannerLike } from './proxy.ts';

export function createScanner(): ScannerLike {
  // Replaced by the real scanner once ./scan lands.
  return {
    scanRequest: () => [],
    setFingerprints: (_fps: readonly SecretFingerprint[]) => undefined,
    createRedactor: () => ({ push: (c: Uint8Array) => c, end: () => new Uint8Array(), redactions: 0 }),
    redactText: (text: string) => ({ text, redactions: 0 }),
  };
}
