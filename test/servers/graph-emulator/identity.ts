// The emulator's identity platform: registered apps, refresh/access tokens, client credentials and the device-code flow.
import { randomBytes } from 'node:crypto';

/** An app registration. */
export interface EmuClient {
  id: string;
  /** Confidential clients have a secret; client credentials need it. */
  secret?: string;
}

/** What an access token grants. */
export interface AccessGrant {
  clientId: string;
  /** The signed-in user's drive (delegated tokens); undefined for app-only tokens. */
  userDriveId: string | undefined;
  expiresAt: number;
}

interface RefreshGrant {
  clientId: string;
  userDriveId: string;
  issuedAt: number;
  revoked: boolean;
}

interface DeviceGrant {
  clientId: string;
  userCode: string;
  scope: string;
  expiresAt: number;
  state: 'pending' | 'approved' | 'declined';
  userDriveId?: string;
  polls: number;
}

/** An OAuth error reply: status and body. */
export interface OAuthReply {
  status: number;
  body: Record<string, unknown>;
}

function oauthError(status: number, error: string, description: string, code: number): OAuthReply {
  return {
    status,
    body: {
      error,
      error_description: `AADSTS${code}: ${description}\r\nTrace ID: ${randomBytes(8).toString('hex')}\r\nTimestamp: ${new Date().toISOString()}`,
      error_codes: [code],
      timestamp: new Date().toISOString(),
    },
  };
}

/** Settings of the identity platform. */
export interface IdentitySettings {
  /** Lifetime of access tokens in seconds (Microsoft: 60–90 minutes). */
  accessTokenLifetimeS: number;
  /** Issue a new refresh token on every refresh (Microsoft does). */
  rotateRefreshTokens: boolean;
  /** Polling interval announced for device codes, seconds. */
  deviceInterval: number;
  /** Refresh tokens older than this are refused (Microsoft: 90 days). */
  refreshTokenLifetimeS: number;
}

/** Tokens and apps of the emulated tenant. */
export class Identity {
  readonly clients = new Map<string, EmuClient>();
  private readonly access = new Map<string, AccessGrant>();
  private readonly refresh = new Map<string, RefreshGrant>();
  private readonly devices = new Map<string, DeviceGrant>();
  readonly settings: IdentitySettings;
  /** Token endpoint calls by grant type. */
  readonly grants = { refresh_token: 0, client_credentials: 0, device_code: 0 };

  constructor(settings: Partial<IdentitySettings> = {}) {
    this.settings = {
      accessTokenLifetimeS: 3600,
      rotateRefreshTokens: true,
      deviceInterval: 1,
      refreshTokenLifetimeS: 90 * 86400,
      ...settings,
    };
  }

  /** Registers an app. */
  registerClient(id: string, secret?: string): EmuClient {
    const c = { id, secret };
    this.clients.set(id, c);
    return c;
  }

  /** Issues a refresh token for a user (what `onedrive login` would obtain). */
  issueRefreshToken(clientId: string, userDriveId: string, issuedAt = Date.now()): string {
    const token = `rt-${randomBytes(24).toString('base64url')}`;
    this.refresh.set(token, { clientId, userDriveId, issuedAt, revoked: false });
    return token;
  }

  /** Issues an access token directly (for `access_token` configurations). */
  issueAccessToken(clientId: string, userDriveId: string | undefined, lifetimeS = this.settings.accessTokenLifetimeS): string {
    const token = `at-${randomBytes(24).toString('base64url')}`;
    this.access.set(token, { clientId, userDriveId, expiresAt: Date.now() + lifetimeS * 1000 });
    return token;
  }

  /** Every token value issued so far (access and refresh), for leak checks. */
  issuedTokens(): string[] {
    return [...this.access.keys(), ...this.refresh.keys()];
  }

  /** Every access token expires now. */
  expireAccessTokens(): void {
    for (const g of this.access.values()) g.expiresAt = 0;
  }

  /** Revokes a refresh token (or all of them). */
  revokeRefreshTokens(token?: string): void {
    for (const [t, g] of this.refresh) if (!token || t === token) g.revoked = true;
  }

  /** The grant of a Bearer token, or why it is refused. */
  check(token: string | undefined): { grant: AccessGrant } | { error: string } {
    if (!token) return { error: 'Access token is empty.' };
    const g = this.access.get(token);
    if (!g) return { error: 'Invalid token.' };
    if (Date.now() >= g.expiresAt) return { error: 'Access token has expired or is not yet valid.' };
    return { grant: g };
  }

  /** Approves a pending device code as the owner of `userDriveId` (what the person does in the browser). */
  approveDevice(userCode: string, userDriveId: string): boolean {
    for (const d of this.devices.values()) {
      if (d.userCode === userCode && d.state === 'pending') {
        d.state = 'approved';
        d.userDriveId = userDriveId;
        return true;
      }
    }
    return false;
  }

  /** Declines a pending device code. */
  declineDevice(userCode: string): void {
    for (const d of this.devices.values()) if (d.userCode === userCode) d.state = 'declined';
  }

  /** The user codes waiting for approval. */
  pendingUserCodes(): string[] {
    return [...this.devices.values()].filter((d) => d.state === 'pending').map((d) => d.userCode);
  }

  /** POST /{tenant}/oauth2/v2.0/devicecode */
  deviceCode(tenant: string, form: URLSearchParams): OAuthReply {
    const clientId = form.get('client_id') ?? '';
    if (!this.clients.has(clientId)) {
      return oauthError(400, 'unauthorized_client', `Application with identifier '${clientId}' was not found in the directory '${tenant}'.`, 700016);
    }
    const deviceCode = `dc-${randomBytes(24).toString('base64url')}`;
    const userCode = randomBytes(5).toString('hex').slice(0, 9).toUpperCase();
    this.devices.set(deviceCode, {
      clientId,
      userCode,
      scope: form.get('scope') ?? '',
      expiresAt: Date.now() + 900_000,
      state: 'pending',
      polls: 0,
    });
    return {
      status: 200,
      body: {
        device_code: deviceCode,
        user_code: userCode,
        verification_uri: 'https://microsoft.com/devicelogin',
        expires_in: 900,
        interval: this.settings.deviceInterval,
        message: `To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ${userCode} to authenticate.`,
      },
    };
  }

  /** POST /{tenant}/oauth2/v2.0/token */
  token(tenant: string, form: URLSearchParams, graphResource: string): OAuthReply {
    const grantType = form.get('grant_type') ?? '';
    const clientId = form.get('client_id') ?? '';
    const client = this.clients.get(clientId);
    if (!client) {
      return oauthError(400, 'unauthorized_client', `Application with identifier '${clientId}' was not found in the directory '${tenant}'.`, 700016);
    }
    const secret = form.get('client_secret');
    if (secret !== null && client.secret !== undefined && secret !== client.secret) {
      return oauthError(401, 'invalid_client', 'Invalid client secret provided.', 7000215);
    }
    switch (grantType) {
      case 'refresh_token': {
        this.grants.refresh_token++;
        const rt = form.get('refresh_token') ?? '';
        const g = this.refresh.get(rt);
        if (!g || g.revoked || g.clientId !== clientId) {
          return oauthError(400, 'invalid_grant', 'Provided grant is invalid or malformed.', 9002313);
        }
        if (Date.now() - g.issuedAt > this.settings.refreshTokenLifetimeS * 1000) {
          return oauthError(400, 'invalid_grant', 'The refresh token has expired due to inactivity.', 700082);
        }
        const next = this.settings.rotateRefreshTokens ? this.issueRefreshToken(clientId, g.userDriveId) : rt;
        return this.tokens(clientId, g.userDriveId, form.get('scope') ?? '', next);
      }
      case 'client_credentials': {
        this.grants.client_credentials++;
        if (['common', 'organizations', 'consumers'].includes(tenant)) {
          return oauthError(400, 'invalid_request', `Use of the ${tenant} endpoint is not supported for this application.`, 9002331);
        }
        if (!client.secret || secret === null) return oauthError(401, 'invalid_client', 'The request body must contain client_secret.', 7000218);
        const scope = form.get('scope') ?? '';
        if (scope !== `${graphResource}/.default`) return oauthError(400, 'invalid_scope', `The provided scope ${scope} is not valid.`, 1002012);
        return this.tokens(clientId, undefined, scope, undefined);
      }
      case 'urn:ietf:params:oauth:grant-type:device_code': {
        this.grants.device_code++;
        const d = this.devices.get(form.get('device_code') ?? '');
        if (!d || d.clientId !== clientId) return oauthError(400, 'invalid_grant', 'Provided grant is invalid or malformed.', 9002313);
        d.polls++;
        if (Date.now() > d.expiresAt) return oauthError(400, 'expired_token', 'The code has expired.', 70020);
        if (d.state === 'declined') return oauthError(400, 'authorization_declined', 'The user declined the sign-in.', 70019);
        if (d.state === 'pending') return oauthError(400, 'authorization_pending', 'The authorization is pending.', 70016);
        this.devices.delete(form.get('device_code') ?? '');
        const rt = this.issueRefreshToken(clientId, d.userDriveId as string);
        return this.tokens(clientId, d.userDriveId, d.scope, rt);
      }
      default:
        return oauthError(400, 'unsupported_grant_type', `The grant type ${grantType} is not supported.`, 70003);
    }
  }

  private tokens(clientId: string, userDriveId: string | undefined, scope: string, refreshToken: string | undefined): OAuthReply {
    const accessToken = this.issueAccessToken(clientId, userDriveId);
    const body: Record<string, unknown> = {
      token_type: 'Bearer',
      scope,
      expires_in: this.settings.accessTokenLifetimeS,
      ext_expires_in: this.settings.accessTokenLifetimeS,
      access_token: accessToken,
    };
    if (refreshToken) body.refresh_token = refreshToken;
    return { status: 200, body };
  }
}
