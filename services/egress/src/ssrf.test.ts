// SSRF spellings and tricks: every one must be refused before egress connects.
// Each URL goes through the same steps as a request: WHATWG URL parsing, host
// normalisation, one DNS resolution (stubbed: the names below answer with the
// addresses an attacker would choose), and the address check.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeHost, defaultPort } from './policy.ts';
import { DestinationRefused, resolveDestination, type Lookup } from './resolve.ts';

const DNS: Record<string, string[]> = {
  '127.0.0.1.nip.io': ['127.0.0.1'],
  'metadata.google.internal': ['169.254.169.254'],
  'instance-data.ec2.internal': ['169.254.169.254'],
  'db.corp.internal': ['10.0.0.5'],
  'mixed.attacker.test': ['93.184.216.34', '192.168.1.1'],
  'v6only.attacker.test': ['::1'],
  'mapped.attacker.test': ['::ffff:10.0.0.1'],
  'ula.attacker.test': ['fd00::1'],
  'cgnat.attacker.test': ['100.100.100.100'],
  'zero.attacker.test': ['0.0.0.0'],
  'bcast.attacker.test': ['255.255.255.255'],
  'mcast.attacker.test': ['239.255.255.250'],
  'nat64.attacker.test': ['64:ff9b::a9fe:a9fe'],
  'sixtofour.attacker.test': ['2002:0a00:0001::1'],
  'teredo.attacker.test': ['2001:0:4136:e378:8000:63bf:3fff:fdd2'],
  'linklocal6.attacker.test': ['fe80::a9fe:a9fe'],
  'aws-imds-v6.attacker.test': ['fd00:ec2::254'],
  'benchmark.attacker.test': ['198.18.0.10'],
  'testnet.attacker.test': ['203.0.113.5'],
  'public.example': ['93.184.216.34'],
};

const lookup: Lookup = async (host) => {
  const ips = DNS[host];
  if (!ips) throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
  return ips.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

async function check(url: string): Promise<string> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'refused:invalid_url'; // the proxy answers 400 before any lookup
  }
  const host = normalizeHost(u.hostname);
  const port = u.port ? Number(u.port) : defaultPort(u.protocol);
  try {
    const a = await resolveDestination(host, port, { allowPrivate: [], lookup });
    return `allowed:${a.address}`;
  } catch (err) {
    assert.ok(err instanceof DestinationRefused, `${url}: unexpected ${(err as Error).message}`);
    return `refused:${err.reason}`;
  }
}

const REFUSED = [
  // loopback, every spelling
  'http://127.0.0.1/',
  'http://127.0.0.1.:80/',
  'http://127.1/',
  'http://127.0.1/',
  'http://2130706433/',
  'http://0x7f000001/',
  'http://0x7f.0x0.0x0.0x1/',
  'http://0x7f.1/',
  'http://0177.0.0.1/',
  'http://017700000001/',
  'http://0177.1/',
  'http://00000177.00000000.00000000.00000001/',
  'http://%31%32%37.0.0.1/',
  'http://１２７.０.０.１/',
  'http://127.000.000.001/',
  'http://127.255.255.254/',
  'http://localhost/',
  'http://LOCALHOST./',
  'http://api.localhost/',
  'http://example.com@127.0.0.1/',
  'http://127.0.0.1\\@example.com/',
  'http://[::1]/',
  'http://[0:0:0:0:0:0:0:1]/',
  'http://[0000::1]/',
  'http://[::ffff:127.0.0.1]/',
  'http://[::ffff:7f00:1]/',
  'http://[::127.0.0.1]/',
  'http://127.0.0.1.nip.io/',
  'http://v6only.attacker.test/',
  // cloud metadata
  'http://169.254.169.254/latest/meta-data/',
  'http://2852039166/',
  'http://0xa9fea9fe/',
  'http://0251.0376.0251.0376/',
  'http://169.254.43518/',
  'http://[::ffff:169.254.169.254]/',
  'http://[::ffff:a9fe:a9fe]/',
  'http://[64:ff9b::a9fe:a9fe]/',
  'http://[fd00:ec2::254]/',
  'http://metadata.google.internal/',
  'http://instance-data.ec2.internal/',
  'http://nat64.attacker.test/',
  'http://linklocal6.attacker.test/',
  'http://aws-imds-v6.attacker.test/',
  // private networks
  'http://10.0.0.1/',
  'http://10.1/',
  'http://167772161/',
  'http://172.16.0.1/',
  'http://172.31.255.255/',
  'http://192.168.0.1/',
  'http://3232235521/',
  'http://0xc0a80001/',
  'http://[fc00::1]/',
  'http://[fd12:3456:789a::1]/',
  'http://db.corp.internal/',
  'http://mixed.attacker.test/',
  'http://mapped.attacker.test/',
  'http://ula.attacker.test/',
  'http://[2002:0a00:0001::1]/',
  'http://sixtofour.attacker.test/',
  'http://[2002:c0a8:0101::]/',
  // link-local, CGNAT, unspecified, multicast, reserved
  'http://[fe80::1]/',
  'http://[fe80::1%25eth0]/',
  'http://100.64.0.1/',
  'http://cgnat.attacker.test/',
  'http://0.0.0.0/',
  'http://0/',
  'http://zero.attacker.test/',
  'http://[::]/',
  'http://224.0.0.1/',
  'http://239.255.255.250/',
  'http://mcast.attacker.test/',
  'http://[ff02::1]/',
  'http://255.255.255.255/',
  'http://bcast.attacker.test/',
  'http://240.0.0.1/',
  'http://198.18.0.1/',
  'http://benchmark.attacker.test/',
  'http://192.0.2.1/',
  'http://203.0.113.1/',
  'http://testnet.attacker.test/',
  'http://[2001:db8::1]/',
  'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/',
  'http://teredo.attacker.test/',
  'http://[100::1]/',
];

describe('SSRF: spellings and tricks that must be refused', () => {
  it(`has at least 60 cases (${REFUSED.length})`, () => assert.ok(REFUSED.length >= 60));
  for (const url of REFUSED) {
    it(url, async () => {
      const r = await check(url);
      assert.match(r, /^refused:/, `${url} -> ${r}`);
    });
  }

  it('allows a public destination and names the address to connect to', async () => {
    assert.equal(await check('https://public.example/'), 'allowed:93.184.216.34');
    assert.equal(await check('http://1.1.1.1/'), 'allowed:1.1.1.1');
  });

  it('the operator exemption is exact (host and port)', async () => {
    const allowPrivate = [{ host: '127.0.0.1', port: 11434 }];
    assert.equal((await resolveDestination('127.0.0.1', 11434, { allowPrivate, lookup })).address, '127.0.0.1');
    await assert.rejects(resolveDestination('127.0.0.1', 11435, { allowPrivate, lookup }), DestinationRefused);
    await assert.rejects(resolveDestination('localhost', 11434, { allowPrivate, lookup }), DestinationRefused);
  });

  it('unresolvable names are an upstream error, not a crash', async () => {
    assert.equal(await check('http://does-not-exist.invalid/'), 'refused:dns_failure');
  });
});
