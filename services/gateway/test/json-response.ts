// A ServerResponse stand-in for unit tests of route handlers: records the status and
// the parsed JSON body the handler wrote (sendJson writes both in one go).
import type { ServerResponse } from 'node:http';

export function jsonResponse(): { res: ServerResponse; out: { status: number; body: unknown } } {
  const out = { status: 0, body: undefined as unknown };
  const res = {
    headersSent: false,
    writeHead(status: number) {
      out.status = status;
      return res;
    },
    end(text: string) {
      out.body = JSON.parse(text);
    },
  };
  return { res: res as unknown as ServerResponse, out };
}
