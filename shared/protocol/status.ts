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
  const details = capped(redactor.redact(message));
  return { code, details, message: details, metadata: new Metadata(), name: 'Error' };
}

/** Longest status message sent, in characters: the text travels in an HTTP/2 trailer (percent-encoded). */
export const MAX_STATUS_MESSAGE = 8192;

/**
 * Cuts an over-long message (an integration echoing a huge bad value): a status of hundreds of kilobytes does not fit
 * the trailer, so the reply never arrives and the host waits forever. Applied after redaction, so no secret is cut
 * into a recognisable prefix.
 */
export function capped(message: string): string {
  if (message.length <= MAX_STATUS_MESSAGE) return message;
  let keep = MAX_STATUS_MESSAGE - 64;
  const last = message.charCodeAt(keep - 1);
  if (last >= 0xd800 && last <= 0xdbff) keep--; // never split a surrogate pair
  return `${message.slice(0, keep)}… (${message.length - keep} more characters)`;
}
