// The scan-index fingerprint format is defined once, in the kit, and shared with
// egress's matcher (services may not import each other).
export { fingerprintSecret, MIN_SECRET_BYTES, type SecretFingerprint, type SecretFingerprintOut } from '@talon/kit/fingerprint';
