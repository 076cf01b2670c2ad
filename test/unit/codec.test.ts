// Unit tests of the wire codec: exact package/method paths, field numbers, the empty-chunk oneof and the fast chunk encoder.
import { describe, expect, it } from 'vitest';
import { encodeChunkMessage, protoType, serviceDefinition } from '../../shared/protocol/codec.ts';

describe('sdk codec: wire compatibility', () => {
  it('uses the exact method paths of integration-grpc v1.1.0', () => {
    expect(Object.values(serviceDefinition('importer.Importer')).map((m) => m.path)).toEqual([
      '/importer.Importer/Init',
      '/importer.Importer/Ping',
      '/importer.Importer/Import',
      '/importer.Importer/Open',
      '/importer.Importer/Close',
    ]);
    expect(serviceDefinition('plakar.exporter.Exporter').Export?.path).toBe('/plakar.exporter.Exporter/Export');
    const store = serviceDefinition('store.Store');
    expect(store.Put?.requestStream).toBe(true);
    expect(store.Get?.responseStream).toBe(true);
    expect(store.Import).toBeUndefined();
  });

  it('encodes storage InitResponse.flags as field 5 and importer flags as field 4', () => {
    const s = Buffer.from(protoType('store.InitResponse').encode({ flags: 2 }).finish());
    expect(s).toEqual(Buffer.from([0x28, 0x02]));
    const i = Buffer.from(protoType('importer.InitResponse').encode({ flags: 4 }).finish());
    expect(i).toEqual(Buffer.from([0x20, 0x04]));
  });

  it('tells the empty chunk terminator (12 00) from an empty message', () => {
    const ER = protoType('plakar.exporter.ExportRequest');
    expect((ER.decode(Buffer.from([0x12, 0x00])) as unknown as { packet?: string }).packet).toBe('chunk');
    expect((ER.decode(Buffer.alloc(0)) as unknown as { packet?: string }).packet).toBeUndefined();
  });

  it('decodes an absent optional range as null and a present one with its fields', () => {
    const GR = protoType('store.GetRequest');
    const none = GR.decode(GR.encode(GR.fromObject({ mac: Buffer.alloc(32), type: 1 })).finish()) as unknown as { range: unknown };
    expect(none.range ?? null).toBeNull();
    const some = GR.decode(GR.encode(GR.fromObject({ mac: Buffer.alloc(32), type: 1, range: { offset: 0, length: 0 } })).finish()) as unknown as {
      range: { length: number };
    };
    expect(some.range).not.toBeNull();
    expect(some.range.length).toBe(0);
  });

  it('encodes chunk messages exactly as protobufjs does', () => {
    const OR = protoType('importer.OpenResponse');
    for (const n of [1, 127, 128, 16383, 16384, 1048576, 2097151, 2097152, 4194304]) {
      const chunk = Buffer.alloc(n, n & 0xff);
      expect(encodeChunkMessage({ chunk }).equals(Buffer.from(OR.encode({ chunk }).finish()))).toBe(true);
    }
  });
});
