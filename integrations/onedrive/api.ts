// Microsoft Graph and identity-platform wire types used by the OneDrive integration (no logic).
// Reference: https://learn.microsoft.com/graph/api/resources/driveitem and the resources it links to.

/** `identitySet` of createdBy/lastModifiedBy/owner. */
export interface IdentitySet {
  user?: { id?: string; displayName?: string; email?: string };
  application?: { id?: string; displayName?: string };
}

/** `itemReference`: where an item lives. `path` is absent in delta responses. */
export interface ItemReference {
  driveId?: string;
  driveType?: DriveType;
  id?: string;
  /** `/drive/root:/a/b` (percent-decoded). */
  path?: string;
  name?: string;
}

/** `fileSystemInfo`: the client's times, which OneDrive keeps as given. */
export interface FileSystemInfo {
  createdDateTime?: string;
  lastModifiedDateTime?: string;
  lastAccessedDateTime?: string;
}

/** `hashes` of a file facet: quickXorHash (base64) everywhere; sha1Hash/sha256Hash (hex) on OneDrive personal. */
export interface Hashes {
  quickXorHash?: string;
  sha1Hash?: string;
  sha256Hash?: string;
  crc32Hash?: string;
}

/** The kinds of drive Graph reports. */
export type DriveType = 'personal' | 'business' | 'documentLibrary';

/** A `driveItem` (only the properties this integration reads or writes). */
export interface DriveItem {
  id: string;
  name?: string;
  size?: number;
  eTag?: string;
  cTag?: string;
  createdDateTime?: string;
  lastModifiedDateTime?: string;
  fileSystemInfo?: FileSystemInfo;
  parentReference?: ItemReference;
  file?: { mimeType?: string; hashes?: Hashes };
  folder?: { childCount?: number };
  /** Present on the drive's root item. */
  root?: Record<string, never>;
  /** OneNote notebooks (`type: oneNote`) and other packages. */
  package?: { type?: string };
  /** Set on items of a delta response that were deleted. */
  deleted?: { state?: string };
  /** An item shared from another drive and added to this one. */
  remoteItem?: { id?: string; parentReference?: ItemReference; name?: string };
  /** Items flagged as malware cannot be downloaded. */
  malware?: { description?: string };
  /** A short-lived pre-authenticated download URL (files only). */
  '@microsoft.graph.downloadUrl'?: string;
}

/** A page of a collection (`children`, `drives`). */
export interface CollectionPage<T> {
  value: T[];
  '@odata.nextLink'?: string;
}

/** A page of a delta query: `nextLink` until the last page, which has `deltaLink`. */
export interface DeltaPage extends CollectionPage<DriveItem> {
  '@odata.deltaLink'?: string;
}

/** A `drive`. */
export interface Drive {
  id: string;
  driveType?: DriveType;
  name?: string;
  webUrl?: string;
  owner?: IdentitySet;
  quota?: { total?: number; used?: number; remaining?: number; deleted?: number; state?: string };
}

/** A SharePoint `site`. */
export interface Site {
  id: string;
  displayName?: string;
  webUrl?: string;
}

/** An `uploadSession` (https://learn.microsoft.com/graph/api/resources/uploadsession). */
export interface UploadSession {
  uploadUrl?: string;
  expirationDateTime?: string;
  /** Missing ranges, zero-based, `start-end` or `start-`. */
  nextExpectedRanges?: string[];
}

/** `driveItemUploadableProperties` sent to createUploadSession. */
export interface UploadableProperties {
  '@microsoft.graph.conflictBehavior'?: ConflictBehavior;
  name?: string;
  fileSystemInfo?: FileSystemInfo;
}

/** What Graph does when the name is taken. */
export type ConflictBehavior = 'fail' | 'replace' | 'rename';

/** Graph's error body: `{error: {code, message, innerError}}`. */
export interface GraphErrorBody {
  error?: {
    code?: string;
    message?: string;
    innerError?: { code?: string; date?: string; 'request-id'?: string; 'client-request-id'?: string; innerError?: unknown };
  };
}

/** A token endpoint reply (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow). */
export interface TokenResponse {
  token_type?: string;
  scope?: string;
  expires_in?: number;
  access_token?: string;
  refresh_token?: string;
  id_token?: string;
}

/** A token endpoint error (`invalid_grant`, `authorization_pending`…). */
export interface TokenErrorResponse {
  error: string;
  error_description?: string;
  error_codes?: number[];
}

/** The device authorization reply (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code). */
export interface DeviceCodeResponse {
  device_code: string;
  user_code: string;
  verification_uri: string;
  expires_in: number;
  interval?: number;
  message?: string;
}
