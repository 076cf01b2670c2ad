// imap storage against Dovecot: create/open, every resource type, split blobs, ranged partial reads, overwrite, delete, official layout.
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESOURCE } from '../../harness/index.ts';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { accountConfig, client, connector } from './helpers.ts';
import { startProxy } from './proxy.ts';

let d: Dovecot;

beforeAll(async () => {
  d = await startDovecot();
});
afterAll(async () => {
  await d?.stop();
});

const mac = (n: number): Buffer => createHash('sha256').update(`mac-${n}`).digest();

describe('imap storage: a repository in mailboxes', () => {
  it('creates, refuses a second create, opens, and stores every resource type', async () => {
    const config = accountConfig(d, 'alice', { root: 'Repo1', cache: 'false' });
    const c = await connector('storage', config);
    try {
      const cfg = Buffer.concat([Buffer.from('_KLOSET_'), randomBytes(300)]);
      await c.host.create(cfg);
      await expect(c.host.create(cfg)).rejects.toThrow(/a repository already exists/);
      expect((await c.host.open()).equals(cfg)).toBe(true);
      expect(await c.host.mode()).toBe(6);
      for (const [i, type] of [RESOURCE.PACKFILE, RESOURCE.STATE, RESOURCE.LOCK, RESOURCE.ECC_PACKFILE, RESOURCE.ECC_STATE].entries()) {
        const data = randomBytes(1000 + i * 777);
        expect(await c.host.put(type, mac(i), data)).toBe(data.length);
        const listed = await c.host.list(type);
        expect(listed.map((m) => m.toString('hex'))).toEqual([mac(i).toString('hex')]);
        expect((await c.host.get(type, mac(i))).equals(data)).toBe(true);
      }
    } finally {
      c.close();
    }
    // The layout is the official one: <root>/<leaf> mailboxes, X-Plakar-Mac header, base64 body.
    const im = await client(d, 'alice');
    try {
      const names = (await im.list()).map((b) => b.path).filter((p) => p.startsWith('Repo1')).sort();
      expect(names).toEqual(['Repo1', 'Repo1/config', 'Repo1/eccpackfile', 'Repo1/eccstate', 'Repo1/lock', 'Repo1/packfile', 'Repo1/state']);
      await im.mailboxOpen('Repo1/packfile', { readOnly: true });
      const m = await im.fetchOne('1:*', { source: true });
      const text = (m && m.source?.toString('latin1')) || '';
      expect(text.startsWith(`X-Plakar-Mac: ${mac(0).toString('hex')}\r\n`)).toBe(true);
      expect(text).toContain('Content-Transfer-Encoding: base64\r\n');
    } finally {
      await im.logout();
    }
  });

  it('opens an empty account with a clear "no repository" error', async () => {
    const c = await connector('storage', accountConfig(d, 'bob', { root: 'Nothing' }));
    try {
      await expect(c.host.open()).rejects.toThrow(/no repository at bob@127\.0\.0\.1:\d+ \(mailbox "Nothing"\)/);
    } finally {
      c.close();
    }
  });

  it('splits blobs over max_message_size and serves ranges by partial FETCH', async () => {
    const c = await connector('storage', accountConfig(d, 'alice', { root: 'Repo2', max_message_size: '64KiB', cache: 'false' }));
    try {
      await c.host.create(Buffer.from('_KLOSET_cfg'));
      const data = randomBytes(300_000);
      expect(await c.host.put(RESOURCE.PACKFILE, mac(100), data)).toBe(data.length);
      expect((await c.host.get(RESOURCE.PACKFILE, mac(100))).equals(data)).toBe(true);
      for (const [offset, length] of [[0, 1], [16, 700], [46_000, 2000], [123_456, 90_000], [299_990, 10], [0, 300_000]] as const) {
        const got = await c.host.get(RESOURCE.PACKFILE, mac(100), { offset, length });
        expect(got.equals(data.subarray(offset, Math.min(data.length, offset + length))), `range ${offset}+${length}`).toBe(true);
      }
      // A blob of exactly one part, and an empty one.
      const one = randomBytes(40_000);
      await c.host.put(RESOURCE.PACKFILE, mac(101), one);
      expect((await c.host.get(RESOURCE.PACKFILE, mac(101), { offset: 39_990, length: 10 })).equals(one.subarray(39_990))).toBe(true);
      await c.host.put(RESOURCE.STATE, mac(102), Buffer.alloc(0));
      expect((await c.host.get(RESOURCE.STATE, mac(102))).length).toBe(0);
      const listed = (await c.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex')).sort();
      expect(listed).toEqual([mac(100), mac(101)].map((m) => m.toString('hex')).sort());
    } finally {
      c.close();
    }
    const im = await client(d, 'alice');
    try {
      const mb = await im.mailboxOpen('Repo2/packfile', { readOnly: true });
      expect(mb.exists).toBe(8); // 300 000 bytes in parts of 47 139, plus the one-part blob
    } finally {
      await im.logout();
    }
  });

  it('reads only the parts a ranged Get needs, and only the window of each part (partial FETCH)', async () => {
    const proxy = await startProxy(d.port);
    const config = accountConfig(d, 'alice', { location: `imap://127.0.0.1:${proxy.port}`, root: 'Repo5', max_message_size: '64KiB', cache: 'false' });
    const c = await connector('storage', config);
    try {
      await c.host.create(Buffer.from('_KLOSET_cfg'));
      // Seven parts of 47,139 bytes (about 62 KiB of base64 each): the whole blob is some 410 KB on the wire.
      const data = randomBytes(300_000);
      await c.host.put(RESOURCE.PACKFILE, mac(50), data);
      expect((await c.host.get(RESOURCE.PACKFILE, mac(50), { offset: 0, length: 1 })).equals(data.subarray(0, 1))).toBe(true);
      const cases: Array<[number, number, number]> = [
        [123_456, 10, 1_000], // inside one part: a few base64 groups
        [47_000, 300, 2_000], // across the first part boundary: a window of each of two parts
        [200_000, 20_000, 30_000], // 20 kB in part 4 only
      ];
      for (const [offset, length, budget] of cases) {
        const before = proxy.bytes.down;
        const got = await c.host.get(RESOURCE.PACKFILE, mac(50), { offset, length });
        expect(got.equals(data.subarray(offset, offset + length)), `range ${offset}+${length}`).toBe(true);
        const wire = proxy.bytes.down - before;
        expect(wire, `bytes received for ${offset}+${length}`).toBeLessThan(budget);
      }
      const before = proxy.bytes.down;
      expect((await c.host.get(RESOURCE.PACKFILE, mac(50))).equals(data)).toBe(true);
      expect(proxy.bytes.down - before).toBeGreaterThan(400_000);
    } finally {
      c.close();
      await proxy.close();
    }
  });

  it('overwrites a blob in place (locks are rewritten) and deletes every message of a blob', async () => {
    const c = await connector('storage', accountConfig(d, 'alice', { root: 'Repo3', max_message_size: '64KiB', cache: 'false' }));
    try {
      await c.host.create(Buffer.from('_KLOSET_cfg'));
      await c.host.put(RESOURCE.LOCK, mac(1), Buffer.from('first'));
      await c.host.put(RESOURCE.LOCK, mac(1), Buffer.from('second'));
      expect((await c.host.get(RESOURCE.LOCK, mac(1))).toString()).toBe('second');
      const big = randomBytes(150_000);
      await c.host.put(RESOURCE.PACKFILE, mac(2), randomBytes(120_000));
      await c.host.put(RESOURCE.PACKFILE, mac(2), big);
      expect((await c.host.get(RESOURCE.PACKFILE, mac(2))).equals(big)).toBe(true);
      await c.host.delete(RESOURCE.PACKFILE, mac(2));
      await c.host.delete(RESOURCE.LOCK, mac(1));
      expect(await c.host.list(RESOURCE.PACKFILE)).toEqual([]);
      expect(await c.host.list(RESOURCE.LOCK)).toEqual([]);
      await expect(c.host.get(RESOURCE.PACKFILE, mac(2))).rejects.toThrow(/not found/);
      await expect(c.host.delete(RESOURCE.PACKFILE, mac(2))).rejects.toThrow(/not found/);
    } finally {
      c.close();
    }
    const im = await client(d, 'alice');
    try {
      expect((await im.mailboxOpen('Repo3/packfile', { readOnly: true })).exists).toBe(0);
      expect((await im.mailboxOpen('Repo3/lock', { readOnly: true })).exists).toBe(0);
    } finally {
      await im.logout();
    }
  });

  it('sees blobs written by another instance, and reads repositories written in the official format', async () => {
    const config = accountConfig(d, 'bob', { root: 'Shared', cache: 'false' });
    const a = await connector('storage', config);
    const b = await connector('storage', config);
    try {
      await a.host.create(Buffer.from('_KLOSET_shared'));
      expect((await b.host.open()).toString()).toBe('_KLOSET_shared');
      expect(await b.host.list(RESOURCE.STATE)).toEqual([]);
      await a.host.put(RESOURCE.STATE, mac(7), Buffer.from('state-7'));
      expect((await b.host.get(RESOURCE.STATE, mac(7))).toString()).toBe('state-7');
      await b.host.delete(RESOURCE.STATE, mac(7));
      expect(await a.host.list(RESOURCE.STATE)).toEqual([]);
    } finally {
      a.close();
      b.close();
    }
    // A blob appended exactly as the official Go connector writes it (no size header, trailing CRLF).
    const blob = randomBytes(5000);
    const b64 = blob.toString('base64').replace(/.{76}/g, '$&\r\n');
    const official = `X-Plakar-Mac: ${mac(8).toString('hex')}\r\nContent-Transfer-Encoding: base64\r\nContent-Type: application/octet-stream\r\n\r\n${b64}\r\n`;
    const im = await client(d, 'bob');
    await im.append('Shared/packfile', official);
    await im.logout();
    const c = await connector('storage', config);
    try {
      expect((await c.host.list(RESOURCE.PACKFILE)).map((m) => m.toString('hex'))).toEqual([mac(8).toString('hex')]);
      expect((await c.host.get(RESOURCE.PACKFILE, mac(8))).equals(blob)).toBe(true);
      expect((await c.host.get(RESOURCE.PACKFILE, mac(8), { offset: 4000, length: 1000 })).equals(blob.subarray(4000))).toBe(true);
    } finally {
      c.close();
    }
  });

  it('serves ranged Gets through the SDK read-ahead cache when it is on', async () => {
    const c = await connector('storage', accountConfig(d, 'alice', { root: 'Repo4', max_message_size: '128KiB' }));
    try {
      await c.host.create(Buffer.from('_KLOSET_cfg'));
      const data = randomBytes(400_000);
      await c.host.put(RESOURCE.PACKFILE, mac(40), data);
      for (let off = 0; off < data.length; off += 37_000) {
        const got = await c.host.get(RESOURCE.PACKFILE, mac(40), { offset: off, length: 720 });
        expect(got.equals(data.subarray(off, off + 720))).toBe(true);
      }
    } finally {
      c.close();
    }
  });
});
