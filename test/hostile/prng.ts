// A small seeded PRNG (mulberry32) so every hostile-input case can be replayed from its seed.

/** A deterministic random source. */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** One element of a non-empty list. */
  pick<T>(list: readonly T[]): T;
  /** True with probability p. */
  chance(p: number): boolean;
}

/** A mulberry32 generator seeded with `seed`. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(list: readonly T[]): T => {
      if (list.length === 0) throw new Error('pick from an empty list');
      return list[int(list.length)] as T;
    },
    chance: (p: number) => next() < p,
  };
}

/** The seed of a run: `KLOSET_TS_FUZZ_SEED` when set (to replay a failure), else a fixed default. */
export function fuzzSeed(fallback: number): number {
  const env = process.env.KLOSET_TS_FUZZ_SEED;
  return env && /^\d+$/.test(env) ? Number(env) : fallback;
}
