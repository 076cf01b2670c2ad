// Protobuf types of the four Plakar services, loaded from the embedded .proto text, and gRPC method tables.
import protobuf from 'protobufjs';
import type * as grpc from '@grpc/grpc-js';
import { PROTO_SOURCES } from './gen/protos.ts';
import type { EncodedChunk } from './streams.ts';

let cachedRoot: protobuf.Root | undefined;

/** Parses the embedded .proto files once into one resolved protobufjs root. */
export function protoRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const root = new protobuf.Root();
  const timestamp = protobuf.common.get('google/protobuf/timestamp.proto');
  if (timestamp?.nested) root.addJSON(timestamp.nested);
  for (const source of Object.values(PROTO_SOURCES)) {
    protobuf.parse(source, root, { keepCase: true });
  }
  root.resolveAll();
  cachedRoot = root;
  return root;
}

/** Looks up one message type by its full name, e.g. `store.GetRequest`. */
export function protoType(name: string): protobuf.Type {
  return protoRoot().lookupType(name);
}

/** A gRPC method definition as grpc-js wants it, with protobufjs encoding. */
export type MethodTable = grpc.ServiceDefinition;

/** Builds the grpc-js service definition for `service` (e.g. `store.Store`). Requests decode to protobufjs messages. */
export function serviceDefinition(
  service: string,
  encoders: Record<string, (value: unknown) => Buffer> = {},
): MethodTable {
  const svc = protoRoot().lookupService(service);
  const table: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of svc.methodsArray) {
    method.resolve();
    const req = method.resolvedRequestType;
    const res = method.resolvedResponseType;
    if (!req || !res) throw new Error(`unresolved method ${service}.${method.name}`);
    const encode =
      encoders[method.name] ??
      ((value: unknown): Buffer => {
        const bytes = res.encode(res.fromObject(value as Record<string, unknown>)).finish();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      });
    table[method.name] = {
      path: `/${service}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: (value: unknown): Buffer => {
        const bytes = req.encode(req.fromObject(value as Record<string, unknown>)).finish();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      },
      requestDeserialize: (buf: Buffer): unknown => req.decode(buf),
      responseSerialize: encode,
      responseDeserialize: (buf: Buffer): unknown => res.decode(buf),
      originalName: method.name,
    };
  }
  return table as MethodTable;
}

/**
 * Encodes a message whose only field is `bytes chunk = 1` (OpenResponse, GetResponse) without protobufjs:
 * tag, varint length, then the bytes. This is the hot path of every restore.
 */
export function encodeChunkMessage(value: unknown): Buffer {
  const encoded = (value as Partial<EncodedChunk>).encoded;
  if (encoded) return encoded;
  const chunk = (value as { chunk?: Uint8Array }).chunk;
  if (!chunk || chunk.length === 0) return Buffer.alloc(0);
  let len = chunk.length;
  let header = 2;
  while (len >= 0x80 * 2 ** (7 * (header - 2))) header++;
  const out = Buffer.allocUnsafe(header + chunk.length);
  out[0] = 0x0a;
  let pos = 1;
  len = chunk.length;
  while (len >= 0x80) {
    out[pos++] = (len & 0x7f) | 0x80;
    len = Math.floor(len / 128);
  }
  out[pos++] = len;
  out.set(chunk, pos);
  return pos + chunk.length === out.length ? out : out.subarray(0, pos + chunk.length);
}
