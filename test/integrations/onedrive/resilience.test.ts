// onedrive under faults: throttling storms (429/503 + Retry-After, activityLimitReached), 5xx, dropped connections,
// access tokens expiring mid-run, refresh-token rotation kept in token_file, expired upload sessions, and no secret leaks.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../../shared/log.ts';
import { entriesFromTree, RESOURCE } from '../../harness/index.ts';
import { startFaultProxy } from '../../faults/proxy.ts';
import { TEST_CLIENT_ID, type GraphEmulator } from '../../servers/graph-emulator.ts';
import { captureStderr, emulator, initError, itemAt, pseudoRandom, served, tempDir } from './helpers.ts';

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

let emu: GraphEmulator;
let tmp: { dir: string; cleanup(): Promise<void> };
beforeAll(async () => {
  emu = await emulator({ pageSize: 5, deltaPageSize: 5 });
  tmp = await tempDir();
  for (let i = 0; i < 20; i++) await emu.store.writeFile(emu.me, `/Storm/f${i}.txt`, `file ${i}`);
  await emu.store.writeFile(emu.me, '/Storm/big.bin', pseudoRandom(1_500_000, 3));
});
afterEach(() => {
  emu.faults.clear();
});
afterAll(async () => {
  await emu?.close();
  await tmp?.cleanup();
});

describe('onedrive resilience: throttling and failures', () => {
  it('backs up through a throttling storm (429/503 with Retry-After, activityLimitReached), 5xx and dropped connections', async () => {
    const s = await served('importer', emu.config('onedrive:///Storm', { listing: 'children' }));
    try {
      const mark = emu.faults.log.length;
      // Every other Graph call is refused for a while, in three flavours, and downloads break or are throttled.
      const everyOther = (r: { kind: string; seq: number }): boolean => r.kind === 'graph' && r.seq % 2 === 0;
      emu.throttle(12, { retryAfter: 0, code: 'activityLimitReached', match: everyOther });
      emu.throttle(4, { status: 503, code: 'serviceNotAvailable', retryAfter: 0, match: everyOther });
      emu.fail(4, { status: 502, code: 'badGateway', match: everyOther });
      emu.drop(3, { match: (r) => r.kind === 'download' });
      emu.throttle(3, { retryAfter: 0, match: (r) => r.kind === 'download' });
      const out = await s.host.importAll({ content: 'sha256', maxConcurrency: 4 });
      expect(out.status.code).toBe(0);
      expect(out.itemErrors.map((e) => e.message)).toEqual([]);
      expect([...out.contents.keys()].filter((k) => !k.startsWith('xattr:'))).toHaveLength(21);
      expect(out.contents.get('/Storm/f7.txt')).toBe(sha256('file 7'));
      // The backup may finish before every queued refusal found an even-numbered Graph call to hit (how many calls a
      // run makes depends on token renewals racing the listing): what was queued and not served is what is pending.
      const refused = emu.faults.log.slice(mark).filter((r) => r.status === 429 || r.status === 503 || r.status === 502).length;
      expect(refused).toBeGreaterThanOrEqual(8);
      expect(refused + emu.faults.pending).toBeGreaterThanOrEqual(23);
    } finally {
      s.close();
    }
  });

  for (const listing of ['delta', 'children'] as const) {
    it(`retries a ${listing} listing page whose body is cut short (200, full Content-Length, half the JSON sent)`, async () => {
      // Only listing pages go through the proxy's cut: two of them lose the second half of their body.
      const page = (url: string): boolean => (listing === 'delta' ? /\/delta\b/ : /\/children\b/).test(url);
      const proxy = await startFaultProxy({
        layer: 'http',
        target: emu.url,
        fault: { kind: 'truncate', times: 2, minBytes: 200, match: (r) => r.method === 'GET' && page(r.url) },
      });
      const config = { ...emu.config('onedrive:///Storm', { listing }), endpoint: proxy.endpoint };
      const s = await served('importer', config);
      try {
        const out = await s.host.importAll({ content: 'sha256', maxConcurrency: 4 });
        expect(proxy.stats.truncated).toBe(2);
        expect(out.status.code).toBe(0);
        expect(out.itemErrors.map((e) => e.message)).toEqual([]);
        expect([...out.contents.keys()].filter((k) => !k.startsWith('xattr:'))).toHaveLength(21);
        expect(out.contents.get('/Storm/f13.txt')).toBe(sha256('file 13'));
        expect(out.contents.get('/Storm/big.bin')).toBe(sha256(pseudoRandom(1_500_000, 3)));
      } finally {
        s.close();
        await proxy.close();
      }
    });
  }

  it('waits as long as Retry-After says', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/wait'));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      emu.throttle(1, { retryAfter: 2, match: (r) => r.kind === 'graph' });
      const started = Date.now();
      await s.host.list(RESOURCE.LOCK);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    } finally {
      s.close();
    }
  });

  it('stores and reads a repository through storms, and says how many attempts were made when they run out', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/storm', { upload_cutoff: '100KiB', chunk_size: '320KiB', max_retries: '4' }));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const objects = Array.from({ length: 6 }, (_, i) => ({ mac: randomBytes(32), data: pseudoRandom(90_000 + i * 150_000, i + 50) }));
      emu.throttle(6, { retryAfter: 0, match: (r) => r.kind !== 'token' });
      emu.fail(3, { status: 500, match: (r) => r.kind === 'upload' });
      emu.drop(2, { afterBytes: 10_000, match: (r) => r.kind === 'upload' && r.method === 'PUT' });
      emu.drop(2, { afterBytes: 5_000, match: (r) => r.kind === 'download' });
      await Promise.all(objects.map((o) => s.host.put(RESOURCE.PACKFILE, o.mac, o.data)));
      const back = await Promise.all(objects.map((o) => s.host.get(RESOURCE.PACKFILE, o.mac)));
      back.forEach((b, i) => expect(sha256(b)).toBe(sha256((objects[i] as { data: Buffer }).data)));
      expect(emu.faults.pending).toBe(0);

      emu.fail(10, { status: 500, match: (r) => r.kind === 'graph' });
      await expect(s.host.list(RESOURCE.STATE)).rejects.toThrow(
        /^failed to list state: onedrive storage: cannot list states in onedrive:\/\/\/Repos\/storm \(drive [^)]+\): gave up after 4 attempts over \d+\.\ds: generalException: An unexpected error occurred \(HTTP 500\)$/,
      );
      emu.faults.clear();
    } finally {
      s.close();
    }
  });

  it('restarts an upload session that expired part-way (storage has the data) and finishes the Put', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/expire', { upload_cutoff: '100KiB', chunk_size: '320KiB' }));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const mac = randomBytes(32);
      const data = pseudoRandom(1_000_000, 8);
      let puts = 0;
      emu.delay(1, 1, (r) => {
        if (r.kind === 'upload' && r.method === 'PUT' && ++puts === 3) {
          emu.expireSessions();
          return true;
        }
        return false;
      });
      expect(await s.host.put(RESOURCE.PACKFILE, mac, data)).toBe(data.length);
      expect(sha256(await s.host.get(RESOURCE.PACKFILE, mac))).toBe(sha256(data));
      expect(emu.openSessions).toBe(0);
    } finally {
      s.close();
    }
  });
});

describe('onedrive resilience: tokens', () => {
  it('renews access tokens ahead of expiry for runs longer than a token lives, with the rotated refresh token (no 401 ever seen)', async () => {
    const short = await emulator({ identity: { accessTokenLifetimeS: 2 } });
    try {
      await short.store.writeFile(short.me, '/T/a.txt', 'a');
      const config = short.config('onedrive:///Repos/tokens');
      const s = await served('storage', config);
      try {
        await s.host.create(Buffer.from('_KLOSET_x'));
        // The configured refresh token was used once and rotated; revoked now, so later renewals must use the new one.
        short.identity.revokeRefreshTokens(config.refresh_token);
        for (let i = 0; i < 6; i++) {
          await s.host.put(RESOURCE.LOCK, randomBytes(32), Buffer.from(`lock ${i}`));
          await new Promise((r) => setTimeout(r, 500));
        }
        expect(short.identity.grants.refresh_token).toBeGreaterThanOrEqual(2);
        expect(short.count((r) => r.status === 401)).toBe(0);
        expect(await s.host.list(RESOURCE.LOCK)).toHaveLength(6);
      } finally {
        s.close();
      }
    } finally {
      await short.close();
    }
  });

  it('answers a 401 for a revoked access token with one renewal', async () => {
    const s = await served('storage', emu.config('onedrive:///Repos/revoked'));
    try {
      await s.host.create(Buffer.from('_KLOSET_x'));
      const mark = emu.faults.log.length;
      const grants = emu.identity.grants.refresh_token;
      emu.identity.expireAccessTokens();
      expect(await s.host.list(RESOURCE.LOCK)).toEqual([]);
      expect(emu.faults.log.slice(mark).filter((r) => r.status === 401)).toHaveLength(1);
      expect(emu.identity.grants.refresh_token).toBe(grants + 1);
    } finally {
      s.close();
    }
  });

  it('keeps the rotated refresh token in token_file (0600) and uses it on the next run; without token_file it says how, once', async () => {
    const file = join(tmp.dir, 'token.json');
    const config = emu.config('onedrive:///Storm', { token_file: file });
    const configured = config.refresh_token as string;
    const s = await served('importer', config);
    s.close();
    const saved = JSON.parse(await readFile(file, 'utf8')) as { refresh_token: string; client_id: string };
    expect(saved.client_id).toBe(TEST_CLIENT_ID);
    expect(saved.refresh_token).not.toBe(configured);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // The configured token is revoked: the saved one carries on.
    emu.identity.revokeRefreshTokens(configured);
    const again = await served('importer', config);
    again.close();
    expect(JSON.parse(await readFile(file, 'utf8')).refresh_token).not.toBe(saved.refresh_token);

    const err = captureStderr();
    let text: string;
    try {
      const plain = emu.config('onedrive:///Storm');
      const p = await served('storage', plain);
      await p.host.ping();
      p.close();
    } finally {
      text = err.stop();
    }
    const lines = text.split('\n').filter((l) => l.includes('issued a new refresh token'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('WARN onedrive/storage: the identity platform issued a new refresh token, used for the rest of this run;');
    expect(lines[0]).toContain('plakar store set <name> token_file=');
  });

  it('never lets a token or secret reach stderr or a status message, even at debug level and on failures', async () => {
    setLogLevel('debug');
    const err = captureStderr();
    const messages: string[] = [];
    const app = emu.identity.registerClient('app-with-secret', 'S3cr3t-Value-For-Tests');
    try {
      const s = await served('importer', emu.config('onedrive:///Storm'));
      emu.identity.expireAccessTokens();
      emu.drop(1, { afterBytes: 100, match: (r) => r.kind === 'download' });
      await s.host.importAll({ content: 'sha256' });
      s.close();
      const e = await served('exporter', emu.config('onedrive:///Leak'));
      await e.host.exportTree(entriesFromTree({ 'a.txt': 'a' }));
      e.close();
      for (const config of [
        emu.config('onedrive:///Storm', { refresh_token: 'rt-not-a-valid-token-value' }),
        { location: 'onedrive:///', endpoint: emu.url, client_id: app.id, client_secret: 'Wrong-Secret-Value', tenant: 'contoso.example', drive_id: emu.me.id },
        { location: 'onedrive:///', endpoint: emu.url, access_token: 'at-expired-token-value-123' },
        { location: 'onedrive:///', endpoint: emu.url, client_id: TEST_CLIENT_ID, refresh_token: 'short', unknown_key: 'x' },
      ]) {
        messages.push((await initError('storage', config)) ?? '');
      }
    } finally {
      setLogLevel('warn');
      messages.push(err.stop());
    }
    const all = messages.join('\n');
    expect(all).toContain('cannot renew the access token: invalid_grant');
    expect(all).toContain('invalid_client');
    expect(all).toContain('Graph refused the access_token');
    const secrets = [...emu.identity.issuedTokens(), 'rt-not-a-valid-token-value', 'S3cr3t-Value-For-Tests', 'Wrong-Secret-Value', 'at-expired-token-value-123'];
    for (const secret of secrets) expect(all.includes(secret), `leaked ${secret.slice(0, 8)}…`).toBe(false);
    expect(itemAt(emu, emu.me, '/Leak/a.txt')?.size).toBe(1);
  });
});
