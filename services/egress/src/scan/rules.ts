// Credential formats egress refuses to let out. Each rule is tried only where one
// of its literals occurs (found for all rules at once by a 4-byte prefix index),
// and its pattern is then matched *at that position* (sticky); context before the
// literal is checked with a lookbehind. Every quantifier is bounded, so one attempt
// costs at most a few hundred steps, and a left-boundary lookbehind makes attempts
// inside a longer token fail on their first step.
//
// Patterns require a format's minimum length rather than its exact length where
// a format may grow; fixed-length formats also check the right boundary so that a
// longer run of the same characters (a base64 blob, say) does not match.
//
// Where a pattern spans quotes, whitespace or newlines (names next to values, PEM
// armor), it also accepts them JSON-escaped up to three levels deep (\" \\n ...): the scanner
// does not re-scan text around such escapes (see LeakScanner), so the raw layer
// must match them as they appear inside JSON strings.

/** Raised for a rule the scanner cannot run safely or cheaply; the message says what to change. */
export class InvalidLeakRule extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidLeakRule';
  }
}

export interface LeakRule {
  /** Stable snake_case id, reported in findings and audit records. */
  readonly id: string;
  readonly description: string;
  /**
   * Literal strings of at least 4 characters; the pattern is tried only where one
   * occurs, anchored at its first character. Compared case-insensitively when the
   * pattern has the `i` flag. Without literals the pattern is run over every layer,
   * which is far slower: built-in rules always have them.
   */
  readonly literals?: readonly string[];
  /** Bounded quantifiers only ({m,n}, ?, never *, + or {m,}). */
  readonly pattern: RegExp;
}

export const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
export const LOWER = 'abcdefghijklmnopqrstuvwxyz';
export const DIGITS = '0123456789';
export const HEX_LOWER = '0123456789abcdef';
export const ALNUM = UPPER + LOWER + DIGITS;
export const WORD = ALNUM + '_-';
export const BASE32 = UPPER + '234567';
const AZURE_SECRET_CHARS = ALNUM + '_~.-';

/**
 * Every string made of the parts in order: a string part is literal, an array
 * part is a set of alternatives. Used to widen literals shorter than 4 characters
 * with the characters that must follow them.
 */
export function expandLiterals(...parts: ReadonlyArray<string | readonly string[]>): string[] {
  let out = [''];
  for (const part of parts) {
    const alts = typeof part === 'string' ? [part] : part;
    out = out.flatMap((prefix) => alts.map((a) => prefix + a));
  }
  return out;
}

const chars = (s: string): string[] => [...s];

/**
 * Throws InvalidLeakRule if the pattern has an unbounded quantifier (*, +, {n,})
 * outside a character class: the engine's cost guarantee depends on it.
 */
export function assertBoundedPattern(id: string, source: string): void {
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '[') {
      for (i++; i < source.length && source[i] !== ']'; i++) if (source[i] === '\\') i++;
      continue;
    }
    if (c === '*' || c === '+') throw new InvalidLeakRule(`rule ${id}: unbounded quantifier "${c}" at ${i}; use {m,n}`);
    if (c === '{' && /^\{\d+,\}/.test(source.slice(i)))
      throw new InvalidLeakRule(`rule ${id}: unbounded quantifier "{m,}" at ${i}; give an upper bound`);
  }
}

export const BUILTIN_RULES: readonly LeakRule[] = [
  // ------------------------------------------------------------------ AWS
  {
    id: 'aws_access_key_id',
    description: 'AWS access key ID (AKIA long-term, ASIA temporary, ABIA/ACCA/A3T variants)',
    literals: ['AKIA', 'ASIA', 'ABIA', 'ACCA', ...expandLiterals('A3T', chars(UPPER + DIGITS))],
    pattern: /(?<![A-Za-z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])/,
  },
  {
    id: 'aws_secret_access_key',
    description: 'AWS secret access key after its name (aws_secret_access_key=, "SecretAccessKey":, <SecretAccessKey>)',
    literals: ['secret', 'aws_', 'aws-'],
    pattern:
      /(?:secret[_-]?access[_-]?key|aws[_-]?secret[_-]?(?:access[_-]?)?key)["'\\]{0,4}(?:\s|\\{1,4}[nrt]){0,5}(?:=>|:=|[:=>])(?:\s|\\{1,4}[nrt]){0,5}["'\\]{0,4}[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/i,
  },
  // ------------------------------------------------------------------ GitHub
  {
    id: 'github_pat',
    description: 'GitHub classic personal access token (ghp_)',
    literals: ['ghp_'],
    pattern: /(?<![A-Za-z0-9_-])ghp_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'github_oauth_token',
    description: 'GitHub OAuth access token (gho_)',
    literals: ['gho_'],
    pattern: /(?<![A-Za-z0-9_-])gho_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'github_app_token',
    description: 'GitHub App user-to-server (ghu_) or server-to-server (ghs_) token',
    literals: ['ghu_', 'ghs_'],
    pattern: /(?<![A-Za-z0-9_-])gh[us]_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'github_refresh_token',
    description: 'GitHub refresh token (ghr_)',
    literals: ['ghr_'],
    pattern: /(?<![A-Za-z0-9_-])ghr_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'github_fine_grained_pat',
    description: 'GitHub fine-grained personal access token (github_pat_)',
    literals: ['github_pat_'],
    pattern: /(?<![A-Za-z0-9_-])github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}(?![A-Za-z0-9_-])/,
  },
  // ------------------------------------------------------------------ GitLab
  {
    id: 'gitlab_pat',
    description: 'GitLab personal, project or group access token (glpat-)',
    literals: ['glpat-'],
    pattern: /(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20}/,
  },
  {
    id: 'gitlab_deploy_token',
    description: 'GitLab deploy token (gldt-)',
    literals: ['gldt-'],
    pattern: /(?<![A-Za-z0-9_-])gldt-[A-Za-z0-9_-]{20}/,
  },
  {
    id: 'gitlab_runner_token',
    description: 'GitLab runner authentication token (glrt-)',
    literals: ['glrt-'],
    pattern: /(?<![A-Za-z0-9_-])glrt-[A-Za-z0-9_-]{20}/,
  },
  {
    id: 'gitlab_pipeline_trigger_token',
    description: 'GitLab pipeline trigger token (glptt-)',
    literals: ['glptt-'],
    pattern: /(?<![A-Za-z0-9_-])glptt-[0-9a-f]{40}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'gitlab_oauth_app_secret',
    description: 'GitLab OAuth application secret (gloas-)',
    literals: ['gloas-'],
    pattern: /(?<![A-Za-z0-9_-])gloas-[0-9a-f]{64}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'gitlab_runner_registration_token',
    description: 'GitLab runner registration token (GR1348941)',
    literals: ['GR1348941'],
    pattern: /(?<![A-Za-z0-9_-])GR1348941[A-Za-z0-9_-]{20}/,
  },
  {
    id: 'gitlab_other_token',
    description: 'GitLab feed, incoming-mail, agent, SCIM, feature-flag or CI build token',
    literals: ['glft-', 'glimt-', 'glagent-', 'glsoat-', 'glffct-', 'glcbt-'],
    pattern: /(?<![A-Za-z0-9_-])gl(?:ft|imt|agent|soat|ffct|cbt)-[A-Za-z0-9_-]{20}/,
  },
  // ------------------------------------------------------------------ Slack
  {
    id: 'slack_bot_token',
    description: 'Slack bot token (xoxb-)',
    literals: ['xoxb-'],
    pattern: /(?<![A-Za-z0-9_-])xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}/,
  },
  {
    id: 'slack_user_token',
    description: 'Slack user token (xoxp-)',
    literals: ['xoxp-'],
    pattern: /(?<![A-Za-z0-9_-])xoxp-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{28}/,
  },
  {
    id: 'slack_legacy_token',
    description: 'Slack legacy workspace, refresh or other token (xoxa-, xoxr-, xoxo-, xoxs-)',
    literals: ['xoxa-', 'xoxr-', 'xoxo-', 'xoxs-'],
    pattern: /(?<![A-Za-z0-9_-])xox[aors]-[A-Za-z0-9-]{20}/,
  },
  {
    id: 'slack_config_token',
    description: 'Slack app configuration access or refresh token (xoxe.xoxp-1-, xoxe-1-)',
    literals: ['xoxe.', 'xoxe-'],
    pattern: /(?<![A-Za-z0-9_-])xoxe(?:\.xox[bp])?-1-[A-Za-z0-9]{40}/,
  },
  {
    id: 'slack_app_token',
    description: 'Slack app-level token (xapp-)',
    literals: ['xapp-'],
    pattern: /(?<![A-Za-z0-9_-])xapp-[0-9]-[A-Z0-9]{9,12}-[0-9]{10,13}-[A-Za-z0-9]{32}/,
  },
  {
    id: 'slack_webhook_url',
    description: 'Slack incoming webhook, workflow or trigger URL',
    literals: ['hooks.slack.com/'],
    pattern: /hooks\.slack\.com\/(?:services|workflows|triggers)\/T[A-Z0-9]{8,12}\/[A-Z0-9]{8,19}\/[A-Za-z0-9/]{24}/,
  },
  // ------------------------------------------------------------------ Stripe
  {
    id: 'stripe_live_secret_key',
    description: 'Stripe live secret key (sk_live_)',
    literals: ['sk_live_'],
    pattern: /(?<![A-Za-z0-9_-])sk_live_[A-Za-z0-9]{24}/,
  },
  {
    id: 'stripe_test_secret_key',
    description: 'Stripe test secret key (sk_test_)',
    literals: ['sk_test_'],
    pattern: /(?<![A-Za-z0-9_-])sk_test_[A-Za-z0-9]{24}/,
  },
  {
    id: 'stripe_restricted_key',
    description: 'Stripe restricted key (rk_live_, rk_test_)',
    literals: ['rk_live_', 'rk_test_'],
    pattern: /(?<![A-Za-z0-9_-])rk_(?:live|test)_[A-Za-z0-9]{24}/,
  },
  {
    id: 'stripe_webhook_secret',
    description: 'Stripe webhook signing secret (whsec_)',
    literals: ['whsec_'],
    pattern: /(?<![A-Za-z0-9_-])whsec_[A-Za-z0-9+/]{32}/,
  },
  // ------------------------------------------------------------------ OpenAI
  {
    id: 'openai_project_key',
    description: 'OpenAI project or user API key (sk-proj-, sk-None-)',
    literals: ['sk-proj-', 'sk-None-'],
    pattern: /(?<![A-Za-z0-9_-])sk-(?:proj|None)-[A-Za-z0-9_-]{40}/,
  },
  {
    id: 'openai_service_account_key',
    description: 'OpenAI service account key (sk-svcacct-)',
    literals: ['sk-svcacct-'],
    pattern: /(?<![A-Za-z0-9_-])sk-svcacct-[A-Za-z0-9_-]{40}/,
  },
  {
    id: 'openai_admin_key',
    description: 'OpenAI admin key (sk-admin-)',
    literals: ['sk-admin-'],
    pattern: /(?<![A-Za-z0-9_-])sk-admin-[A-Za-z0-9_-]{40}/,
  },
  {
    id: 'openai_legacy_key',
    description: 'OpenAI legacy user key (sk- and 48 alphanumerics)',
    literals: expandLiterals('sk-', chars(ALNUM)),
    pattern: /(?<![A-Za-z0-9_-])sk-[A-Za-z0-9]{48}(?![A-Za-z0-9_-])/,
  },
  // ------------------------------------------------------------------ Anthropic
  {
    id: 'anthropic_api_key',
    description: 'Anthropic API key (sk-ant-api03-)',
    literals: ['sk-ant-api0'],
    pattern: /(?<![A-Za-z0-9_-])sk-ant-api0[0-9]-[A-Za-z0-9_-]{80}/,
  },
  {
    id: 'anthropic_admin_key',
    description: 'Anthropic admin key (sk-ant-admin01-)',
    literals: ['sk-ant-admin0'],
    pattern: /(?<![A-Za-z0-9_-])sk-ant-admin0[0-9]-[A-Za-z0-9_-]{80}/,
  },
  {
    id: 'anthropic_oauth_token',
    description: 'Anthropic OAuth access, refresh or session token (sk-ant-oat01-, sk-ant-ort01-, sk-ant-sid01-)',
    literals: ['sk-ant-oat0', 'sk-ant-ort0', 'sk-ant-sid0'],
    pattern: /(?<![A-Za-z0-9_-])sk-ant-(?:oat|ort|sid)0[0-9]-[A-Za-z0-9_-]{40}/,
  },
  // ------------------------------------------------------------------ Google
  {
    id: 'google_api_key',
    description: 'Google API key (AIza)',
    literals: ['AIza'],
    pattern: /(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'google_oauth_client_secret',
    description: 'Google OAuth client secret (GOCSPX-)',
    literals: ['GOCSPX-'],
    pattern: /(?<![A-Za-z0-9_-])GOCSPX-[A-Za-z0-9_-]{28}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'google_oauth_access_token',
    description: 'Google OAuth 2.0 access token (ya29.)',
    literals: ['ya29.'],
    pattern: /(?<![A-Za-z0-9_-])ya29\.[A-Za-z0-9_-]{30}/,
  },
  {
    id: 'gcp_service_account_key',
    description: 'GCP service-account JSON key ("private_key_id" or "private_key" holding a PEM key)',
    literals: ['private_key'],
    pattern:
      /private_key(?:_id["'\\]{1,4}\s{0,5}:\s{0,5}["'\\]{1,4}[a-f0-9]{40}(?![A-Za-z0-9])|["'\\]{1,4}\s{0,5}:\s{0,5}["'\\]{1,4}-----BEGIN (?:RSA )?PRIVATE KEY-----)/,
  },
  // ------------------------------------------------------------------ Package registries and ML hubs
  {
    id: 'huggingface_token',
    description: 'Hugging Face user access token (hf_)',
    literals: expandLiterals('hf_', chars(UPPER + LOWER)),
    pattern: /(?<![A-Za-z0-9_-])hf_[A-Za-z]{34}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'huggingface_org_token',
    description: 'Hugging Face organization API token (api_org_)',
    literals: ['api_org_'],
    pattern: /(?<![A-Za-z0-9_-])api_org_[A-Za-z]{34}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'npm_token',
    description: 'npm access token (npm_)',
    literals: ['npm_'],
    pattern: /(?<![A-Za-z0-9_-])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'pypi_token',
    description: 'PyPI or TestPyPI upload token (a pypi- macaroon)',
    literals: ['pypi-AgEIcHlwaS5vcmc', 'pypi-AgENdGVzdC5weXBpLm9yZw'],
    pattern: /pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50}/,
  },
  {
    id: 'docker_hub_pat',
    description: 'Docker Hub personal access token (dckr_pat_)',
    literals: ['dckr_pat_'],
    pattern: /(?<![A-Za-z0-9_-])dckr_pat_[A-Za-z0-9_-]{27}/,
  },
  // ------------------------------------------------------------------ Keys
  {
    id: 'private_key_pem',
    description: 'PEM private key (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted PKCS#8) with key material after the header',
    literals: ['-----BEGIN '],
    pattern:
      /-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|ANY) )?PRIVATE KEY-----(?:\\{1,4}[rn]|[\r\n ]){1,4}(?:(?:Proc-Type|DEK-Info|Comment): [^\r\n\\]{1,120}(?:\\{1,4}[rn]|[\r\n]){1,4}){0,3}[A-Za-z0-9+/=]{16}/,
  },
  {
    id: 'pgp_private_key_block',
    description: 'ASCII-armored PGP private key block with key material',
    literals: ['-----BEGIN PGP PRIVATE'],
    pattern:
      /-----BEGIN PGP PRIVATE KEY BLOCK-----(?:\\{1,4}[rn]|[\r\n ]){1,4}(?:[A-Za-z-]{1,20}: [^\r\n\\]{1,120}(?:\\{1,4}[rn]|[\r\n]){1,4}){0,4}[A-Za-z0-9+/=]{16}/,
  },
  {
    id: 'putty_private_key',
    description: 'PuTTY private key file (PPK v2/v3)',
    literals: ['PuTTY-User-Key-File-'],
    pattern: /PuTTY-User-Key-File-[23]: (?:ssh-|ecdsa-)/,
  },
  {
    id: 'age_secret_key',
    description: 'age encryption secret key (AGE-SECRET-KEY-1)',
    literals: ['AGE-SECRET-KEY-1'],
    pattern: /(?<![A-Za-z0-9_-])AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'nats_nkey_seed',
    description: 'NATS nkey seed (SUA..., SOA..., SAA...), what Talon services authenticate to NATS with',
    literals: expandLiterals('S', chars('UAONCPX'), 'A', chars(BASE32)),
    pattern: /(?<![A-Za-z0-9_-])S[UAONCPX]A[A-Z2-7]{55}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'jwt',
    description: 'JSON Web Token (eyJ header, eyJ payload, signature)',
    literals: expandLiterals('eyJ', chars(WORD)),
    pattern: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,2000}\.eyJ[A-Za-z0-9_-]{8,8000}\.[A-Za-z0-9_-]{16}/,
  },
  // ------------------------------------------------------------------ Messaging
  {
    id: 'twilio_api_key',
    description: 'Twilio API key SID (SK and 32 hex)',
    literals: expandLiterals('SK', chars(HEX_LOWER), chars(HEX_LOWER)),
    pattern: /(?<![A-Za-z0-9_-])SK[0-9a-f]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'twilio_account_sid',
    description: 'Twilio account SID (AC and 32 hex)',
    literals: expandLiterals('AC', chars(HEX_LOWER), chars(HEX_LOWER)),
    pattern: /(?<![A-Za-z0-9_-])AC[0-9a-f]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'sendgrid_api_key',
    description: 'SendGrid API key (SG.x.y)',
    literals: expandLiterals('SG.', chars(WORD)),
    pattern: /(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'mailgun_api_key',
    description: 'Mailgun API key (key- and 32 hex)',
    literals: ['key-'],
    pattern: /(?<![A-Za-z0-9_-])key-[0-9a-f]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'mailchimp_api_key',
    description: 'Mailchimp API key (32 hex, -us and a datacenter number)',
    literals: expandLiterals(chars(HEX_LOWER), '-us'),
    pattern: /(?<=(?<![A-Za-z0-9_-])[0-9a-f]{31})[0-9a-f]-us[0-9]{1,2}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'telegram_bot_token',
    description: 'Telegram bot token (8-10 digit bot id, colon, 35-character secret starting with AA)',
    literals: expandLiterals(chars(DIGITS), ':AA'),
    pattern: /(?<=(?<![0-9])[0-9]{7,9})[0-9]:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'discord_bot_token',
    description: 'Discord bot token after "discord...=" or "Bot " (the bare format is too generic)',
    literals: ['discord', 'bot '],
    pattern:
      /(?:discord[A-Za-z0-9_ .-]{0,30}?["'\\]{0,4}(?:\s|\\{1,4}[nrt]){0,5}(?:=>|:=|[:=(,])(?:\s|\\{1,4}[nrt]){0,5}["'`\\]{0,4}|bot\s{1,3})[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}/i,
  },
  {
    id: 'discord_webhook_url',
    description: 'Discord webhook URL',
    literals: ['discord.com/api/webhooks/', 'discordapp.com/api/webhooks/'],
    pattern: /discord(?:app)?\.com\/api\/webhooks\/[0-9]{17,20}\/[A-Za-z0-9_-]{60}/,
  },
  // ------------------------------------------------------------------ Commerce and payments
  {
    id: 'shopify_access_token',
    description: 'Shopify Admin API access token (shpat_)',
    literals: ['shpat_'],
    pattern: /(?<![A-Za-z0-9_-])shpat_[a-fA-F0-9]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'shopify_custom_app_token',
    description: 'Shopify custom app access token (shpca_)',
    literals: ['shpca_'],
    pattern: /(?<![A-Za-z0-9_-])shpca_[a-fA-F0-9]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'shopify_private_app_token',
    description: 'Shopify private app access token (shppa_)',
    literals: ['shppa_'],
    pattern: /(?<![A-Za-z0-9_-])shppa_[a-fA-F0-9]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'shopify_shared_secret',
    description: 'Shopify app shared secret (shpss_)',
    literals: ['shpss_'],
    pattern: /(?<![A-Za-z0-9_-])shpss_[a-fA-F0-9]{32}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'square_access_token',
    description: 'Square OAuth access token (sq0atp-)',
    literals: ['sq0atp-'],
    pattern: /(?<![A-Za-z0-9_-])sq0atp-[A-Za-z0-9_-]{22}/,
  },
  {
    id: 'square_oauth_secret',
    description: 'Square application secret (sq0csp-)',
    literals: ['sq0csp-'],
    pattern: /(?<![A-Za-z0-9_-])sq0csp-[A-Za-z0-9_-]{43}/,
  },
  {
    id: 'square_production_token',
    description: 'Square production access token (EAAA and 60 characters)',
    literals: ['EAAA'],
    pattern: /(?<![A-Za-z0-9_-])EAAA[A-Za-z0-9_-]{60}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'braintree_access_token',
    description: 'PayPal Braintree access token (access_token$production$...)',
    literals: ['access_token$'],
    pattern: /access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}/,
  },
  // ------------------------------------------------------------------ Azure
  {
    id: 'azure_storage_account_key',
    description: 'Azure storage account key in a connection string (AccountKey=)',
    literals: ['accountkey='],
    pattern: /accountkey=[A-Za-z0-9+/]{86}==/i,
  },
  {
    id: 'azure_sas_connection_key',
    description: 'Azure Service Bus / Event Hubs shared access key in a connection string (SharedAccessKey=)',
    literals: ['sharedaccesskey='],
    pattern: /sharedaccesskey=[A-Za-z0-9+/]{43}=/i,
  },
  {
    id: 'azure_ad_client_secret',
    description: 'Microsoft Entra ID (Azure AD) client secret (3 characters, a digit, Q~, 31-34 characters)',
    literals: expandLiterals(chars(DIGITS), 'Q~', chars(AZURE_SECRET_CHARS)),
    pattern: /(?<=(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.]{3})[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])/,
  },
  // ------------------------------------------------------------------ Cloud and infrastructure
  {
    id: 'digitalocean_pat',
    description: 'DigitalOcean personal access token (dop_v1_)',
    literals: ['dop_v1_'],
    pattern: /(?<![A-Za-z0-9_-])dop_v1_[a-f0-9]{64}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'digitalocean_oauth_token',
    description: 'DigitalOcean OAuth access token (doo_v1_)',
    literals: ['doo_v1_'],
    pattern: /(?<![A-Za-z0-9_-])doo_v1_[a-f0-9]{64}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'digitalocean_refresh_token',
    description: 'DigitalOcean OAuth refresh token (dor_v1_)',
    literals: ['dor_v1_'],
    pattern: /(?<![A-Za-z0-9_-])dor_v1_[a-f0-9]{64}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'heroku_api_key',
    description: 'Heroku API key (a UUID) after a heroku...key/token name',
    literals: ['heroku'],
    pattern:
      /heroku[A-Za-z0-9_ .-]{0,30}?(?:key|token|secret|password)["'\\]{0,4}(?:\s|\\{1,4}[nrt]){0,5}(?:=>|:=|[:=>])(?:\s|\\{1,4}[nrt]){0,5}["'\\]{0,4}[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![A-Za-z0-9_-])/i,
  },
  {
    id: 'heroku_api_key_v2',
    description: 'Heroku platform API token (HRKU-)',
    literals: ['HRKU-'],
    pattern: /(?<![A-Za-z0-9_-])HRKU-AA[A-Za-z0-9_-]{58}/,
  },
  {
    id: 'datadog_api_key',
    description: 'Datadog API or application key (32/40 hex) after a datadog/DD_API_KEY/DD-APPLICATION-KEY name',
    literals: ['datadog', 'dd_api', 'dd-api', 'dd_app', 'dd-app'],
    pattern:
      /(?:datadog[A-Za-z0-9_ .-]{0,30}?(?:api|app|application)[_-]?key|dd[_-](?:api|app|application)[_-]?key)["'\\]{0,4}(?:\s|\\{1,4}[nrt]){0,5}(?:=>|:=|[:=>])(?:\s|\\{1,4}[nrt]){0,5}["'\\]{0,4}[0-9a-f]{32}(?:[0-9a-f]{8})?(?![A-Za-z0-9_-])/i,
  },
  {
    id: 'vault_service_token',
    description: 'HashiCorp Vault service token (hvs.)',
    literals: ['hvs.'],
    pattern: /(?<![A-Za-z0-9_-])hvs\.[A-Za-z0-9_-]{24}/,
  },
  {
    id: 'vault_batch_token',
    description: 'HashiCorp Vault batch token (hvb.)',
    literals: ['hvb.'],
    pattern: /(?<![A-Za-z0-9_-])hvb\.[A-Za-z0-9_-]{24}/,
  },
  {
    id: 'doppler_token',
    description: 'Doppler personal, service (optionally dp.st.<config>.), service-account, CLI, SCIM or audit token',
    literals: ['dp.pt.', 'dp.st.', 'dp.sa.', 'dp.ct.', 'dp.scim.', 'dp.audit.'],
    pattern: /(?<![A-Za-z0-9_-])dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_-]{1,30}\.)?[A-Za-z0-9]{40}/,
  },
  {
    id: 'pulumi_access_token',
    description: 'Pulumi access token (pul-)',
    literals: ['pul-'],
    pattern: /(?<![A-Za-z0-9_-])pul-[a-f0-9]{40}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'databricks_token',
    description: 'Databricks personal access token (dapi and 32 hex)',
    literals: ['dapi'],
    pattern: /(?<![A-Za-z0-9_-])dapi[a-f0-9]{32}(?:-[0-9])?(?![A-Za-z0-9_-])/,
  },
  {
    id: 'supabase_pat',
    description: 'Supabase management API personal access token (sbp_)',
    literals: ['sbp_'],
    pattern: /(?<![A-Za-z0-9_-])sbp_[a-f0-9]{40}(?![A-Za-z0-9_-])/,
  },
  // ------------------------------------------------------------------ Developer SaaS
  {
    id: 'atlassian_api_token',
    description: 'Atlassian API token (ATATT3)',
    literals: ['ATATT3'],
    pattern: /(?<![A-Za-z0-9_-])ATATT3[A-Za-z0-9_=-]{150}/,
  },
  {
    id: 'bitbucket_app_password',
    description: 'Bitbucket app password (ATBB)',
    literals: ['ATBB'],
    pattern: /(?<![A-Za-z0-9_-])ATBB[A-Za-z0-9_=.-]{32}/,
  },
  {
    id: 'linear_api_key',
    description: 'Linear API key (lin_api_)',
    literals: ['lin_api_'],
    pattern: /(?<![A-Za-z0-9_-])lin_api_[A-Za-z0-9]{40}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'notion_token',
    description: 'Notion integration token (ntn_)',
    literals: ['ntn_'],
    pattern: /(?<![A-Za-z0-9_-])ntn_[0-9]{11}[A-Za-z0-9]{35}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'notion_token_legacy',
    description: 'Notion legacy integration token (secret_ and 43 alphanumerics)',
    literals: ['secret_'],
    pattern: /(?<![A-Za-z0-9_-])secret_[A-Za-z0-9]{43}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'postman_api_key',
    description: 'Postman API key (PMAK-)',
    literals: ['PMAK-'],
    pattern: /(?<![A-Za-z0-9_-])PMAK-[a-f0-9]{24}-[a-f0-9]{34}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'sentry_org_token',
    description: 'Sentry organization auth token (sntrys_)',
    literals: ['sntrys_eyJ'],
    pattern: /(?<![A-Za-z0-9_-])sntrys_eyJ[A-Za-z0-9+/=_-]{60}/,
  },
  {
    id: 'sentry_user_token',
    description: 'Sentry user auth token (sntryu_)',
    literals: ['sntryu_'],
    pattern: /(?<![A-Za-z0-9_-])sntryu_[a-f0-9]{64}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'grafana_cloud_token',
    description: 'Grafana Cloud access policy token (glc_)',
    literals: ['glc_'],
    pattern: /(?<![A-Za-z0-9_-])glc_[A-Za-z0-9+/]{32}/,
  },
  {
    id: 'grafana_service_account_token',
    description: 'Grafana service account token (glsa_)',
    literals: ['glsa_'],
    pattern: /(?<![A-Za-z0-9_-])glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'newrelic_user_api_key',
    description: 'New Relic user API key (NRAK-)',
    literals: ['NRAK-'],
    pattern: /(?<![A-Za-z0-9_-])NRAK-[A-Z0-9]{27}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'newrelic_insert_key',
    description: 'New Relic Insights insert key (NRII-)',
    literals: ['NRII-'],
    pattern: /(?<![A-Za-z0-9_-])NRII-[A-Za-z0-9_-]{32}/,
  },
  // ------------------------------------------------------------------ AI providers
  {
    id: 'groq_api_key',
    description: 'Groq API key (gsk_)',
    literals: ['gsk_'],
    pattern: /(?<![A-Za-z0-9_-])gsk_[A-Za-z0-9]{52}(?![A-Za-z0-9_-])/,
  },
  {
    id: 'xai_api_key',
    description: 'xAI API key (xai-)',
    literals: ['xai-'],
    pattern: /(?<![A-Za-z0-9_-])xai-[A-Za-z0-9]{80}(?![A-Za-z0-9_-])/,
  },
  // ------------------------------------------------------------------ Talon
  {
    id: 'talon_api_token',
    description: "Talon's own API token (talon_pat_ and 64 hex)",
    literals: ['talon_pat_'],
    pattern: /(?<![A-Za-z0-9_-])talon_pat_[0-9a-f]{64}(?![A-Za-z0-9_-])/,
  },
];
