// QuickXorHash against a bit-by-bit transcription of Microsoft's description and hand-derived vectors.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { QuickXorHash, quickXorHash } from '../../../integrations/onedrive/quickxorhash.ts';

/** The algorithm as described: toggle bit (11·k + b) mod 160 for every set bit b of byte k, then XOR the length in. */
function reference(data: Uint8Array): string {
  const bits = new Uint8Array(160);
  for (let k = 0; k < data.length; k++) {
    const offset = (11 * k) % 160;
    for (let b = 0; b < 8; b++) {
      const at = (offset + b) % 160;
      if (((data[k] as number) >> b) & 1) bits[at] = (bits[at] as number) ^ 1;
    }
  }
  const out = Buffer.alloc(20);
  for (let p = 0; p < 160; p++) if (bits[p]) out[p >> 3] = (out[p >> 3] as number) | (1 << (p & 7));
  let len = BigInt(data.length);
  for (let i = 0; i < 8; i++) {
    out[12 + i] = (out[12 + i] as number) ^ Number(len & 0xffn);
    len >>= 8n;
  }
  return out.toString('base64');
}

describe('onedrive quickxorhash', () => {
  it('matches vectors derived by hand from the description', () => {
    // Empty: 20 zero bytes (the length 0 changes nothing).
    expect(quickXorHash(new Uint8Array(0))).toBe(Buffer.alloc(20).toString('base64'));
    // One byte 0x4A at bit 0; length 1 XORed into byte 12.
    const one = Buffer.alloc(20);
    one[0] = 0x4a;
    one[12] = 1;
    expect(quickXorHash(Buffer.from([0x4a]))).toBe(one.toString('base64'));
    // 0xB5 at bit 0; 0xB4 at bit 11 spans byte 1 (0xB4<<3 = 0xA0) and byte 2 (0xB4>>5 = 0x05); length 2.
    const two = Buffer.alloc(20);
    two[0] = 0xb5;
    two[1] = 0xa0;
    two[2] = 0x05;
    two[12] = 2;
    expect(quickXorHash(Buffer.from([0xb5, 0xb4]))).toBe(two.toString('base64'));
    // Byte 15 lands at bit 165 mod 160 = 5... byte 14 at bit 154 wraps: 6 bits at the end, 2 at the start.
    const data = Buffer.alloc(15);
    data[14] = 0xff;
    const wrap = Buffer.alloc(20);
    wrap[19] = 0xfc; // bits 154..159
    wrap[0] = 0x03; // bits 0..1
    wrap[12] = 15;
    expect(quickXorHash(data)).toBe(wrap.toString('base64'));
  });

  it('agrees with the bit-by-bit reference for every length up to 700 and across block boundaries', () => {
    const data = randomBytes(700);
    for (let n = 0; n <= 700; n++) expect(quickXorHash(data.subarray(0, n)), `length ${n}`).toBe(reference(data.subarray(0, n)));
  });

  it('gives the same digest whatever the update sizes and buffer alignment', () => {
    const data = randomBytes(100_003);
    const want = reference(data);
    for (const step of [1, 3, 7, 160, 161, 4096, 65_536, 100_003]) {
      const h = new QuickXorHash();
      for (let off = 0; off < data.length; off += step) h.update(data.subarray(off, off + step));
      expect(h.digestBase64(), `step ${step}`).toBe(want);
      expect(h.bytes).toBe(data.length);
    }
    // Unaligned views of a larger buffer take the byte path; aligned ones the 32-bit path.
    const big = Buffer.concat([Buffer.alloc(1), data]);
    expect(new QuickXorHash().update(big.subarray(1)).digestBase64()).toBe(want);
  });
});
