// The one logger: levelled lines on stderr (or an opt-in file), every line redacted, never stdout.
import { appendFileSync } from 'node:fs';
import { redactor } from './redact.ts';

/** Log levels, least to most severe. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra `key=value` fields appended to a line. */
export type LogFields = Record<string, string | number | boolean | undefined | null>;

interface Sink {
  level: number;
  file: string | undefined;
  scope: string;
}

const sink: Sink = {
  level: RANK[parseLevel(process.env.KLOSET_TS_LOG) ?? 'warn'],
  file: process.env.KLOSET_TS_LOG_FILE || undefined,
  scope: 'kloset-ts',
};

function parseLevel(text: string | undefined): LogLevel | undefined {
  const t = text?.trim().toLowerCase();
  return t === 'debug' || t === 'info' || t === 'warn' || t === 'error' ? t : undefined;
}

/** Sets the `<integration>/<kind>` scope printed on every line. */
export function setLogScope(scope: string): void {
  sink.scope = scope;
}

/** Overrides the level (tests); `KLOSET_TS_LOG` sets it otherwise. */
export function setLogLevel(level: LogLevel): void {
  sink.level = RANK[level];
}

function formatValue(v: string | number | boolean): string {
  const s = String(v);
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s;
}

function write(level: LogLevel, subject: string | undefined, message: string, fields?: LogFields): void {
  let line = `${new Date().toISOString()} ${level.toUpperCase()} ${sink.scope}${subject ? ` [${subject}]` : ''}: ${message}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) line += ` ${k}=${formatValue(v)}`;
  }
  line = `${redactor.redact(line.replace(/\n/g, ' '))}\n`;
  if (sink.file) {
    try {
      appendFileSync(sink.file, line);
      return;
    } catch {
      // fall back to stderr when the log file cannot be written
    }
  }
  try {
    process.stderr.write(line);
  } catch {
    // stderr closed: nothing left to tell
  }
}

/** A logger bound to an optional subject (the path, mailbox or object a line is about). */
export class Logger {
  private readonly onceKeys = new Map<string, number>();
  private readonly subject: string | undefined;
  constructor(subject?: string) {
    this.subject = subject;
  }

  /** Whether a line at `level` would be written (check before building costly messages). */
  enabled(level: LogLevel): boolean {
    return RANK[level] >= sink.level;
  }
  debug(message: string, fields?: LogFields): void {
    if (RANK.debug >= sink.level) write('debug', this.subject, message, fields);
  }
  info(message: string, fields?: LogFields): void {
    if (RANK.info >= sink.level) write('info', this.subject, message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    if (RANK.warn >= sink.level) write('warn', this.subject, message, fields);
  }
  error(message: string, fields?: LogFields): void {
    if (RANK.error >= sink.level) write('error', this.subject, message, fields);
  }
  /** Writes the first occurrence of `key` at `level`, then only counts repeats (shown at debug). */
  once(key: string, level: LogLevel, message: string, fields?: LogFields): void {
    const n = (this.onceKeys.get(key) ?? 0) + 1;
    this.onceKeys.set(key, n);
    if (n === 1) this[level](message, fields);
    else this.debug(`${message} (repeated ${n} times)`, fields);
  }
  /** A logger whose lines name `subject`. */
  child(subject: string): Logger {
    return new Logger(subject);
  }
}

/** The process logger. */
export const log = new Logger();
