// Error classes of the harness: what the host would report, what would abort it, and stricter kloset-ts contract checks.
import type { GrpcError } from './transport.ts';

/** A host operation failed; `message` is the text the Plakar host would report to the user. */
export class HostError extends Error {
  override readonly name: string = 'HostError';
  /** The gRPC status behind the failure, when there was one. */
  readonly grpc?: GrpcError;

  constructor(message: string, grpc?: GrpcError) {
    super(message);
    this.grpc = grpc;
  }

  /** The gRPC status code behind the failure, if any. */
  get code(): number | undefined {
    return this.grpc?.code;
  }
}

/**
 * The plugin broke the protocol in a way that makes the real host abort the whole operation or crash
 * (e.g. "invalid record /x: missing fileinfo", "expected a record", a nil-pointer panic, "invalid MAC length: 31").
 */
export class HostAbortError extends HostError {
  override readonly name: string = 'HostAbortError';
}

/** The plugin did something the host tolerates but kloset-ts forbids (PROTOCOL §8 traps, §3.4.4 path rules…). */
export class ContractError extends Error {
  override readonly name = 'ContractError';
}
