// Drive v3 wire types and fixed tables (MIME types, export and import formats); no logic.
// Reference: https://developers.google.com/workspace/drive/api/reference/rest/v3/files and
// https://developers.google.com/workspace/drive/api/guides/ref-export-formats

/** The default Drive API root (the `api_url` option). */
export const DEFAULT_API_URL = 'https://www.googleapis.com/';
/** Google's OAuth 2.0 token endpoint (the `token_url` option). */
export const DEFAULT_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** Google's OAuth 2.0 authorization endpoint (the login command). */
export const DEFAULT_AUTH_URL = 'https://accounts.google.com/o/oauth2/v2/auth';
/** Full Drive access: needed to back up files the integration did not create. */
export const SCOPE_DRIVE = 'https://www.googleapis.com/auth/drive';
/** Read-only Drive access (backups only). */
export const SCOPE_DRIVE_READONLY = 'https://www.googleapis.com/auth/drive.readonly';

/** MIME types of Drive's own item kinds. */
export const FOLDER_MIME = 'application/vnd.google-apps.folder';
export const SHORTCUT_MIME = 'application/vnd.google-apps.shortcut';
export const GOOGLE_APPS_PREFIX = 'application/vnd.google-apps.';

/** Native Google document types that can be exported. */
export const NATIVE = {
  document: 'application/vnd.google-apps.document',
  spreadsheet: 'application/vnd.google-apps.spreadsheet',
  presentation: 'application/vnd.google-apps.presentation',
  drawing: 'application/vnd.google-apps.drawing',
  script: 'application/vnd.google-apps.script',
} as const;

/** One export format: the file extension, the MIME type Drive exports to, and the native types that offer it. */
export interface ExportFormat {
  ext: string;
  mime: string;
  from: readonly string[];
  /** The native type this format converts back to on restore (`import_as_native`), when Drive can import it. */
  importsAs?: string;
}

/** Export formats by extension (what `export_formats` accepts). */
export const EXPORT_FORMATS: Readonly<Record<string, ExportFormat>> = {
  docx: { ext: 'docx', mime: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', from: [NATIVE.document], importsAs: NATIVE.document },
  odt: { ext: 'odt', mime: 'application/vnd.oasis.opendocument.text', from: [NATIVE.document], importsAs: NATIVE.document },
  rtf: { ext: 'rtf', mime: 'application/rtf', from: [NATIVE.document], importsAs: NATIVE.document },
  txt: { ext: 'txt', mime: 'text/plain', from: [NATIVE.document, NATIVE.presentation] },
  md: { ext: 'md', mime: 'text/markdown', from: [NATIVE.document] },
  epub: { ext: 'epub', mime: 'application/epub+zip', from: [NATIVE.document] },
  xlsx: { ext: 'xlsx', mime: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', from: [NATIVE.spreadsheet], importsAs: NATIVE.spreadsheet },
  ods: { ext: 'ods', mime: 'application/x-vnd.oasis.opendocument.spreadsheet', from: [NATIVE.spreadsheet], importsAs: NATIVE.spreadsheet },
  csv: { ext: 'csv', mime: 'text/csv', from: [NATIVE.spreadsheet] },
  tsv: { ext: 'tsv', mime: 'text/tab-separated-values', from: [NATIVE.spreadsheet] },
  pptx: { ext: 'pptx', mime: 'application/vnd.openxmlformats-officedocument.presentationml.presentation', from: [NATIVE.presentation], importsAs: NATIVE.presentation },
  odp: { ext: 'odp', mime: 'application/vnd.oasis.opendocument.presentation', from: [NATIVE.presentation], importsAs: NATIVE.presentation },
  pdf: { ext: 'pdf', mime: 'application/pdf', from: [NATIVE.document, NATIVE.spreadsheet, NATIVE.presentation, NATIVE.drawing] },
  svg: { ext: 'svg', mime: 'image/svg+xml', from: [NATIVE.drawing] },
  png: { ext: 'png', mime: 'image/png', from: [NATIVE.drawing] },
  jpg: { ext: 'jpg', mime: 'image/jpeg', from: [NATIVE.drawing] },
  json: { ext: 'json', mime: 'application/vnd.google-apps.script+json', from: [NATIVE.script] },
};

/** Default `export_formats`: the Office formats (and SVG for drawings), as rclone does. */
export const DEFAULT_EXPORT_FORMATS = ['docx', 'xlsx', 'pptx', 'svg'] as const;

/** MIME types guessed from an extension when restoring a regular file. */
export const MIME_BY_EXTENSION: Readonly<Record<string, string>> = {
  txt: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  html: 'text/html',
  htm: 'text/html',
  json: 'application/json',
  xml: 'application/xml',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tar: 'application/x-tar',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  svg: 'image/svg+xml',
  webp: 'image/webp',
  heic: 'image/heic',
  mp3: 'audio/mpeg',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  doc: 'application/msword',
  xls: 'application/vnd.ms-excel',
  ppt: 'application/vnd.ms-powerpoint',
  ...Object.fromEntries(Object.values(EXPORT_FORMATS).filter((f) => !f.mime.startsWith(GOOGLE_APPS_PREFIX)).map((f) => [f.ext, f.mime])),
};

/** Extended attributes the importer attaches to exported Google documents (names travel to the exporter). */
export const XATTR_ID = 'user.gdrive.id';
export const XATTR_MIME = 'user.gdrive.mime';
/** Extended attribute of regular files: the MD5 Drive computed (hex), checked while the content streams. */
export const XATTR_MD5 = 'user.gdrive.md5';

/** The Drive `files` resource, restricted to the fields the integration reads. */
export interface DriveFile {
  id?: string | null;
  name?: string | null;
  mimeType?: string | null;
  parents?: string[] | null;
  /** int64 as a decimal string; absent for folders and native documents. */
  size?: string | null;
  md5Checksum?: string | null;
  modifiedTime?: string | null;
  createdTime?: string | null;
  trashed?: boolean | null;
  driveId?: string | null;
  sharedWithMeTime?: string | null;
  ownedByMe?: boolean | null;
  shortcutDetails?: { targetId?: string | null; targetMimeType?: string | null } | null;
}

/** Fields of one file requested in listings: only what paths, FileInfo and content need. */
export const FILE_FIELDS = 'id,name,mimeType,parents,size,md5Checksum,modifiedTime,createdTime,shortcutDetails(targetId,targetMimeType)';

/** A Google API error body: `{error:{code,message,errors:[{domain,reason,message}]}}`. */
export interface GoogleErrorBody {
  error?: {
    code?: number;
    message?: string;
    status?: string;
    errors?: Array<{ domain?: string; reason?: string; message?: string; location?: string }>;
  };
}

/** An OAuth 2.0 token endpoint answer. */
export interface TokenResponse {
  access_token?: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  token_type?: string;
  error?: string;
  error_description?: string;
}

/** A service account JSON key, as the Google Cloud console downloads it. */
export interface ServiceAccountKey {
  type?: string;
  client_email?: string;
  private_key?: string;
  private_key_id?: string;
  token_uri?: string;
}
