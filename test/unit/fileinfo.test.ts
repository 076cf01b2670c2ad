// Unit tests of Go FileMode bits, FileInfo building and Timestamp conversions (bit 31, negative seconds, int64).
import { describe, expect, it } from 'vitest';
import Long from 'long';
import {
  dateFromTimestamp,
  fileInfo,
  GoMode,
  goModeFromUnix,
  int64ToNumber,
  isDirMode,
  isRegularMode,
  isSymlinkMode,
  timestampFromDate,
  unixPermFromGoMode,
} from '../../shared/protocol/fileinfo.ts';
import { protoType } from '../../shared/protocol/codec.ts';

describe('sdk fileinfo: Go FileMode', () => {
  it('maps Unix st_mode to Go bits as os.Stat does', () => {
    expect(goModeFromUnix(0o100644)).toBe(0o644);
    expect(goModeFromUnix(0o040755)).toBe(2147484141);
    expect(goModeFromUnix(0o120777)).toBe(134218239);
    expect(goModeFromUnix(0o020620)).toBe((GoMode.device | GoMode.charDevice | 0o620) >>> 0);
    expect(goModeFromUnix(0o060660)).toBe((GoMode.device | 0o660) >>> 0);
    expect(goModeFromUnix(0o010644)).toBe((GoMode.namedPipe | 0o644) >>> 0);
    expect(goModeFromUnix(0o140755)).toBe((GoMode.socket | 0o755) >>> 0);
    expect(goModeFromUnix(0o104755)).toBe((GoMode.setuid | 0o755) >>> 0);
    expect(goModeFromUnix(0o041777)).toBe((GoMode.dir | GoMode.sticky | 0o777) >>> 0);
  });

  it('classifies modes and converts back to Unix permissions', () => {
    expect(isDirMode(2147484141)).toBe(true);
    expect(isRegularMode(0o644)).toBe(true);
    expect(isRegularMode(2147484141)).toBe(false);
    expect(isSymlinkMode(134218239)).toBe(true);
    expect(unixPermFromGoMode((GoMode.setgid | GoMode.sticky | 0o750) >>> 0)).toBe(0o3750);
  });

  it('encodes bit 31 as an unsigned uint32 on the wire', () => {
    const FI = protoType('plakar.connectors.FileInfo');
    const info = fileInfo({ name: 'd', size: 0, mode: (GoMode.dir | 0o755) >>> 0, mtime: new Date(0) });
    const decoded = FI.decode(FI.encode(FI.fromObject(info)).finish()) as unknown as { mode: number; nlink: number };
    expect(decoded.mode).toBe(2147484141);
    expect(decoded.nlink).toBe(1);
  });
});

describe('sdk fileinfo: timestamps', () => {
  it('round-trips dates before and after 1970 with milliseconds', () => {
    for (const iso of ['1969-12-31T23:59:59.250Z', '2024-02-29T12:34:56.789Z', '1970-01-01T00:00:00.000Z']) {
      const d = new Date(iso);
      const ts = timestampFromDate(d);
      expect(ts.nanos).toBeGreaterThanOrEqual(0);
      expect(dateFromTimestamp(ts).toISOString()).toBe(iso);
    }
  });

  it("reads Go's zero time (year 1) and an absent timestamp", () => {
    expect(dateFromTimestamp({ seconds: Long.fromNumber(-62135596800), nanos: 0 }).toISOString()).toBe('0001-01-01T00:00:00.000Z');
    expect(dateFromTimestamp(undefined).getTime()).toBe(0);
  });

  it('converts every int64 shape protobufjs may produce', () => {
    expect(int64ToNumber(Long.fromString('9007199254740991'))).toBe(9007199254740991);
    expect(int64ToNumber(Long.fromNumber(-5))).toBe(-5);
    expect(int64ToNumber(Long.fromNumber(4294967296, true))).toBe(4294967296);
    expect(int64ToNumber('42')).toBe(42);
    expect(int64ToNumber(7n)).toBe(7);
    expect(int64ToNumber(null)).toBe(0);
  });
});
