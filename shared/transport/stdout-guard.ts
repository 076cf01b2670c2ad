// Imported first by every executable: nothing but HTTP/2 may reach fd 1, so console output and process.stdout go to stderr.
import { format } from 'node:util';

const toStderr = (...args: unknown[]): void => {
  try {
    process.stderr.write(`${format(...args)}\n`);
  } catch {
    // stderr closed: drop the line
  }
};

console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;
console.warn = toStderr;
console.error = toStderr;
console.trace = toStderr;
console.dir = (obj: unknown): void => toStderr(obj);
console.table = toStderr;

// Any library that writes to process.stdout writes to stderr instead; the transport opens fd 1 itself.
Object.defineProperty(process, 'stdout', {
  configurable: true,
  enumerable: true,
  get: () => process.stderr,
});
