// Unit tests of the repository object layout shared by every storage connector.
import { describe, expect, it } from 'vitest';
import { macFromName, objectFolder, objectName, resourcePrefix } from '../../shared/storage-layout.ts';

const mac = Buffer.from('ab'.repeat(2) + '0123456789abcdef'.repeat(3) + 'ffffffffffffffff'.slice(0, 12), 'hex');

describe('sdk storage layout', () => {
  it('names objects like the official fs and s3 connectors', () => {
    const hex = mac.toString('hex');
    expect(hex).toHaveLength(64);
    expect(objectName('packfile', mac)).toBe(`packfiles/ab/${hex}`);
    expect(objectName('state', mac)).toBe(`states/ab/${hex}`);
    expect(objectName('lock', mac)).toBe(`locks/${hex}`);
    expect(objectName('ecc-packfile', mac)).toBe(`ecc-packfiles/ab/${hex}`);
    expect(objectName('ecc-state', mac)).toBe(`ecc-states/ab/${hex}`);
    expect(objectFolder('packfile', mac)).toBe('packfiles/ab');
    expect(resourcePrefix('lock')).toBe('locks/');
  });

  it('parses names back and skips foreign ones', () => {
    for (const r of ['packfile', 'state', 'lock', 'ecc-packfile', 'ecc-state'] as const) {
      expect(macFromName(r, objectName(r, mac))?.equals(mac)).toBe(true);
    }
    const hex = mac.toString('hex');
    expect(macFromName('packfile', `packfiles/cd/${hex}`)).toBeUndefined();
    expect(macFromName('packfile', `packfiles/ab/${hex}.frozen`)).toBeUndefined();
    expect(macFromName('packfile', `packfiles/ab/${hex.toUpperCase()}`)).toBeUndefined();
    expect(macFromName('packfile', `packfiles/ab/${hex}.partial`)).toBeUndefined();
    expect(macFromName('lock', `locks/ab/${hex}`)).toBeUndefined();
    expect(macFromName('state', `packfiles/ab/${hex}`)).toBeUndefined();
    expect(macFromName('packfile', 'packfiles/README')).toBeUndefined();
  });
});
