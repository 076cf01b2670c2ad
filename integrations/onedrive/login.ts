// `onedrive login`: the device-code sign-in, run by a person at a terminal; prints the plakar commands to configure.
// Instructions go to stderr; the configuration lines (which hold the refresh token) go to stdout, the terminal,
// and nowhere else: nothing is logged.
import { writeSync } from 'node:fs';
import { Pacer, type IntegrationCommand, type Logger, log } from '../../shared/index.ts';
import { endpointsOf, GraphClient } from './client.ts';
import { OAuthTokens, pollDeviceCode, requestDeviceCode, writeTokenFile } from './oauth.ts';
import { DEFAULT_SCOPES, REGIONS, type CommonValues } from './options.ts';

const USAGE = `usage: onedrive login --client-id ID [--tenant common|organizations|consumers|TENANT] [--name NAME]
                      [--path /Backups/plakar] [--token-file PATH] [--scopes "Files.ReadWrite.All offline_access"]
                      [--region global|us|dod|cn]

Signs in with a code you enter at https://microsoft.com/devicelogin (any browser, any device), then prints the
plakar commands that add this OneDrive as a backup source, a restore destination and a repository store.
--client-id is the Application (client) ID of your app registration (see docs/onedrive.md).
With --token-file the refresh token is written to that file (mode 0600) and the commands name the file instead;
without it the commands contain the token: keep them private.`;

interface LoginArgs {
  clientId?: string;
  tenant: string;
  name: string;
  path: string;
  tokenFile?: string;
  scopes: string[];
  region: keyof typeof REGIONS;
  endpoint?: string;
}

function parseArgs(args: string[]): LoginArgs | string {
  const out: LoginArgs = { tenant: 'common', name: 'onedrive', path: '/plakar', scopes: [...DEFAULT_SCOPES], region: 'global' };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--client-id':
        out.clientId = value();
        break;
      case '--tenant':
        out.tenant = value();
        break;
      case '--name':
        out.name = value();
        break;
      case '--path':
        out.path = `/${value().replace(/^\/+/, '')}`;
        break;
      case '--token-file':
        out.tokenFile = value();
        break;
      case '--scopes':
        out.scopes = value().split(/[\s,]+/).filter(Boolean);
        break;
      case '--region': {
        const r = value();
        if (!(r in REGIONS)) return `unknown region ${JSON.stringify(r)} (global, us, dod, cn)`;
        out.region = r as keyof typeof REGIONS;
        break;
      }
      case '--endpoint':
        out.endpoint = value();
        break;
      case '--help':
      case '-h':
        return '';
      default:
        return `unknown argument ${JSON.stringify(a)}`;
    }
  }
  if (!out.clientId) return '--client-id is required';
  return out;
}

/** Single-quotes a value for a POSIX shell. */
export function shellQuote(v: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

function say(text: string): void {
  process.stderr.write(`${text}\n`);
}

function print(text: string): void {
  // fd 1 directly: the entry points process.stdout at stderr so that no library can corrupt the gRPC channel.
  writeSync(1, `${text}\n`);
}

/** The `login` command. */
export const login: IntegrationCommand = {
  help: 'sign in with a code in any browser and print the plakar source/destination/store lines',
  async run(args: string[]): Promise<number> {
    const parsed = parseArgs(args);
    if (typeof parsed === 'string') {
      if (parsed) say(`onedrive login: ${parsed}\n`);
      say(USAGE);
      return parsed ? 2 : 0;
    }
    const a = parsed;
    const quiet: Logger = log;
    const endpoints = endpointsOf({ region: a.region, endpoint: a.endpoint });
    const signal = new AbortController().signal;
    const pacer = new Pacer({ maxAttempts: 5, log: quiet, signal });
    const timeout = 60_000;
    const device = await requestDeviceCode(endpoints, a.tenant, a.clientId as string, a.scopes, pacer, timeout, signal);
    say(device.message ?? `To sign in, open ${device.verification_uri} in a browser and enter the code ${device.user_code}.`);
    say('Waiting for the sign-in to finish…');
    const tokens = await pollDeviceCode(endpoints, a.tenant, a.clientId as string, device, timeout, signal);
    if (!tokens.access_token || !tokens.refresh_token) {
      say('onedrive login: the identity platform gave no refresh token; add the offline_access permission to the app and --scopes');
      return 1;
    }
    const values: CommonValues = {
      location: 'onedrive://',
      accessToken: tokens.access_token,
      tenant: a.tenant,
      scopes: a.scopes,
      region: a.region,
      endpoint: a.endpoint,
      timeout,
      maxRetries: 5,
    };
    const source = new OAuthTokens({ mode: 'static', values, endpoints, pacer, log: quiet, signal, addSecret: () => undefined, kind: 'importer' });
    const g = new GraphClient({ tokens: source, endpoints, pacer, timeoutMs: timeout, signal, log: quiet });
    const drive = await g.useDrive({});
    const owner = drive.owner?.user?.displayName ?? drive.owner?.user?.email ?? 'the signed-in user';
    say(`Signed in: ${owner}'s ${drive.driveType ?? ''} drive ${drive.id}.`);

    const creds: string[] = [`client_id=${shellQuote(a.clientId as string)}`];
    if (a.tenant !== 'common') creds.push(`tenant=${shellQuote(a.tenant)}`);
    if (a.region !== 'global') creds.push(`region=${a.region}`);
    if (a.endpoint) creds.push(`endpoint=${shellQuote(a.endpoint)}`);
    if (a.tokenFile) {
      await writeTokenFile(a.tokenFile, { client_id: a.clientId, refresh_token: tokens.refresh_token });
      say(`The refresh token is in ${a.tokenFile} (mode 0600); the connectors keep it current there.`);
      creds.push(`token_file=${shellQuote(a.tokenFile)}`);
    } else {
      say('The lines below contain your refresh token: keep them private. Adding token_file=PATH keeps it renewed.');
      creds.push(`refresh_token=${shellQuote(tokens.refresh_token)}`);
    }
    const c = creds.join(' ');
    const n = shellQuote(a.name);
    print(`plakar source add ${n} onedrive:/// ${c}`);
    print(`plakar destination add ${n} onedrive:///Restored ${c}`);
    print(`plakar store add ${n} ${shellQuote(`onedrive://${a.path}`)} ${c}`);
    say(`Then: plakar at @${a.name} create, plakar at @${a.name} backup @${a.name}, plakar at @${a.name} restore -to @${a.name} <snapshot>`);
    return 0;
  },
};
