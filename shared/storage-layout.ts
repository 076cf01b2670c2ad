// The repository object layout shared by every storage connector (identical to the official fs and s3 connectors).
import type { Resource } from './define.ts';

/** Name of the object holding the repository configuration written by Create. */
export const CONFIG_NAME = 'CONFIG';

/** Directory of each resource type; packfiles and states fan out by the MAC's first byte, locks are flat. */
export const RESOURCE_DIRS: Readonly<Record<Resource, { dir: string; fanout: boolean }>> = {
  packfile: { dir: 'packfiles', fanout: true },
  state: { dir: 'states', fanout: true },
  lock: { dir: 'locks', fanout: false },
  'ecc-packfile': { dir: 'ecc-packfiles', fanout: true },
  'ecc-state': { dir: 'ecc-states', fanout: true },
};

/** Relative object name of (resource, mac), e.g. `packfiles/ab/ab12…` (64 lowercase hex digits). */
export function objectName(resource: Resource, mac: Buffer): string {
  const hex = mac.toString('hex');
  const { dir, fanout } = RESOURCE_DIRS[resource];
  return fanout ? `${dir}/${hex.slice(0, 2)}/${hex}` : `${dir}/${hex}`;
}

/** The folder path of an object (`packfiles/ab` or `locks`). */
export function objectFolder(resource: Resource, mac: Buffer): string {
  const { dir, fanout } = RESOURCE_DIRS[resource];
  return fanout ? `${dir}/${mac.toString('hex').slice(0, 2)}` : dir;
}

/** Prefix under which every object of `resource` lives (`packfiles/`). */
export function resourcePrefix(resource: Resource): string {
  return `${RESOURCE_DIRS[resource].dir}/`;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The MAC of an object name relative to the repository root, or undefined for anything else (foreign files,
 * `.frozen` copies, `.partial` uploads, wrong fan-out folder, upper-case hex).
 */
export function macFromName(resource: Resource, name: string): Buffer | undefined {
  const { dir, fanout } = RESOURCE_DIRS[resource];
  const parts = name.split('/');
  if (parts[0] !== dir) return undefined;
  let hex: string | undefined;
  if (fanout) {
    if (parts.length !== 3 || parts[1]?.length !== 2) return undefined;
    hex = parts[2];
    if (!hex || hex.slice(0, 2) !== parts[1]) return undefined;
  } else {
    if (parts.length !== 2) return undefined;
    hex = parts[1];
  }
  return hex && HEX64.test(hex) ? Buffer.from(hex, 'hex') : undefined;
}

/** The MAC as 64 lowercase hex digits (for messages). */
export function macHex(mac: Buffer): string {
  return mac.toString('hex');
}
