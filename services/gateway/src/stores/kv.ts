// KV access without consumers: direct gets by key and key listing through stream
// info (the gateway's NATS user has no consumer rights on KV buckets). The one
// implementation is @talon/records' (liveEntry, openBucket, readAll).
export { openBucket, readAll, type Bucket } from '@talon/records';
