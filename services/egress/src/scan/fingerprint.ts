// The fingerprint format is shared with the vault, which computes it: one
// implementation, in the kit.
export * from '@talon/kit/fingerprint';
