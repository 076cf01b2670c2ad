// QuickXorHash, the content hash of OneDrive for Business and SharePoint (also reported by OneDrive personal).
//
// Microsoft's published algorithm (https://learn.microsoft.com/onedrive/developer/code-snippets/quickxorhash):
// a 160-bit register; byte k of the stream is XORed into it at bit offset (11·k) mod 160, wrapping around the end;
// the final 20 bytes (little-endian bit order) have the stream length, as a little-endian 64-bit integer, XORed into
// their last 8 bytes. The value is exchanged in base64.
//
// Because the offset of byte k depends only on k mod 160, the register is linear in 160 byte accumulators: we XOR each
// byte into `acc[k mod 160]` (4 bytes at a time when aligned) and place the accumulators into the register once, at
// the end. That makes hashing as fast as copying.

const WIDTH_BYTES = 160;
const SHIFT = 11;
/** Scratch size for unaligned input: a multiple of 160 bytes. */
const SCRATCH_BYTES = 160 * 1024;

/** An incremental QuickXorHash. */
export class QuickXorHash {
  private readonly acc = new Uint8Array(WIDTH_BYTES);
  private readonly acc32 = new Uint32Array(this.acc.buffer);
  private length = 0;
  private scratch: Uint8Array | undefined;

  /** Adds bytes to the hash; returns `this`. */
  update(data: Uint8Array): this {
    const acc = this.acc;
    const n = data.length;
    let pos = this.length % WIDTH_BYTES;
    let i = 0;
    while (pos !== 0 && i < n) {
      acc[pos] = (acc[pos] as number) ^ (data[i] as number);
      i++;
      pos = pos + 1 === WIDTH_BYTES ? 0 : pos + 1;
    }
    const blocks = Math.floor((n - i) / WIDTH_BYTES);
    if (blocks > 0) {
      const off = data.byteOffset + i;
      const left = blocks * WIDTH_BYTES;
      if (off % 4 === 0) {
        // XOR 32 bits at a time: byte-wise XOR does not depend on endianness.
        this.xorWords(new Uint32Array(data.buffer, off, left / 4));
      } else {
        // Unaligned input (network buffers often are): copy through an aligned scratch buffer, still cheaper than bytes.
        const scratch = (this.scratch ??= new Uint8Array(SCRATCH_BYTES));
        const src = new Uint8Array(data.buffer, off, left);
        for (let at = 0; at < left; at += SCRATCH_BYTES) {
          const piece = Math.min(SCRATCH_BYTES, left - at);
          scratch.set(src.subarray(at, at + piece));
          this.xorWords(new Uint32Array(scratch.buffer, 0, piece / 4));
        }
      }
      i += blocks * WIDTH_BYTES;
    }
    for (; i < n; i++) {
      acc[pos] = (acc[pos] as number) ^ (data[i] as number);
      pos++;
    }
    this.length += n;
    return this;
  }

  /** XORs whole 160-byte blocks, given as 32-bit words, into the accumulators. */
  private xorWords(words: Uint32Array): void {
    const acc32 = this.acc32;
    for (let w = 0; w < words.length; w += 40) {
      for (let j = 0; j < 40; j++) acc32[j] = (acc32[j] as number) ^ (words[w + j] as number);
    }
  }

  /** Number of bytes hashed so far. */
  get bytes(): number {
    return this.length;
  }

  /** The 20-byte digest (the hash can still be updated afterwards). */
  digest(): Buffer {
    const out = Buffer.alloc(20);
    for (let i = 0; i < WIDTH_BYTES; i++) {
      const b = this.acc[i] as number;
      if (b === 0) continue;
      const bit = (i * SHIFT) % (WIDTH_BYTES);
      const at = bit >> 3;
      const shift = bit & 7;
      out[at] = (out[at] as number) ^ ((b << shift) & 0xff);
      if (shift !== 0) {
        const next = (at + 1) % 20;
        out[next] = (out[next] as number) ^ (b >> (8 - shift));
      }
    }
    let len = BigInt(this.length);
    for (let k = 0; k < 8; k++) {
      out[12 + k] = (out[12 + k] as number) ^ Number(len & 0xffn);
      len >>= 8n;
    }
    return out;
  }

  /** The digest in base64, as Graph reports `quickXorHash`. */
  digestBase64(): string {
    return this.digest().toString('base64');
  }
}

/** QuickXorHash of one buffer, in base64. */
export function quickXorHash(data: Uint8Array): string {
  return new QuickXorHash().update(data).digestBase64();
}
