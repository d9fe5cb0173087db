import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isMetadataHostName, normalizeHostName } from './metadata-names.ts';

describe('isMetadataHostName', () => {
  it('refuses the metadata services of GCP, AWS, Tencent and Equinix by name', () => {
    for (const host of [
      'metadata',
      'metadata.google.internal',
      'metadata.goog',
      'instance-data',
      'instance-data.ec2.internal',
      'instance-data.us-west-2.compute.internal',
      'ip-10-0-0-1.ec2.internal',
      'ip-10-0-0-1.eu-west-1.compute.internal',
      'metadata.tencentyun.com',
      'metadata.platformequinix.com',
      'metadata.packet.net',
    ])
      assert.equal(isMetadataHostName(host), true, host);
  });

  it('refuses anything under the reserved .internal TLD, and the TLD itself', () => {
    for (const host of ['internal', 'vault.internal', 'a.b.c.internal', 'x.corp.internal'])
      assert.equal(isMetadataHostName(host), true, host);
  });

  it('normalises case, trailing dots, fullwidth forms, ideographic dots and invisible characters', () => {
    for (const host of [
      'METADATA.GOOGLE.INTERNAL',
      'metadata.google.internal.',
      'Metadata.Google.Internal..',
      'metadata.',
      'ｍｅｔａｄａｔａ.google.internal',
      'metadata。google。internal',
      'meta\u200Bdata.goog',
      'Instance-Data',
    ])
      assert.equal(isMetadataHostName(host), true, host);
    assert.equal(normalizeHostName('ＭＥＴＡＤＡＴＡ.Goog.'), 'metadata.goog');
  });

  it('lets ordinary names through, including look-alikes that are public', () => {
    for (const host of [
      'api.openai.com',
      'metadata.example.com',
      'google.internal.example.com',
      'internal.example.com',
      'instance-data.example.org',
      'metadata.azure.com',
      'management.azure.com',
      'metadata-service.io',
      'my-metadata',
      '169.254.169.254', // an address: refused by the address classifier, not here
      '',
      '.',
    ])
      assert.equal(isMetadataHostName(host), false, host);
  });
});
