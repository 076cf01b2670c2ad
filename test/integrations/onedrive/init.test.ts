// onedrive Init: every configuration and sign-in problem gives one line that names the key or the cause.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_CLIENT_ID, type EmuDrive, type GraphEmulator } from '../../servers/graph-emulator.ts';
import { emulator, initError, served } from './helpers.ts';

let emu: GraphEmulator;
let work: EmuDrive;
beforeAll(async () => {
  emu = await emulator();
  await emu.store.writeFile(emu.me, '/Docs/file.txt', 'x');
  work = emu.createDrive({ driveType: 'business', owner: 'Work' });
});
afterAll(async () => {
  await emu?.close();
});

describe('onedrive init: configuration errors name the key', () => {
  it('asks for credentials when there are none', async () => {
    expect(await initError('importer', { location: 'onedrive:///', endpoint: emu.url })).toBe(
      'onedrive importer: option refresh_token: no credentials: give client_id and refresh_token (run `onedrive login`), or client_id, client_secret, tenant and drive_id for app-only access, or an access_token',
    );
  });

  it('lists every problem of an app-only configuration at once', async () => {
    expect(await initError('storage', { location: 'onedrive:///', endpoint: emu.url, client_secret: 'secret-value' })).toBe(
      'onedrive storage: option client_id: is required with client_secret; option tenant: app-only sign-in needs your tenant ID or domain, not "common"; option drive_id: app-only sign-in has no signed-in user: set drive_id or site',
    );
    expect(await initError('storage', { location: 'onedrive:///', endpoint: emu.url, refresh_token: 'rt-value-x' })).toBe(
      'onedrive storage: option client_id: is required with refresh_token or token_file (the app the token was issued to)',
    );
  });

  it('checks values: chunk size, enums, unknown keys, location', async () => {
    const base = emu.config('onedrive:///');
    expect(await initError('exporter', { ...base, chunk_size: '1MB', on_conflict: 'merge' })).toBe(
      'onedrive exporter: option chunk_size: expected a multiple of 320KiB, got "1MB"; option on_conflict: expected one of overwrite, skip, rename, got "merge"',
    );
    expect(await initError('importer', { ...base, include_onenotes: 'true' })).toMatch(
      /^onedrive importer: option include_onenotes: unknown option \(did you mean include_onenote\?\); known options: client_id, /,
    );
    expect(await initError('importer', { ...base, location: 'sharepoint://x' })).toBe(
      'onedrive importer: option location: expected onedrive://[/path/in/the/drive], got "sharepoint://x"',
    );
    // A key of another connector kind (a store entry reused as a source) is accepted.
    expect(await initError('importer', { ...base, memory_buffer: '8MiB' })).toBeUndefined();
  });

  it('reports a refused refresh token with the way out', async () => {
    expect(await initError('importer', { ...emu.config('onedrive:///'), refresh_token: 'rt-revoked-or-wrong' })).toBe(
      'onedrive importer: cannot renew the access token: invalid_grant: AADSTS9002313: Provided grant is invalid or malformed. (HTTP 400) (hint: run `onedrive login` again and store the new refresh_token, or set token_file)',
    );
    expect(await initError('importer', { ...emu.config('onedrive:///'), client_id: 'not-registered' })).toMatch(
      /^onedrive importer: cannot renew the access token: unauthorized_client: AADSTS700016: Application with identifier 'not-registered' was not found in the directory 'common'\. \(HTTP 400\) \(hint: /,
    );
  });

  it('reports an expired access token and a wrong client secret', async () => {
    const token = emu.identity.issueAccessToken(TEST_CLIENT_ID, emu.me.id, -1);
    expect(await initError('importer', { location: 'onedrive:///', endpoint: emu.url, access_token: token })).toBe(
      'onedrive importer: Graph refused the access_token (InvalidAuthenticationToken); access tokens last about an hour and cannot be renewed (hint: use client_id and refresh_token from `onedrive login`)',
    );
    emu.identity.registerClient('daemon-app', 'right-secret');
    expect(
      await initError('storage', { location: 'onedrive:///', endpoint: emu.url, client_id: 'daemon-app', client_secret: 'wrong-secret', tenant: 'contoso.onmicrosoft.com', drive_id: work.id }),
    ).toBe(
      'onedrive storage: cannot sign in as the application: invalid_client: AADSTS7000215: Invalid client secret provided. (HTTP 401) (hint: check client_id, client_secret and tenant)',
    );
  });

  it('reports drives, sites and folders that are not there, and drives of the wrong kind', async () => {
    const base = emu.config('onedrive:///');
    expect(await initError('importer', { ...base, drive_id: 'b!nope' })).toBe('onedrive importer: option drive_id: no drive b!nope is reachable with these credentials');
    expect(await initError('importer', { ...base, site: 'https://contoso.sharepoint.com/sites/Nope' })).toBe(
      'onedrive importer: option site: no SharePoint site at https://contoso.sharepoint.com/sites/Nope',
    );
    expect(await initError('importer', { ...base, drive_type: 'business' })).toBe(`onedrive importer: option drive_type: expected a business drive, but drive ${emu.me.id} is personal`);
    expect(await initError('importer', { ...base, location: 'onedrive:///Nope' })).toBe(`onedrive importer: cannot back up /Nope: no such folder in drive ${emu.me.id}`);
    expect(await initError('importer', { ...base, location: 'onedrive:///Docs/file.txt' })).toBe(
      'onedrive importer: option location: /Docs/file.txt is a file; give the folder that holds it',
    );
  });
});

describe('onedrive init: the ways to pick a drive and sign in', () => {
  it('opens a SharePoint library by site URL, and by site ID', async () => {
    const { site, drive } = emu.addSite('contoso.sharepoint.com', '/sites/Team');
    await emu.store.writeFile(drive, '/Shared Documents/report.docx', 'docx');
    for (const ref of ['https://contoso.sharepoint.com/sites/Team', site.id]) {
      const s = await served('importer', emu.config('onedrive:///Shared Documents', { site: ref, drive_type: 'documentLibrary' }));
      try {
        expect(s.host.initResult?.origin).toBe(drive.id);
        const out = await s.host.importAll({ content: 'sha256' });
        expect(out.records.filter((r) => !r.isXattr).map((r) => r.pathname).sort()).toEqual(['/Shared Documents', '/Shared Documents/report.docx']);
      } finally {
        s.close();
      }
    }
  });

  it('signs in as an application (client credentials) on an explicit drive, without /me', async () => {
    emu.identity.registerClient('backup-daemon', 'daemon-secret');
    await emu.store.writeFile(work, '/Archive/a.txt', 'a');
    const s = await served('importer', {
      location: 'onedrive:///Archive',
      endpoint: emu.url,
      client_id: 'backup-daemon',
      client_secret: 'daemon-secret',
      tenant: 'contoso.onmicrosoft.com',
      drive_id: work.id,
    });
    try {
      const out = await s.host.importAll({ content: 'sha256' });
      expect(out.records.filter((r) => !r.isXattr).map((r) => r.pathname).sort()).toEqual(['/Archive', '/Archive/a.txt']);
      expect(emu.identity.grants.client_credentials).toBeGreaterThanOrEqual(1);
    } finally {
      s.close();
    }
  });

  it('uses a given access token as is', async () => {
    const token = emu.identity.issueAccessToken(TEST_CLIENT_ID, emu.me.id);
    const s = await served('storage', { location: 'onedrive:///Repos/static', endpoint: emu.url, access_token: token });
    try {
      await s.host.create(Buffer.from('_KLOSET_static'));
      expect((await s.host.open()).toString()).toBe('_KLOSET_static');
    } finally {
      s.close();
    }
  });
});
