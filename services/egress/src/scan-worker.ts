// A scan-pool worker (scan-pool.ts): one LeakScanner, built as the inline one is,
// answering scan requests in the order they arrive.
import { parentPort, workerData } from 'node:worker_threads';
import type { ScanWorkerData, ScanWorkerReply, ScanWorkerRequest } from './scan-pool.ts';
import { leakScanner } from './scanning.ts';

const data: ScanWorkerData = workerData;
const port = parentPort;
if (port === null) throw new Error('scan-worker.ts runs as a worker thread (scan-pool.ts)');
const scanner = leakScanner(data);
if (data.fingerprints.length > 0) scanner.setFingerprints(data.fingerprints);

port.on('message', (msg: ScanWorkerRequest) => {
  if (msg.kind === 'fingerprints') {
    scanner.setFingerprints(msg.fingerprints);
    return;
  }
  let reply: ScanWorkerReply;
  try {
    const body = new Uint8Array(msg.body, 0, msg.length);
    reply = { id: msg.id, body: msg.body, findings: scanner.scanRequest({ url: msg.url, headers: msg.headers, body }) };
  } catch (err) {
    // A name only: a scanner error never carries request data.
    reply = { id: msg.id, body: msg.body, error: err instanceof Error ? err.name : 'scan error' };
  }
  // The buffer goes back for the next request (scan-pool.ts keeps a few).
  port.postMessage(reply, [msg.body]);
});
