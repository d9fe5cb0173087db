// Test and benchmark inputs for every built-in rule: true positives and near
// misses (one character short, wrong alphabet, missing context...). All values
// are generated from a seeded PRNG at load time, so this repository contains
// nothing a secret scanner would take for a live credential, and runs are
// reproducible. Never put real credentials here.
import { ALNUM, BASE32, DIGITS, HEX_LOWER, LOWER, UPPER, WORD } from './rules.ts';

export interface RuleFixture {
  /** Each must make the rule fire, alone and embedded in text, JSON or a URL. */
  positives: string[];
  /** None may make any rule fire. */
  nearMisses: string[];
  /** Extra adversarial inputs for the benchmark (repeated to its input size). */
  worst?: string[];
}

let state = 0x2545f491;
/** xorshift32: deterministic, good enough to spread characters. */
function next(): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}

/** `n` characters drawn from `alphabet`. */
export function rnd(alphabet: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[next() % alphabet.length];
  return s;
}

const B64 = ALNUM + '+/';
const LETTERS = UPPER + LOWER;
const HEX_UPPER = '0123456789ABCDEF';
const AGE = 'QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L';
const AZURE = ALNUM + '_~.-';
const b64url = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
const uuid = (): string => `${rnd(HEX_LOWER, 8)}-${rnd(HEX_LOWER, 4)}-${rnd(HEX_LOWER, 4)}-${rnd(HEX_LOWER, 4)}-${rnd(HEX_LOWER, 12)}`;
const pemBody = (lines: number): string => Array.from({ length: lines }, () => rnd(B64, 64)).join('\n');

/** prefix + body of n characters: the positive, and the same one character short. */
function prefixed(prefix: string, alphabet: string, n: number): RuleFixture {
  return { positives: [prefix + rnd(alphabet, n)], nearMisses: [prefix + rnd(alphabet, n - 1)] };
}

/** As `prefixed`, for fixed-length formats: one character too many is also a miss. */
function fixed(prefix: string, alphabet: string, n: number): RuleFixture {
  return { positives: [prefix + rnd(alphabet, n)], nearMisses: [prefix + rnd(alphabet, n - 1), prefix + rnd(alphabet, n + 1)] };
}

function merge(...fs: RuleFixture[]): RuleFixture {
  return {
    positives: fs.flatMap((f) => f.positives),
    nearMisses: fs.flatMap((f) => f.nearMisses),
    worst: fs.flatMap((f) => f.worst ?? []),
  };
}

const jwtHeader = b64url({ alg: 'HS256', typ: 'JWT' });
const jwtPayload = b64url({ sub: rnd(DIGITS, 10), name: 'Fixture', iat: 1700000000 });
const awsSecret = rnd(B64, 40);
const discordToken = (last = 27) => `M${rnd(ALNUM, 23)}.${rnd(WORD, 6)}.${rnd(WORD, last)}`;

export const RULE_FIXTURES: Readonly<Record<string, RuleFixture>> = {
  aws_access_key_id: {
    positives: ['AKIA' + rnd(BASE32, 16), 'ASIA' + rnd(BASE32, 16), `aws_access_key_id=ABIA${rnd(BASE32, 16)}`],
    nearMisses: ['AKIA' + rnd(BASE32, 15), 'AKIA' + rnd(BASE32, 17), 'AKIA' + rnd(BASE32, 8) + 'x' + rnd(BASE32, 7)],
  },
  aws_secret_access_key: {
    positives: [
      `aws_secret_access_key = ${awsSecret}`,
      `{"SecretAccessKey": "${rnd(B64, 40)}"}`,
      `AWS_SECRET_ACCESS_KEY=${rnd(B64, 40)}`,
      `<SecretAccessKey>${rnd(B64, 40)}</SecretAccessKey>`,
    ],
    nearMisses: [
      `aws_secret_access_key = ${rnd(B64, 39)}`,
      'aws_secret_access_key = {{secret:aws_secret_access_key}}',
      `the secret access key is ${rnd(B64, 40)}`,
    ],
  },
  github_pat: merge(fixed('ghp_', ALNUM, 36), { positives: [], nearMisses: ['xghp_' + rnd(ALNUM, 36)] }),
  github_oauth_token: fixed('gho_', ALNUM, 36),
  github_app_token: merge(fixed('ghu_', ALNUM, 36), fixed('ghs_', ALNUM, 36)),
  github_refresh_token: fixed('ghr_', ALNUM, 36),
  github_fine_grained_pat: {
    positives: [`github_pat_${rnd(ALNUM, 22)}_${rnd(ALNUM, 59)}`],
    nearMisses: [`github_pat_${rnd(ALNUM, 22)}_${rnd(ALNUM, 58)}`, `github_pat_${rnd(ALNUM, 21)}_${rnd(ALNUM, 59)}`],
  },
  gitlab_pat: prefixed('glpat-', WORD, 20),
  gitlab_deploy_token: prefixed('gldt-', WORD, 20),
  gitlab_runner_token: prefixed('glrt-', WORD, 20),
  gitlab_pipeline_trigger_token: fixed('glptt-', HEX_LOWER, 40),
  gitlab_oauth_app_secret: fixed('gloas-', HEX_LOWER, 64),
  gitlab_runner_registration_token: prefixed('GR1348941', WORD, 20),
  gitlab_other_token: merge(prefixed('glft-', WORD, 20), prefixed('glimt-', WORD, 20)),
  slack_bot_token: {
    positives: [`xoxb-${rnd(DIGITS, 12)}-${rnd(DIGITS, 13)}-${rnd(ALNUM, 24)}`],
    nearMisses: [
      `xoxb-${rnd(DIGITS, 12)}-${rnd(DIGITS, 13)}-${rnd(ALNUM, 23)}`,
      `xoxb-${rnd(DIGITS, 9)}-${rnd(DIGITS, 13)}-${rnd(ALNUM, 24)}`,
    ],
  },
  slack_user_token: {
    positives: [`xoxp-${rnd(DIGITS, 12)}-${rnd(DIGITS, 12)}-${rnd(DIGITS, 12)}-${rnd(ALNUM, 32)}`],
    nearMisses: [`xoxp-${rnd(DIGITS, 12)}-${rnd(DIGITS, 12)}-${rnd(DIGITS, 12)}-${rnd(ALNUM, 27)}`],
  },
  slack_legacy_token: merge(prefixed('xoxa-', ALNUM, 20), prefixed('xoxr-', ALNUM, 20)),
  slack_config_token: {
    positives: [`xoxe.xoxp-1-${rnd(ALNUM, 60)}`, `xoxe-1-${rnd(ALNUM, 146)}`],
    nearMisses: [`xoxe.xoxp-1-${rnd(ALNUM, 39)}`, `xoxe-2-${rnd(ALNUM, 60)}`],
  },
  slack_app_token: {
    positives: [`xapp-1-A${rnd(UPPER + DIGITS, 10)}-${rnd(DIGITS, 13)}-${rnd(HEX_LOWER, 64)}`],
    nearMisses: [`xapp-1-A${rnd(UPPER + DIGITS, 10)}-${rnd(DIGITS, 13)}-${rnd(HEX_LOWER, 31)}`],
  },
  slack_webhook_url: {
    positives: [`https://hooks.slack.com/services/T${rnd(UPPER + DIGITS, 10)}/B${rnd(UPPER + DIGITS, 10)}/${rnd(ALNUM, 24)}`],
    nearMisses: [
      `https://hooks.slack.com/services/T${rnd(UPPER + DIGITS, 10)}/B${rnd(UPPER + DIGITS, 10)}/${rnd(ALNUM, 23)}`,
      'https://hooks.slack.com/services/',
    ],
  },
  stripe_live_secret_key: merge(prefixed('sk_live_', ALNUM, 24), { positives: ['sk_live_' + rnd(ALNUM, 99)], nearMisses: [] }),
  stripe_test_secret_key: prefixed('sk_test_', ALNUM, 24),
  stripe_restricted_key: merge(prefixed('rk_live_', ALNUM, 24), prefixed('rk_test_', ALNUM, 24)),
  stripe_webhook_secret: prefixed('whsec_', ALNUM, 32),
  openai_project_key: {
    positives: [`sk-proj-${rnd(WORD, 74)}T3BlbkFJ${rnd(WORD, 74)}`, `sk-None-${rnd(WORD, 48)}`],
    nearMisses: [`sk-proj-${rnd(WORD, 39)}`],
  },
  openai_service_account_key: prefixed('sk-svcacct-', WORD, 40),
  openai_admin_key: prefixed('sk-admin-', WORD, 40),
  openai_legacy_key: {
    positives: [`sk-${rnd(ALNUM, 20)}T3BlbkFJ${rnd(ALNUM, 20)}`],
    nearMisses: [`sk-${rnd(ALNUM, 47)}`, `sk-${rnd(ALNUM, 49)}`],
  },
  anthropic_api_key: {
    positives: [`sk-ant-api03-${rnd(WORD, 93)}AA`],
    nearMisses: [`sk-ant-api03-${rnd(WORD, 79)}`, `sk-ant-apiXX-${rnd(WORD, 93)}AA`],
  },
  anthropic_admin_key: {
    positives: [`sk-ant-admin01-${rnd(WORD, 93)}AA`],
    nearMisses: [`sk-ant-admin01-${rnd(WORD, 79)}`],
  },
  anthropic_oauth_token: merge(prefixed('sk-ant-oat01-', WORD, 40), { positives: [`sk-ant-sid01-${rnd(WORD, 90)}`], nearMisses: [] }),
  google_api_key: fixed('AIza', WORD, 35),
  google_oauth_client_secret: fixed('GOCSPX-', WORD, 28),
  google_oauth_access_token: merge(prefixed('ya29.', WORD, 30), { positives: ['ya29.' + rnd(WORD, 150)], nearMisses: [] }),
  gcp_service_account_key: {
    positives: [
      JSON.stringify({ type: 'service_account', project_id: 'fixture', private_key_id: rnd(HEX_LOWER, 40), client_email: 'x@fixture.iam' }),
      JSON.stringify({ private_key: `-----BEGIN PRIVATE KEY-----\n${pemBody(3)}\n-----END PRIVATE KEY-----\n` }),
    ],
    nearMisses: [JSON.stringify({ private_key_id: rnd(HEX_LOWER, 39) }), JSON.stringify({ private_key: '' })],
  },
  huggingface_token: fixed('hf_', LETTERS, 34),
  huggingface_org_token: fixed('api_org_', LETTERS, 34),
  npm_token: fixed('npm_', ALNUM, 36),
  pypi_token: merge(prefixed('pypi-AgEIcHlwaS5vcmc', WORD, 50), {
    positives: ['pypi-AgENdGVzdC5weXBpLm9yZw' + rnd(WORD, 120)],
    nearMisses: [],
  }),
  docker_hub_pat: prefixed('dckr_pat_', WORD, 27),
  private_key_pem: {
    positives: [
      `-----BEGIN RSA PRIVATE KEY-----\n${pemBody(4)}\n-----END RSA PRIVATE KEY-----`,
      `-----BEGIN EC PRIVATE KEY-----\r\n${pemBody(2)}\r\n-----END EC PRIVATE KEY-----`,
      `-----BEGIN OPENSSH PRIVATE KEY-----\n${Buffer.from('openssh-key-v1\0\0\0\0').toString('base64')}${rnd(B64, 40)}\n-----END OPENSSH PRIVATE KEY-----`,
      `-----BEGIN PRIVATE KEY-----\n${pemBody(3)}\n-----END PRIVATE KEY-----`,
      `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${pemBody(3)}\n-----END ENCRYPTED PRIVATE KEY-----`,
      `-----BEGIN DSA PRIVATE KEY-----\n${pemBody(2)}\n-----END DSA PRIVATE KEY-----`,
      `-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,${rnd(HEX_UPPER, 32)}\n\n${pemBody(3)}\n-----END RSA PRIVATE KEY-----`,
      // As it appears inside a JSON string: newlines are two characters.
      `-----BEGIN PRIVATE KEY-----\\n${rnd(B64, 64)}\\n${rnd(B64, 64)}\\n-----END PRIVATE KEY-----\\n`,
    ],
    nearMisses: [
      `-----BEGIN PUBLIC KEY-----\n${pemBody(2)}\n-----END PUBLIC KEY-----`,
      `-----BEGIN CERTIFICATE-----\n${pemBody(2)}\n-----END CERTIFICATE-----`,
      "if (pem.startsWith('-----BEGIN PRIVATE KEY-----')) return parse(pem);",
      `-----BEGIN PRIVATE KEY-----\n${rnd(B64, 15)}\n-----END PRIVATE KEY-----`,
    ],
  },
  pgp_private_key_block: {
    positives: [`-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n${pemBody(3)}\n-----END PGP PRIVATE KEY BLOCK-----`],
    nearMisses: [
      `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n${pemBody(2)}\n-----END PGP PUBLIC KEY BLOCK-----`,
      'armor headers look like -----BEGIN PGP PRIVATE KEY BLOCK----- followed by the key',
    ],
  },
  putty_private_key: {
    // Assembled so that this source file does not itself contain a PPK header.
    positives: [`${'PuTTY-User-Key-File-'}${'3: ssh-ed25519'}\nEncryption: none\nComment: fixture\nPublic-Lines: 2\n${pemBody(2)}`],
    nearMisses: ['PuTTY-User-Key-File-4: ssh-ed25519', 'see PuTTY-User-Key-File- headers in the PPK spec'],
  },
  age_secret_key: fixed('AGE-SECRET-KEY-1', AGE, 58),
  nats_nkey_seed: fixed('SUA', BASE32, 55),
  jwt: {
    positives: [`${jwtHeader}.${jwtPayload}.${rnd(WORD, 43)}`, `Bearer ${jwtHeader}.${jwtPayload}.${rnd(WORD, 342)}`],
    nearMisses: [`${jwtHeader}.${jwtPayload}`, `${jwtHeader}.${jwtPayload}.${rnd(WORD, 15)}`, `${jwtHeader}.notapayload.${rnd(WORD, 43)}`],
    worst: [`eyJ${'A'.repeat(1990)}.eyJ${'A'.repeat(7990)}.${'A'.repeat(15)} `, `eyJ${'A'.repeat(2100)} `],
  },
  twilio_api_key: fixed('SK', HEX_LOWER, 32),
  twilio_account_sid: merge(fixed('AC', HEX_LOWER, 32), { positives: [], nearMisses: ['AC' + 'F' + rnd(HEX_UPPER, 31)] }),
  sendgrid_api_key: {
    positives: [`SG.${rnd(WORD, 22)}.${rnd(WORD, 43)}`],
    nearMisses: [`SG.${rnd(WORD, 22)}.${rnd(WORD, 42)}`, `SG.${rnd(WORD, 21)}.${rnd(WORD, 43)}`],
  },
  mailgun_api_key: fixed('key-', HEX_LOWER, 32),
  mailchimp_api_key: {
    positives: [`${rnd(HEX_LOWER, 32)}-us14`, `${rnd(HEX_LOWER, 32)}-us1`],
    nearMisses: [`${rnd(HEX_LOWER, 31)}-us14`, `${rnd(HEX_LOWER, 32)}-uk14`],
  },
  telegram_bot_token: {
    positives: [
      `${rnd('123456789', 1)}${rnd(DIGITS, 8)}:AA${rnd(WORD, 33)}`,
      `https://api.telegram.org/bot${rnd('123456789', 1)}${rnd(DIGITS, 9)}:AA${rnd(WORD, 33)}/sendMessage`,
    ],
    nearMisses: [`${rnd('123456789', 1)}${rnd(DIGITS, 8)}:AA${rnd(WORD, 32)}`, `${rnd(DIGITS, 6)}:AA${rnd(WORD, 33)}`],
  },
  discord_bot_token: {
    positives: [`DISCORD_TOKEN=${discordToken()}`, `Authorization: Bot ${discordToken(38)}`, `discord_bot_token: "${discordToken()}"`],
    nearMisses: [`DISCORD_TOKEN=${discordToken(26)}`, discordToken()],
  },
  discord_webhook_url: {
    positives: [`https://discord.com/api/webhooks/${rnd(DIGITS, 18)}/${rnd(WORD, 68)}`],
    nearMisses: [`https://discord.com/api/webhooks/${rnd(DIGITS, 18)}/${rnd(WORD, 59)}`],
  },
  shopify_access_token: fixed('shpat_', HEX_LOWER, 32),
  shopify_custom_app_token: fixed('shpca_', HEX_LOWER, 32),
  shopify_private_app_token: fixed('shppa_', HEX_LOWER, 32),
  shopify_shared_secret: fixed('shpss_', HEX_LOWER, 32),
  square_access_token: prefixed('sq0atp-', WORD, 22),
  square_oauth_secret: prefixed('sq0csp-', WORD, 43),
  square_production_token: fixed('EAAA', WORD, 60),
  braintree_access_token: {
    positives: [
      `access_token$production$${rnd(LOWER + DIGITS, 16)}$${rnd(HEX_LOWER, 32)}`,
      `access_token$sandbox$${rnd(LOWER + DIGITS, 16)}$${rnd(HEX_LOWER, 32)}`,
    ],
    nearMisses: [`access_token$production$${rnd(LOWER + DIGITS, 16)}$${rnd(HEX_LOWER, 31)}`],
  },
  azure_storage_account_key: {
    positives: [`DefaultEndpointsProtocol=https;AccountName=fixture;AccountKey=${rnd(B64, 86)}==;EndpointSuffix=core.windows.net`],
    nearMisses: [`DefaultEndpointsProtocol=https;AccountName=fixture;AccountKey=${rnd(B64, 85)}==;EndpointSuffix=core.windows.net`],
  },
  azure_sas_connection_key: {
    positives: [
      `Endpoint=sb://fixture.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${rnd(B64, 43)}=`,
    ],
    nearMisses: [`Endpoint=sb://fixture.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=${rnd(B64, 42)}=`],
  },
  azure_ad_client_secret: {
    positives: [`${rnd(ALNUM, 3)}8Q~${rnd(AZURE, 34)}`, `client_secret=${rnd(ALNUM, 3)}7Q~${rnd(AZURE, 31)}`],
    nearMisses: [`${rnd(ALNUM, 3)}8Q~${rnd(AZURE, 30)}`, `${rnd(ALNUM, 3)}8Q~${rnd(AZURE, 35)}`],
  },
  digitalocean_pat: fixed('dop_v1_', HEX_LOWER, 64),
  digitalocean_oauth_token: fixed('doo_v1_', HEX_LOWER, 64),
  digitalocean_refresh_token: fixed('dor_v1_', HEX_LOWER, 64),
  heroku_api_key: {
    positives: [`HEROKU_API_KEY=${uuid()}`, `heroku_api_token: "${uuid()}"`],
    nearMisses: [`HEROKU_API_KEY=${uuid().slice(0, -1)}`, `heroku app id ${uuid()}`],
  },
  heroku_api_key_v2: prefixed('HRKU-AA', WORD, 58),
  datadog_api_key: {
    positives: [
      `DD_API_KEY=${rnd(HEX_LOWER, 32)}`,
      `DD-APPLICATION-KEY: ${rnd(HEX_LOWER, 40)}`,
      `datadog_api_key: "${rnd(HEX_LOWER, 32)}"`,
    ],
    nearMisses: [`DD_API_KEY=${rnd(HEX_LOWER, 31)}`, `datadog docs ${rnd(HEX_LOWER, 32)}`],
  },
  vault_service_token: merge(prefixed('hvs.', WORD, 24), { positives: ['hvs.' + rnd(WORD, 90)], nearMisses: [] }),
  vault_batch_token: merge(prefixed('hvb.', WORD, 24), { positives: ['hvb.' + rnd(WORD, 138)], nearMisses: [] }),
  doppler_token: merge(prefixed('dp.pt.', ALNUM, 40), {
    positives: ['dp.st.dev.' + rnd(ALNUM, 40)],
    nearMisses: ['dp.st.dev.' + rnd(ALNUM, 39)],
  }),
  pulumi_access_token: fixed('pul-', HEX_LOWER, 40),
  databricks_token: merge(fixed('dapi', HEX_LOWER, 32), { positives: [`dapi${rnd(HEX_LOWER, 32)}-2`], nearMisses: [] }),
  supabase_pat: fixed('sbp_', HEX_LOWER, 40),
  atlassian_api_token: prefixed('ATATT3', WORD, 150),
  bitbucket_app_password: prefixed('ATBB', ALNUM, 32),
  linear_api_key: fixed('lin_api_', ALNUM, 40),
  notion_token: {
    positives: [`ntn_${rnd(DIGITS, 11)}${rnd(ALNUM, 35)}`],
    nearMisses: [`ntn_${rnd(DIGITS, 11)}${rnd(ALNUM, 34)}`, `ntn_${rnd(DIGITS, 10)}x${rnd(ALNUM, 35)}`],
  },
  notion_token_legacy: merge(fixed('secret_', ALNUM, 43), {
    positives: [],
    nearMisses: ['secret_key_base = {{secret:rails_secret_key_base}}'],
  }),
  postman_api_key: {
    positives: [`PMAK-${rnd(HEX_LOWER, 24)}-${rnd(HEX_LOWER, 34)}`],
    nearMisses: [`PMAK-${rnd(HEX_LOWER, 24)}-${rnd(HEX_LOWER, 33)}`],
  },
  sentry_org_token: {
    positives: [
      `sntrys_${b64url({ iat: 1700000000, url: 'https://sentry.io', region_url: 'https://us.sentry.io', org: 'fixture' })}_${rnd(B64, 43)}`,
    ],
    nearMisses: [`sntrys_eyJ${rnd(WORD, 59)}`],
  },
  sentry_user_token: fixed('sntryu_', HEX_LOWER, 64),
  grafana_cloud_token: {
    positives: [
      `glc_${Buffer.from(JSON.stringify({ o: rnd(DIGITS, 6), n: 'stack-token', k: rnd(ALNUM, 24), m: { r: 'us' } })).toString('base64')}`,
    ],
    nearMisses: [`glc_${rnd(ALNUM, 31)}`],
  },
  grafana_service_account_token: {
    positives: [`glsa_${rnd(ALNUM, 32)}_${rnd(HEX_LOWER, 8)}`],
    nearMisses: [`glsa_${rnd(ALNUM, 31)}_${rnd(HEX_LOWER, 8)}`, `glsa_${rnd(ALNUM, 32)}_${rnd(HEX_LOWER, 7)}`],
  },
  newrelic_user_api_key: fixed('NRAK-', UPPER + DIGITS, 27),
  newrelic_insert_key: prefixed('NRII-', WORD, 32),
  groq_api_key: fixed('gsk_', ALNUM, 52),
  xai_api_key: fixed('xai-', ALNUM, 80),
  talon_api_token: merge(fixed('talon_pat_', HEX_LOWER, 64), { positives: [], nearMisses: ['talon_pat_F' + rnd(HEX_UPPER, 63)] }),
};
