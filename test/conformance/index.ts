// The conformance suites every integration runs: storage, importer, exporter (our rclone fstests / unstorage testDriver).
export { assertNoSecrets, MEMORY_LIMIT, memoryPeak, openConnector, peakRss, type MemoryPeak, spawnMode, type ConformanceTarget, type OpenConnector } from './connect.ts';
export { bigStream, HOSTILE_NAMES, pseudoRandom, randomMac, sha256, standardTree, type TreeFile } from './data.ts';
export { entriesFor, runExporterConformance, type ExporterConformanceOptions } from './exporter.ts';
export { runImporterConformance, type ImporterConformanceOptions, type SeededSource } from './importer.ts';
export { runStorageConformance, type StorageConformanceOptions } from './storage.ts';
