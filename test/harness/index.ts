// Public API of the host harness: a TypeScript stand-in for the Plakar v1.1.4 host, spawning or in-process.
import { PluginHost, type HostSettings } from './host.ts';
import { spawnFromManifest, spawnPlugin, type ConnectorKind, type ExitInfo, type PluginProcess, type SpawnOptions } from './spawn.ts';
import { GrpcConnection, type ConnectionOptions } from './transport.ts';

export { ContractError, HostAbortError, HostError } from './errors.ts';
export {
  entriesFromDirectory,
  entriesFromTree,
  walkOrder,
  type ExportEntry,
  type ExportOptions,
  type ExportOutcome,
  type ExportResult,
  type TreeSpec,
} from './export.ts';
export { chmodBitsFromGo, formatGoMode, goModeFromStat, goModeProblem, isDir, isRegular, isSymlink, MODE } from './file-mode.ts';
export {
  defaultMaxConcurrency,
  HOST_CHUNK_SIZE,
  MAC_LENGTH,
  PluginHost,
  type ByteRange,
  type HostSettings,
  type InitOptions,
  type InitResult,
} from './host.ts';
export { ackHeader, type ImportOptions, type ImportOutcome, type ItemError } from './import.ts';
export { connectInProcess, type InProcessConnection } from './in-process.ts';
export {
  contentKey,
  decodeMessage,
  encodeMessage,
  makeFileInfo,
  makeRecord,
  RESOURCE,
  resourceName,
  type FileInfo,
  type ResourceType,
  type Timestamp,
  type WireRecord,
  type WireResult,
} from './messages.ts';
export {
  readManifest,
  spawnFromManifest,
  spawnPlugin,
  type ConnectorKind,
  type ExitInfo,
  type ManifestConnector,
  type PluginProcess,
  type SpawnOptions,
  type StdioMode,
} from './spawn.ts';
export {
  Call,
  decodeGrpcMessage,
  EofError,
  FrameParser,
  frameMessage,
  GrpcConnection,
  GrpcError,
  MAX_RECEIVE_MESSAGE,
  STATUS,
  type CallStatus,
  type ConnectionOptions,
} from './transport.ts';

/** What to spawn: an executable (with argv[1..]) or the `kind` connector of a manifest. */
export type LaunchTarget =
  | { executable: string; args?: string[] }
  | { manifest: string; kind: ConnectorKind; protocol?: string };

/** A spawned plugin with a host connected to it. */
export interface LaunchedPlugin {
  host: PluginHost;
  connection: GrpcConnection;
  process: PluginProcess;
  /** Ends the instance like Plakar exiting: drops the session and both pipes (EOF), waits for exit. */
  dispose(timeoutMs?: number): Promise<ExitInfo>;
}

/** Spawns a plugin like Plakar (two pipes by default) and connects a host to it; the first call must be `init`. */
export async function launchPlugin(
  target: LaunchTarget,
  options: Omit<SpawnOptions, 'args'> & ConnectionOptions & HostSettings = {},
): Promise<LaunchedPlugin> {
  const proc =
    'manifest' in target
      ? await spawnFromManifest(target.manifest, target.kind, { ...options, protocol: target.protocol })
      : await spawnPlugin(target.executable, { ...options, args: target.args });
  const connection = new GrpcConnection(proc.duplex, options);
  const host = new PluginHost(connection, options);
  return {
    host,
    connection,
    process: proc,
    dispose: async (timeoutMs?: number) => {
      connection.close();
      return proc.close(timeoutMs);
    },
  };
}
