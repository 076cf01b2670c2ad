// Unit tests of snapshot path helpers: cleaning, reversible segment encoding, and export containment.
import { mkdtemp, mkdir, symlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  baseName,
  cleanPath,
  containedLocalPath,
  decodeKeyPath,
  decodeSegment,
  dirName,
  encodeKeyPath,
  encodeSegment,
  joinPath,
  unsafePathReason,
} from '../../shared/paths.ts';

describe('sdk paths: cleaning', () => {
  it.each([
    ['/', '/'],
    ['', '/'],
    ['/a/b/', '/a/b'],
    ['//a//b', '/a/b'],
    ['/a/./b/../c', '/a/c'],
    ['/../..', '/'],
  ])('cleans %j to %j', (input, out) => expect(cleanPath(input)).toBe(out));

  it('joins, and takes base and dir names', () => {
    expect(joinPath('/', 'a', 'b')).toBe('/a/b');
    expect(joinPath('/x/', 'a')).toBe('/x/a');
    expect(baseName('/a/b.txt')).toBe('b.txt');
    expect(baseName('/')).toBe('/');
    expect(dirName('/a/b')).toBe('/a');
    expect(dirName('/a')).toBe('/');
  });
});

describe('sdk paths: segment encoding', () => {
  it.each([
    ['plain.txt', 'plain.txt'],
    ['', '%_'],
    ['.', '%2E'],
    ['..', '%2E%2E'],
    ['a/b', 'a%2Fb'],
    ['50%', '50%25'],
    ['tab\there', 'tab%09here'],
    ['nul\0', 'nul%00'],
    ['…日本語 ≠ ? " \' @ < > & +', '…日本語 ≠ ? " \' @ < > & +'],
    ['...', '...'],
  ])('encodes %j as %j and back', (name, encoded) => {
    expect(encodeSegment(name)).toBe(encoded);
    expect(decodeSegment(encoded)).toBe(name);
  });

  it('round-trips random names', () => {
    const alphabet = ['a', '/', '%', '.', '_', '\n', '\x7f', 'é', '日', ' ', '-', '2', 'E', 'F'];
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(Math.random() * 8);
      let name = '';
      for (let j = 0; j < len; j++) name += alphabet[Math.floor(Math.random() * alphabet.length)];
      const enc = encodeSegment(name);
      expect(enc).not.toContain('/');
      expect(enc).not.toBe('.');
      expect(enc).not.toBe('..');
      expect(enc).not.toBe('');
      expect(decodeSegment(enc)).toBe(name);
    }
  });

  it('encodes whole keys losslessly, including double and trailing slashes', () => {
    for (const key of ['a/b/c', 'a//b', 'dir/', '/lead', './x/../y', 'x']) {
      const path = encodeKeyPath(key);
      expect(cleanPath(path)).toBe(path);
      expect(decodeKeyPath(path)).toBe(key);
    }
  });
});

describe('sdk paths: export containment', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it.each([
    ['/a/../b', 'path is not clean (empty, "." or ".." segment)'],
    ['a/b', 'path is not absolute'],
    ['/a\0b', 'path contains a NUL character'],
    ['/a\nb', 'path contains a control character'],
    ['/a//b', 'path is not clean (empty, "." or ".." segment)'],
    ['', 'empty path'],
  ])('rejects %j', (path, reason) => expect(unsafePathReason(path)).toBe(reason));

  it('accepts clean paths, including the target itself', () => {
    expect(unsafePathReason('/')).toBeUndefined();
    expect(unsafePathReason('/a/b c/é')).toBeUndefined();
  });

  it('refuses a symlink on the way that leads outside the target', async () => {
    const root = await mkdtemp(join(tmpdir(), 'kts-contain-'));
    const outside = await mkdtemp(join(tmpdir(), 'kts-outside-'));
    dirs.push(root, outside);
    await mkdir(join(root, 'ok'));
    await symlink(outside, join(root, 'escape'));
    await symlink(join(root, 'ok'), join(root, 'inside'));
    await expect(containedLocalPath(root, '/escape/file')).rejects.toThrow('a symbolic link on the way leads outside the target');
    await expect(containedLocalPath(root, '/inside/file')).resolves.toBe(join(root, 'inside', 'file'));
    await expect(containedLocalPath(root, '/ok/new/file')).resolves.toBe(join(root, 'ok', 'new', 'file'));
    await expect(containedLocalPath(root, '/../etc/passwd')).rejects.toThrow('path is not clean');
  });
});
