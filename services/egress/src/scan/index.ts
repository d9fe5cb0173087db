// Public surface of the egress leak scanner (pure, synchronous, no I/O).
//
// How egress uses it:
//   const scanner = new LeakScanner({ maxScanBytes });            // >= EGRESS_MAX_REQUEST_BYTES
//   scanner.setFingerprints(scanIndex.secrets);                    // vault ScanIndex, again when its epoch moves
//   const findings = scanner.scanRequest({ url, headers, body }); // before placeholders are replaced
//   if (findings.length > 0) refuse and audit the findings (ids, locations, decode chains; never text).
//   const redactor = new ResponseRedactor(scanner.exactMatcher);   // one per response body
//   for each chunk: write(redactor.push(chunk)); at the end: write(redactor.end()).
//   scanHost(scanner, host)                 // a destination name as sent, before any DNS lookup
//   redactText(scanner, text, { location }) // text to keep but clean (a pasted credential): scans clean after
// isMetadataHostName (../metadata-names.ts) refuses cloud metadata services by name.
// The redactor sees bytes as they arrive: ask upstream for an identity encoding
// (or decompress first), or compressed secrets pass through unrecognised.
export {
  LeakScanner,
  InvalidScannerOptions,
  SCAN_LIMIT_EXCEEDED,
  CONTENT_DECODING_FAILED,
  CONTENT_ENCODING_UNSUPPORTED,
  INCOMPLETE_SCAN_IDS,
  type LeakScannerOptions,
  type ScanFinding,
  type ScanLocation,
  type ScanRequestInput,
} from './scanner.ts';
export { ResponseRedactor, RedactorEnded, RedactionOverflow, type ResponseRedactorOptions } from './redactor.ts';
export { redactText, findingLabel, type RedactOptions, type RedactResult } from './redact.ts';
export { scanHost, HOST_FIELD } from './host.ts';
export { ExactMatcher, InvalidFingerprint, type ExactMatch, type FormRef } from './exact.ts';
export {
  fingerprintSecret,
  MIN_SECRET_BYTES,
  FINGERPRINT_PREFIX_BYTES,
  FORM_ENCODINGS,
  REVERSED_MIN_BYTES,
  type FormEncoding,
  type FormFingerprint,
  type SecretFingerprint,
  type SecretFingerprintOut,
} from './fingerprint.ts';
export { BUILTIN_RULES, InvalidLeakRule, type LeakRule } from './rules.ts';
