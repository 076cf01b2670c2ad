// Turns any thrown value into the gRPC status the host will show: one prefix, redacted, never CANCELLED/UNAVAILABLE.
import { status as grpcStatus, type ServiceError as GrpcServiceError, Metadata } from '@grpc/grpc-js';
import { describeError, KlosetError, statusOf } from '../errors.ts';
import { log } from '../log.ts';
import { redactor } from '../redact.ts';

/** A `{code, details}` object grpc-js accepts from handlers. */
export type StatusObject = Partial<GrpcServiceError> & { code: grpcStatus; details: string };

/**
 * The status for `err`, with the message `<integration> <kind>: <message>`. Unexpected (non-SDK) errors read
 * `internal error in <integration> <kind>: <cause>` and their stack is logged at debug level.
 */
export function toStatus(err: unknown, scope: string): StatusObject {
  let code = statusOf(err);
  let message = describeError(err);
  if (!(err instanceof KlosetError)) {
    if (err instanceof Error && err.stack) log.debug(`unexpected error: ${err.stack}`);
    message = `internal error in ${scope}: ${message}`;
  } else if (!message.startsWith(`${scope}:`)) {
    message = `${scope}: ${message}`;
  }
  // The host gives these two codes special meaning (PROTOCOL.md §3.1.5): never use them for application errors.
  if (code === grpcStatus.CANCELLED || code === grpcStatus.UNAVAILABLE || code === grpcStatus.OK) code = grpcStatus.UNKNOWN;
  const details = redactor.redact(message);
  return { code, details, message: details, metadata: new Metadata(), name: 'Error' };
}
