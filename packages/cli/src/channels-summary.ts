// The "Channels" line `talon up` prints, from the gateway's /readyz facts `channels` and `channel_secrets`
// (its owner is services/gateway/src/channel-secrets.ts, ChannelSecretsFact; read here as JSON
// from the wire, so every field is checked). Pure.

export type ChannelsLine = { settled: boolean; lines: string[] };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The gateway's enabled channels as its /readyz names them (none: no Channels line). */
export function enabledChannels(readyz: unknown): string[] {
  return isRecord(readyz) && Array.isArray(readyz.channels) ? readyz.channels.map(String) : [];
}

/** `readyz`: the gateway's /readyz body (`channels` and `channel_secrets`). */
export function channelsLine(readyz: unknown): ChannelsLine {
  const names = enabledChannels(readyz).join(', ');
  const fact = isRecord(readyz) && isRecord(readyz.channel_secrets) ? readyz.channel_secrets : undefined;
  switch (fact?.state) {
    case 'ok':
      return { settled: true, lines: [`${names} (their vault secrets are stored)`] };
    case 'unknown':
      return {
        settled: true,
        lines: [`${names}: their vault secrets could not be checked (${String(fact.reason)}); unseal the vault, then see the gateway log`],
      };
    case 'missing': {
      const missing = Array.isArray(fact.missing) ? fact.missing.filter(isRecord) : [];
      return {
        settled: true,
        lines: [
          `${names}: NOT WORKING until these vault secrets are stored:`,
          ...missing.map(
            (m) =>
              `  ${String(m.secret)} (${String(m.channel)}; named by ${String(m.setting)}): npm run talon -- secrets set ${String(m.secret)} …`,
          ),
          '  (see the README, Channels, for each secret\u2019s --host and placement)',
        ],
      };
    }
    default:
      return { settled: false, lines: [`${names} (their vault secrets are being checked; see the gateway log)`] };
  }
}
