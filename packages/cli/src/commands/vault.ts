// `talon vault status|unseal|seal|passphrase|rotate-key|audit`, and what `talon secrets`
// shares with it: the admin gRPC client (mTLS as spiffe://talon/admin) and hidden input.
// Passphrases and values are read from a terminal with echo off, or from stdin; never
// from argv, never printed.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { createClient, GrpcStatus, unary, type TlsMaterial, type UnaryClientMethod } from '@talon/kit/grpc';
import { pkiPaths } from '@talon/kit/service';
import { TalonError } from '@talon/kit/errors';
import { VaultAdminServiceClient, type StatusResponse } from '@talon/proto';
import { auditFilterOptions, parseAuditFilter, type AuditFilterFlags } from '../audit-filter.ts';
import { CliError, homeDir, locate } from '../context.ts';

/** TALON_VAULT_ADDR (host:port, e.g. vault:7404 from an admin container), else the vault of the `talon up` under TALON_HOME. */
export function vaultAddress(): string {
  return locate('vault');
}

function adminTls(): TlsMaterial {
  const p = pkiPaths(homeDir(), 'admin');
  try {
    return { ca: readFileSync(p.ca), cert: readFileSync(p.cert), key: readFileSync(p.key) };
  } catch {
    throw new CliError(
      `no admin certificate in ${homeDir()}/pki. Start Talon once with \`npm start\` (or set TALON_HOME to its state directory).`,
    );
  }
}

/** Turns a vault error into a message that says what to do next. */
export function explainVaultError(err: unknown): CliError {
  if (!(err instanceof TalonError)) return new CliError(String((err as Error)?.message ?? err));
  const cause = err.cause as { code?: number; metadata?: { get(k: string): unknown[] } } | undefined;
  const fromServer = (cause?.metadata?.get('talon-error-code').length ?? 0) > 0;
  switch (err.code) {
    case 'unavailable':
      if (!fromServer && cause?.code === GrpcStatus.UNAVAILABLE) {
        return new CliError(
          `cannot reach the vault at ${vaultAddress()} (${err.message}). Is Talon running? Start it with \`npm start\` in another terminal (or set TALON_VAULT_ADDR=host:port if the vault listens elsewhere).`,
          69,
        );
      }
      return new CliError(`the vault is unavailable: ${err.message}`, 69);
    case 'timeout':
      return new CliError(`the vault at ${vaultAddress()} did not answer in time; see .talon/logs/vault.log`, 69);
    case 'vault_sealed':
      return new CliError(
        `${err.message.startsWith('the vault is sealed') ? '' : `${err.message}. `}The vault is sealed: unseal it with \`talon vault unseal\` (or start Talon with TALON_VAULT_PASSPHRASE set).`,
        75,
      );
    case 'wrong_passphrase':
      return new CliError(`${err.message}.`, 77);
    case 'permission_denied':
      return new CliError(`${err.message} (the CLI presents ${homeDir()}/pki/admin.crt)`, 77);
    case 'not_found':
    case 'invalid_argument':
    case 'conflict':
    case 'secret_corrupt':
      return new CliError(err.message);
    default:
      return new CliError(`${err.code}: ${err.message}`);
  }
}

/** One admin call to the vault, e.g. `vaultAdmin((c) => c.status, {})`; errors come back as CliErrors with advice. */
export async function vaultAdmin<Req, Res>(
  method: (client: VaultAdminServiceClient) => UnaryClientMethod<Req, Res>,
  req: NoInfer<Req>,
  timeoutMs = 10_000,
): Promise<Res> {
  const client = createClient(VaultAdminServiceClient, vaultAddress(), adminTls(), 'vault');
  try {
    return await unary(client, method(client), req, { timeoutMs });
  } catch (err) {
    throw explainVaultError(err);
  } finally {
    client.close();
  }
}

// ---- hidden input ---------------------------------------------------------

// Bytes typed (or pasted) after an Enter, kept for the next prompt (a pasted
// "passphrase<Enter>passphrase<Enter>" answers both prompts).
let typedAhead: Buffer = Buffer.alloc(0);

/** Prompts on the terminal with echo off; returns the bytes typed (the caller zeroes them). */
export function promptHidden(question: string): Promise<Buffer> {
  const stdin = process.stdin;
  if (!stdin.isTTY) return Promise.reject(new CliError('not a terminal'));
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(256);
    let len = 0;
    let finished = false;
    const done = (err?: CliError) => {
      finished = true;
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) {
        buf.fill(0);
        reject(err);
        return;
      }
      const out = Buffer.from(buf.subarray(0, len));
      buf.fill(0);
      resolve(out);
    };
    const onData = (d: Buffer) => {
      for (let i = 0; i < d.length && !finished; i++) {
        const byte = d[i]!;
        if (byte === 0x0d || byte === 0x0a || byte === 0x04) {
          // Enter or Ctrl-D; a CR LF pair counts once.
          const rest = d.subarray(byte === 0x0d && d[i + 1] === 0x0a ? i + 2 : i + 1);
          typedAhead = Buffer.from(rest);
          done();
        } else if (byte === 0x03)
          done(new CliError('cancelled', 130)); // Ctrl-C
        else if (byte === 0x15)
          len = 0; // Ctrl-U clears the line
        else if (byte === 0x7f || byte === 0x08) {
          // Backspace removes one character, including all bytes of a UTF-8 sequence.
          while (len > 0 && (buf[--len]! & 0xc0) === 0x80);
        } else {
          if (len === buf.length) {
            const bigger = Buffer.alloc(buf.length * 2);
            buf.copy(bigger);
            buf.fill(0);
            buf = bigger;
          }
          buf[len++] = byte;
        }
      }
      d.fill(0);
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
    if (typedAhead.length > 0) {
      const ahead = typedAhead;
      typedAhead = Buffer.alloc(0);
      onData(ahead);
    }
  });
}

/** Everything on stdin (not a terminal), with one trailing newline removed. */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  for (const c of chunks) c.fill(0);
  let end = all.length;
  if (end > 0 && all[end - 1] === 0x0a) end -= 1;
  if (end > 0 && all[end - 1] === 0x0d && end === all.length - 1) end -= 1;
  const out = Buffer.from(all.subarray(0, end));
  all.fill(0);
  return out;
}

/** Reads one hidden value: a prompt on a terminal, else stdin. Refuses an empty value. */
export async function readHidden(question: string, what: string): Promise<Buffer> {
  const v = process.stdin.isTTY ? await promptHidden(question) : await readStdin();
  if (v.length === 0) {
    throw new CliError(
      `no ${what} given: ${process.stdin.isTTY ? 'type it at the prompt' : 'pipe it on stdin (e.g. `printf %s "$VALUE" | talon ...`) or run the command in a terminal to be prompted'}`,
    );
  }
  return v;
}

/** Splits stdin (not a terminal) into lines; each Buffer is the caller's to zero. */
function splitLines(all: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= all.length; i++) {
    if (i === all.length || all[i] === 0x0a) {
      let end = i;
      if (end > start && all[end - 1] === 0x0d) end -= 1;
      out.push(Buffer.from(all.subarray(start, end)));
      start = i + 1;
    }
  }
  return out;
}

async function newPassphraseTwice(first: string): Promise<Buffer> {
  const a = await promptHidden(first);
  const b = await promptHidden('Repeat it: ');
  const same = a.equals(b);
  b.fill(0);
  if (!same) {
    a.fill(0);
    throw new CliError('the two entries differ; nothing was changed');
  }
  return a;
}

// ---- commands ---------------------------------------------------------------

function describeStatus(s: StatusResponse): string {
  const lines = [`Vault ${vaultAddress()}: ${s.sealed ? 'SEALED' : 'unsealed'}`];
  if (!s.initialized) {
    lines.push('  keyring    none yet: the first `talon vault unseal` creates it from the passphrase you choose');
  } else {
    lines.push(`  keyring    ${s.kdf}`);
    lines.push(`  secrets    ${s.secrets}`);
    lines.push(`  data key   ${s.activeKeyId} (${s.activeKeyUses} of ${s.rotateAfter} encryptions before automatic rotation)`);
  }
  lines.push(`  epoch      ${s.epoch}`);
  if (s.sealed && s.initialized) lines.push('Unseal with: talon vault unseal');
  return lines.join('\n');
}

export function registerVault(program: Command): void {
  const vault = program
    .command('vault')
    .description('seal state and keys of the vault (over mTLS as the admin identity; it never returns a secret value)');

  vault
    .command('status')
    .description('sealed or not, keyring parameters, number of secrets, active data key')
    .action(async () => {
      console.log(describeStatus(await vaultAdmin((c) => c.status, {})));
    });

  vault
    .command('unseal')
    .description(
      'unseal with the master passphrase (prompted with echo off, or read from stdin); the first unseal of an empty vault creates its keyring',
    )
    .action(async () => {
      const before = await vaultAdmin((c) => c.status, {});
      if (!before.sealed) {
        console.log('The vault is already unsealed.');
        return;
      }
      let pass: Buffer;
      if (!before.initialized) {
        process.stderr.write(
          'This vault has no keyring yet: the passphrase you enter now creates it.\n' +
            'Choose at least 12 characters (a few random words). It is never stored; without it the secrets cannot be recovered.\n',
        );
        pass = process.stdin.isTTY ? await newPassphraseTwice('New vault passphrase: ') : await readHidden('', 'passphrase');
      } else {
        pass = await readHidden('Vault passphrase: ', 'passphrase');
      }
      let st: StatusResponse;
      try {
        st = await vaultAdmin((c) => c.unseal, { passphrase: pass.toString('utf8') }, 60_000);
      } finally {
        pass.fill(0);
      }
      if (st.keyringCreated) {
        console.log(`Vault initialised: a new keyring (${st.kdf}) and data key ${st.activeKeyId} were created. The vault is unsealed.`);
        console.log('Keep the passphrase safe: it is the only way to unseal this vault again.');
      } else console.log(`Vault unsealed (${st.secrets} secret${st.secrets === 1 ? '' : 's'}).`);
    });

  vault
    .command('seal')
    .description('drop every key from the vault’s memory; secrets are refused until the next unseal')
    .action(async () => {
      await vaultAdmin((c) => c.seal, {});
      console.log('Vault sealed: keys zeroed and dropped from memory. Unseal with: talon vault unseal');
    });

  vault
    .command('passphrase')
    .description(
      'change the master passphrase (re-wraps the data keys; secrets are not re-encrypted). Prompts for the current one and the new one twice; without a terminal, reads two lines from stdin: current, new',
    )
    .action(async () => {
      let oldPass: Buffer;
      let newPass: Buffer;
      if (process.stdin.isTTY) {
        oldPass = await promptHidden('Current vault passphrase: ');
        newPass = await newPassphraseTwice('New vault passphrase: ');
      } else {
        const all = await readStdin();
        const lines = splitLines(all);
        all.fill(0);
        if (lines.length < 2 || lines[0]!.length === 0 || lines[1]!.length === 0) {
          for (const l of lines) l.fill(0);
          throw new CliError('expected two lines on stdin: the current passphrase, then the new one');
        }
        [oldPass, newPass] = [lines[0]!, lines[1]!];
        for (const l of lines.slice(2)) l.fill(0);
      }
      try {
        await vaultAdmin(
          (c) => c.changePassphrase,
          { oldPassphrase: oldPass.toString('utf8'), newPassphrase: newPass.toString('utf8') },
          60_000,
        );
      } finally {
        oldPass.fill(0);
        newPass.fill(0);
      }
      console.log('Vault passphrase changed: data keys re-wrapped under the new passphrase. Use the new one from now on.');
    });

  vault
    .command('rotate-key')
    .description('make a fresh data key active for new encryptions (older keys stay for decryption)')
    .action(async () => {
      const r = await vaultAdmin((c) => c.rotateKey, {});
      console.log(
        `Data key ${r.activeKeyId} is now active${r.retiredKeyId ? `; key ${r.retiredKeyId} retired (kept to decrypt older secrets)` : ''}.`,
      );
    });

  const audit = vault
    .command('audit')
    .description(
      'vault audit records, newest first: who touched which secret, for which host and principal, allowed or not and why (never values)',
    );
  auditFilterOptions(audit, { def: 50, max: 1000 })
    .addHelpText(
      'after',
      '\nExamples:\n  talon vault audit --decision deny --since 1h\n  talon vault audit --secret llm_api_key --principal orchestrator',
    )
    .action(async (o: AuditFilterFlags) => {
      const f = parseAuditFilter(o, Date.now(), { def: 50, max: 1000 });
      const r = await vaultAdmin((c) => c.auditLog, {
        limit: f.limit,
        sinceMs: f.sinceMs,
        untilMs: f.untilMs,
        principal: f.principal,
        decision: f.decision,
        secretName: f.secret,
      });
      if (r.records.length === 0) {
        console.log(f.sinceMs || f.untilMs || f.principal || f.decision || f.secret ? 'No audit records match.' : 'No audit records yet.');
        return;
      }
      for (const a of r.records) {
        console.log(
          [
            new Date(a.atMs).toISOString(),
            a.allowed ? 'ALLOW' : 'DENY ',
            a.action.padEnd(17),
            `caller=${a.caller}`,
            a.secretName ? `secret=${a.secretName}` : '',
            a.host ? `host=${a.host}` : '',
            a.principal ? `principal=${a.principal}` : '',
            `reason=${a.reason}`,
            a.requestId ? `request=${a.requestId}` : '',
          ]
            .filter((x) => x !== '')
            .join('  '),
        );
      }
    });
}
