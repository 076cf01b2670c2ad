// The executable's entry point: serve a connector over stdio for Plakar, or help a person at a terminal.
import { writeSync } from 'node:fs';
import type { ConnectorKind, Integration } from './define.ts';
import { describeError } from './errors.ts';
import { log } from './log.ts';
import { renderOptionsText } from './options/docs.ts';
import { renderSchema } from './options/schema.ts';
import { stdioDuplex } from './transport/stdio.ts';
import { serveOnDuplex } from './transport/serve.ts';

const KINDS: readonly ConnectorKind[] = ['importer', 'exporter', 'storage'];

/** Grace period for closing connectors when the host goes away. */
const SHUTDOWN_GRACE_MS = 5000;

function print(text: string): void {
  // fd 1 directly: process.stdout is pointed at stderr by the stdout guard.
  writeSync(1, text.endsWith('\n') ? text : `${text}\n`);
}

function usage(integration: Integration): string {
  const kinds = KINDS.filter((k) => integration[k]);
  const commands = Object.entries(integration.commands ?? {});
  return [
    `${integration.name} ${integration.version}: ${integration.displayName} integration for Plakar (kloset-ts)`,
    integration.description,
    '',
    'Plakar starts this executable itself (see manifest.yaml); a person uses it through plakar:',
    `  plakar pkg add ./${integration.name}_v${integration.version}_<os>_<arch>.ptar`,
    '',
    'Usage:',
    ...kinds.map((k) => `  ${integration.name} ${k.padEnd(9)}  serve the ${k} on stdin/stdout (what Plakar runs)`),
    ...commands.map(([name, c]) => `  ${integration.name} ${name.padEnd(9)}  ${c.help}`),
    `  ${integration.name} options [${kinds.join('|')}]  list each connector's options`,
    `  ${integration.name} schema ${kinds.join('|')}  print a connector's JSON Schema`,
    `  ${integration.name} --version | --help`,
    '',
    `Protocols: ${integration.protocols.join(', ')}. Logs go to stderr; set KLOSET_TS_LOG=debug|info|warn|error, or KLOSET_TS_LOG_FILE=path.`,
  ].join('\n');
}

function optionsListing(integration: Integration, only?: ConnectorKind): string {
  const parts: string[] = [];
  for (const k of KINDS) {
    const def = integration[k];
    if (!def || (only && only !== k)) continue;
    parts.push(`${k} (location: ${def.location.help})`, renderOptionsText(def.options), '');
  }
  return parts.join('\n');
}

/** Serves `kind` on fd 0/1 until the host closes stdin; exits 0 on EOF (never on Close). */
export function serveStdio(integration: Integration, kind: ConnectorKind): void {
  const { duplex, input, output } = stdioDuplex();
  const served = serveOnDuplex(integration, kind, duplex);
  // Set by the executable's main script (scripts/sea-main.cjs): whether V8 took the build's code cache.
  const codeCache = (globalThis as Record<symbol, unknown>)[Symbol.for('kloset-ts.code-cache')];
  log.debug(`serving the ${kind} ${Math.round(performance.now())} ms after start`, { code_cache: typeof codeCache === 'string' ? codeCache : 'none' });
  let exiting = false;
  const exit = (code: number, reason: string): void => {
    if (exiting) return;
    exiting = true;
    if (code === 0) log.debug(reason);
    else log.warn(reason);
    const timer = setTimeout(() => process.exit(code), SHUTDOWN_GRACE_MS);
    timer.unref();
    void served.runtime.shutdown().finally(() => process.exit(code));
  };
  input.on('end', () => exit(0, 'stdin reached end of file: the host is gone, exiting'));
  input.on('close', () => exit(0, 'stdin closed: the host is gone, exiting'));
  input.on('error', (err) => exit(0, `stdin failed (${describeError(err)}): exiting`));
  output.on('error', (err: NodeJS.ErrnoException) =>
    exit(err.code === 'EPIPE' ? 0 : 1, `stdout failed (${describeError(err)}): the host stopped reading, exiting`),
  );
  process.on('SIGTERM', () => exit(143, 'terminated by SIGTERM'));
  process.on('SIGINT', () => exit(130, 'interrupted by SIGINT'));
  // A bug in one call must not kill the connector for every other call in flight.
  process.on('uncaughtException', (err) => log.error(`internal error: ${describeError(err)}`));
  process.on('unhandledRejection', (err) => log.debug(`unhandled rejection: ${describeError(err)}`));
}

/** Runs an integration executable: `importer|exporter|storage` serve; anything else helps a person. */
export function runIntegration(integration: Integration, argv: readonly string[] = process.argv.slice(2)): void {
  const [command, ...rest] = argv;
  if (command && (KINDS as readonly string[]).includes(command)) {
    const kind = command as ConnectorKind;
    if (!integration[kind]) {
      process.stderr.write(`${integration.name}: this integration has no ${kind}\n`);
      process.exit(2);
    }
    if (process.stdin.isTTY) {
      process.stderr.write(
        `${integration.name} ${kind}: Plakar runs this over stdin/stdout; it is not interactive.\nRun "${integration.name} --help" for what a person can do.\n`,
      );
      process.exit(2);
    }
    serveStdio(integration, kind);
    return;
  }
  switch (command) {
    case '--version':
    case 'version':
      print(`${integration.name} ${integration.version} (kloset-ts, node ${process.versions.node})`);
      return;
    case 'options': {
      const only = rest[0] as ConnectorKind | undefined;
      if (only && !integration[only]) {
        process.stderr.write(`${integration.name}: no ${only} connector\n`);
        process.exit(2);
      }
      print(optionsListing(integration, only));
      return;
    }
    case 'schema': {
      const kind = rest[0] as ConnectorKind | undefined;
      const def = kind ? integration[kind] : undefined;
      if (!kind || !def) {
        process.stderr.write(`usage: ${integration.name} schema ${KINDS.filter((k) => integration[k]).join('|')}\n`);
        process.exit(2);
      }
      print(JSON.stringify(renderSchema(`${integration.name} ${kind}`, def.options, def.location.help, def.location.pattern), null, 2));
      return;
    }
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      print(usage(integration));
      return;
    default: {
      const cmd = integration.commands?.[command];
      if (cmd) {
        cmd.run(rest).then(
          (code) => process.exit(code),
          (err: unknown) => {
            process.stderr.write(`${integration.name} ${command}: ${describeError(err)}\n`);
            process.exit(1);
          },
        );
        return;
      }
      process.stderr.write(`${integration.name}: unknown command ${JSON.stringify(command)}\n\n${usage(integration)}\n`);
      process.exit(2);
    }
  }
}
