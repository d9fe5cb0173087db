// A fake of the WhatsApp Cloud API for tests: a real HTTP server on loopback answering
// POST /v21.0/{phone-number-id}/messages as the Graph API does (bearer access token checked,
// Graph error bodies, wamid ids), and a sender of webhook notifications to the gateway signed
// as Meta signs them (X-Hub-Signature-256: sha256=hex(HMAC-SHA256(app secret, raw body))),
// plus the GET subscription handshake. Use with startChannelPlatform({ extraFakes, extraSecrets }).
import { createHmac, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { FakeServer, type RecordedCall } from './fake-platforms.ts';

export interface WhatsAppSent {
  /** The business phone number id the message was sent from (the URL's). */
  phoneNumberId: string;
  to: string;
  body: string;
  id: string;
}

function wamid(): string {
  return `wamid.${randomBytes(24).toString('base64')}`;
}

export class FakeWhatsApp extends FakeServer {
  readonly accessToken = `EAAG${randomBytes(48).toString('base64url')}`;
  readonly appSecret = randomBytes(16).toString('hex');
  readonly verifyToken = `verify-${randomBytes(12).toString('hex')}`;
  readonly phoneNumberId = String(100_000_000_000_000 + Math.floor(Math.random() * 1e12));
  readonly displayPhoneNumber = '15550001111';
  readonly sent: WhatsAppSent[] = [];

  /** Base URL for TALON_WHATSAPP_API_URL. */
  get apiUrl(): string {
    return `${this.origin}/v21.0`;
  }

  /** The vault secrets the gateway needs (startChannelPlatform's extraSecrets), under the default names. */
  secrets(): Array<[string, string, string[]]> {
    return [
      ['whatsapp_access_token', this.accessToken, ['--host', `127.0.0.1:${this.port}`, '--bearer']],
      ['whatsapp_app_secret', this.appSecret, ['--verify']],
      ['whatsapp_verify_token', this.verifyToken, ['--verify']],
    ];
  }

  private graphError(res: ServerResponse, status: number, code: number, message: string): void {
    this.send(res, status, { error: { message, type: 'OAuthException', code, fbtrace_id: randomBytes(8).toString('base64url') } });
  }

  protected fail(res: ServerResponse, status: number, retryAfterS?: number): void {
    if (status === 429) {
      this.send(
        res,
        429,
        { error: { message: '(#130429) Rate limit hit', type: 'OAuthException', code: 130429 } },
        retryAfterS ? { 'retry-after': String(retryAfterS) } : {},
      );
    } else this.graphError(res, status, 1, 'An unknown error occurred');
  }

  protected handle(call: RecordedCall, res: ServerResponse): void {
    const m = /^\/v21\.0\/(\d+)\/messages$/.exec(call.path);
    if (!m || call.method !== 'POST') return this.graphError(res, 400, 100, 'Unsupported post request.');
    if (call.headers.authorization !== `Bearer ${this.accessToken}`) return this.graphError(res, 401, 190, 'Invalid OAuth access token.');
    if (m[1] !== this.phoneNumberId) return this.graphError(res, 400, 100, 'Object with ID does not exist.');
    const j = call.json as { messaging_product?: unknown; to?: unknown; type?: unknown; text?: { body?: unknown } } | undefined;
    if (j?.messaging_product !== 'whatsapp') return this.graphError(res, 400, 100, 'The parameter messaging_product is required.');
    if (typeof j.to !== 'string' || !/^\d{5,20}$/.test(j.to)) return this.graphError(res, 400, 131009, 'Parameter value is not valid');
    const body = j.text?.body;
    if (j.type !== 'text' || typeof body !== 'string' || body === '' || body.length > 4096)
      return this.graphError(res, 400, 100, 'Invalid parameter');
    const msg: WhatsAppSent = { phoneNumberId: m[1], to: j.to, body, id: wamid() };
    this.sent.push(msg);
    this.send(res, 200, { messaging_product: 'whatsapp', contacts: [{ input: j.to, wa_id: j.to }], messages: [{ id: msg.id }] });
  }

  /** A text message notification; several `texts` make one notification carrying several messages. */
  notification(from: string, texts: string | string[], opts: { name?: string; ids?: string[] } = {}) {
    const list = Array.isArray(texts) ? texts : [texts];
    const ts = Math.floor(Date.now() / 1000);
    return {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: '102290129340398',
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: { display_phone_number: this.displayPhoneNumber, phone_number_id: this.phoneNumberId },
                contacts: [{ profile: { name: opts.name ?? 'Wanda' }, wa_id: from }],
                messages: list.map((body, i) => ({
                  from,
                  id: opts.ids?.[i] ?? wamid(),
                  timestamp: String(ts),
                  type: 'text',
                  text: { body },
                })),
              },
            },
          ],
        },
      ],
    };
  }

  /** A delivery status notification (no message). */
  status(to: string, id: string) {
    return {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: '102290129340398',
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: { display_phone_number: this.displayPhoneNumber, phone_number_id: this.phoneNumberId },
                statuses: [{ id, status: 'delivered', timestamp: String(Math.floor(Date.now() / 1000)), recipient_id: to }],
              },
            },
          ],
        },
      ],
    };
  }

  sign(raw: string | Buffer, secret = this.appSecret): string {
    return `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;
  }

  /** POSTs a notification signed as Meta does; `signature: null` sends none, a string forges one. */
  async deliver(gatewayUrl: string, body: unknown, opts: { signature?: string | null; raw?: string } = {}) {
    const raw = opts.raw ?? JSON.stringify(body);
    const sig = opts.signature === undefined ? this.sign(raw) : opts.signature;
    const res = await fetch(`${gatewayUrl}/hooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(sig === null ? {} : { 'x-hub-signature-256': sig }) },
      body: raw,
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json };
  }

  /** The GET subscription handshake Meta makes when the webhook URL is saved. */
  async verify(gatewayUrl: string, opts: { token?: string; challenge?: string; mode?: string } = {}) {
    const q = new URLSearchParams({
      'hub.mode': opts.mode ?? 'subscribe',
      'hub.verify_token': opts.token ?? this.verifyToken,
      'hub.challenge': opts.challenge ?? String(Math.floor(Math.random() * 1e9)),
    });
    const res = await fetch(`${gatewayUrl}/hooks/whatsapp?${q}`);
    return { status: res.status, text: await res.text(), contentType: res.headers.get('content-type') ?? '' };
  }
}
