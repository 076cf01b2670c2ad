// The Kloset SDK: the only module integrations import.
export * from './define.ts';
export * from './errors.ts';
export { opt, type OptionList, type OptionSpec, type OptionValues } from './options/builders.ts';
export { maxRetriesOption, concurrencyOption, readAheadOptions } from './options/common.ts';
export { ReadAheadCache, type ReadAheadStats } from './cache/read-ahead.ts';
export { parseSize, parseDuration, formatSize, formatDuration } from './options/units.ts';
export { Logger, log, type LogLevel } from './log.ts';
export { redactor } from './redact.ts';
export { Pacer, RetriesExhaustedError, type PacerOptions } from './retry/pacer.ts';
export {
  type Classification,
  type Classifier,
  classifyHttpStatus,
  defaultClassifier,
  isTransientNetworkError,
  parseRetryAfter,
} from './retry/classify.ts';
export {
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
} from './paths.ts';
export { GoMode, goModeFromUnix, isDirMode, isRegularMode, isSymlinkMode, unixPermFromGoMode } from './protocol/fileinfo.ts';
export { CONFIG_NAME, RESOURCE_DIRS, macFromName, macHex, objectFolder, objectName, resourcePrefix } from './storage-layout.ts';
export { MAX_CHUNK, rechunk, toReadable } from './content.ts';
export { default as createLimiter } from 'p-limit';
