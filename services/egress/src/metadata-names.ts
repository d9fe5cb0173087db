// Cloud instance-metadata services by name. The address classifier (address.ts)
// already refuses their link-local addresses (169.254.169.254, fd00:ec2::254,
// 169.254.0.23, 100.100.100.200...) after resolution; refusing the names as well
// stops a request before any DNS lookup, also when an upstream proxy or a split
// resolver would answer for them, and names services that are reached by a
// public name rather than a link-local address (Equinix Metal). Pure: no DNS.
//
// Not listed: Azure, Oracle, Alibaba, Hetzner, DigitalOcean and OpenStack serve
// metadata only at a link-local address (no DNS alias their resolvers answer);
// `metadata.azure.com` in particular is not an IMDS name, so blocking it would
// only suggest a protection that the address check is what actually provides.

/** Exact names (after normalisation) of metadata services. */
const METADATA_NAMES: ReadonlySet<string> = new Set([
  // Google Cloud: the short name resolves through the VPC resolver's search path.
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  // AWS EC2 (the regional `instance-data.<region>.compute.internal` ends in .internal).
  'instance-data',
  'instance-data.ec2.internal',
  // Tencent Cloud (resolves to 169.254.0.23).
  'metadata.tencentyun.com',
  // Equinix Metal: public names that answer with the calling machine's own metadata.
  'metadata.platformequinix.com',
  'metadata.packet.net',
]);

/**
 * `internal` is reserved for private use (ICANN, 2024): cloud internal DNS (GCP
 * `*.internal`, AWS `*.compute.internal` / `ec2.internal`) lives under it, and
 * no public destination can.
 */
const RESERVED_TLD = 'internal';

/** Zero-width and other default-ignorable characters: invisible in a name, dropped by IDNA mapping. */
const DEFAULT_IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;

/**
 * The name as DNS compares it: IDNA-style mapping (NFKC, so fullwidth letters and
 * the ideographic full stop count; default-ignorables removed), lower case,
 * without the trailing root dot(s).
 */
export function normalizeHostName(host: string): string {
  return host
    .replace(DEFAULT_IGNORABLE, '')
    .normalize('NFKC')
    .replace(/[\u3002\uff0e\uff61]/g, '.')
    .toLowerCase()
    .replace(/\.+$/, '');
}

/** Whether `host` names a cloud metadata service or anything under the reserved `.internal` TLD. */
export function isMetadataHostName(host: string): boolean {
  const name = normalizeHostName(host);
  if (name === '') return false;
  if (METADATA_NAMES.has(name)) return true;
  const labels = name.split('.');
  return labels[labels.length - 1] === RESERVED_TLD;
}
