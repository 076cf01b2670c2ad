// Vitest global setup: starts the real servers named in KLOSET_TS_SERVERS once per run and provides their handles.
import type { TestProject } from 'vitest/node';
import { tracer } from './servers/process-utils.ts';
import {
  parseServerList,
  serverInfo,
  serverKey,
  STARTERS,
  type RunningServer,
  type ServerName,
} from './servers/registry.ts';

/**
 * State shared by every call of {@link setup} in this process. Vitest runs the global setup once per project (and
 * once for the root project), each time in a fresh module instance, so module variables would not be shared.
 */
interface RunState {
  /** The start of each server, begun at most once per run. */
  started: Map<ServerName, Promise<RunningServer>>;
  /** Setups whose teardown has not run yet; the last teardown stops the servers. */
  users: number;
  /** Why the servers failed to start, so that later projects fail the same way instead of starting them again. */
  failure?: unknown;
}

const trace = tracer('global-setup');

const STATE: RunState = ((globalThis as { __klosetTsServerRun?: RunState }).__klosetTsServerRun ??= {
  started: new Map(),
  users: 0,
});

/**
 * Starts the servers listed in `KLOSET_TS_SERVERS` (comma-separated names from `test/servers/registry.ts`; unset
 * or empty starts none), all in parallel, the first time any project sets up, and provides each one's serialisable
 * handle as `server:<name>` (read it in tests with `providedServer(name)` or `inject('server:<name>')`).
 *
 * The returned teardown stops every server once the last project has torn down. On SIGINT vitest exits without
 * tearing down; the servers are then killed and their directories removed by the exit hook of
 * `test/servers/process-utils.ts`.
 *
 * @param project - the vitest project being set up
 * @returns the teardown
 * @throws Error with the failing servers' log tails when a server does not start (the others are stopped)
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const wanted = parseServerList(process.env.KLOSET_TS_SERVERS);
  if (STATE.failure !== undefined) throw STATE.failure;
  STATE.users++;
  for (const name of wanted) {
    if (STATE.started.has(name)) continue;
    trace(`starting ${name} (project "${project.name}")`);
    STATE.started.set(
      name,
      // A second attempt when the first fails: one-node Ceph's start races now and then (the monitor answering
      // "problem getting command descriptions" before it is ready), and one flaky start must not abort the run.
      (STARTERS[name]() as Promise<RunningServer>)
        .catch((err: unknown): Promise<RunningServer> => {
          trace(`${name} failed to start (${(err as Error).message.split('\n')[0]}); trying once more`);
          return STARTERS[name]();
        })
        .then((server) => {
          trace(`${name} started`);
          return server;
        }),
    );
  }
  const results = await Promise.allSettled(wanted.map((name) => STATE.started.get(name) as Promise<RunningServer>));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (failures.length > 0) {
    STATE.users--;
    STATE.failure =
      failures.length === 1 ? failures[0] : new AggregateError(failures, 'test servers failed to start');
    await stopAll();
    throw STATE.failure;
  }
  wanted.forEach((name, i) => {
    const server = (results[i] as PromiseFulfilledResult<RunningServer>).value;
    // The key and value types match per name, which TypeScript cannot follow through the union.
    project.provide(serverKey(name), serverInfo(server) as never);
  });
  return async () => {
    STATE.users--;
    if (STATE.users <= 0) await stopAll();
  };
}

/** Stops every server started in this run (those still starting are stopped once started). */
async function stopAll(): Promise<void> {
  const starts = [...STATE.started.entries()];
  STATE.started.clear();
  await Promise.all(
    starts.map(async ([name, start]) => {
      const server = await start.catch(() => undefined);
      await server?.stop();
      trace(`${name} stopped`);
    }),
  );
}
