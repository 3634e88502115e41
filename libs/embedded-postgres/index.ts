import { closeSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'fs';
import { hostname } from 'os';
import * as path from 'path';
import pg from 'pg';
import { Worker } from 'worker_threads';

/** A running embedded Postgres: where `pg` reaches it, and how to stop it (idempotent). */
export interface EmbeddedPostgres {
  url: string;
  stop(): Promise<void>;
}

/** Who uses the folder, for the message when another process already does. */
export interface EmbeddedPostgresOptions {
  /** What the process is, e.g. `coordinator` or `participant inventory` (default `coordinator`). */
  owner?: string;
  /** The variable or option that chooses another folder (default `TX_EMBEDDED_DATA_DIR`). */
  dataDirSetting?: string;
}

/** The lock file inside a data folder; present while a process uses it. */
export const LOCK_FILE = 'embedded-postgres.lock';

/**
 * Runs in a worker thread: PGlite executes every query synchronously, which must not stall the
 * process's event loop. Plain CommonJS, so it runs the same from dist/ and under ts-jest.
 */
const WORKER = `
const { parentPort, workerData } = require('worker_threads');
const { PGlite } = require(workerData.pglite);
const { PGLiteSocketServer } = require(workerData.socket);
(async () => {
  const db = await PGlite.create(workerData.pgdata);
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 1 });
  await server.start();
  parentPort.once('message', async () => {
    await server.stop();
    await db.close();
    parentPort.close();
  });
  parentPort.postMessage(server.getServerConn());
})();
`;

/** How long a stop may take before the worker (and PGlite with it) is terminated. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * Starts PGlite (Postgres compiled to WebAssembly) on `<dataDir>/pgdata`, created on first use,
 * in a worker thread, serving the Postgres wire protocol on 127.0.0.1 at a free port, so `pg`
 * and TypeORM's postgres driver use it unchanged.
 *
 * PGlite is one backend: the socket server admits a single client connection (a second one is
 * dropped at once) and runs its queries in order, so clients must use a pool of one.
 *
 * PGlite does not lock its data folder itself: `<dataDir>/embedded-postgres.lock` does, so a
 * second process on the same folder fails to start instead of corrupting the data.
 *
 * After start, an error in the worker is not handled here: it crashes the process, as an
 * unreachable database should.
 *
 * Used by the coordinator (its decision log without DATABASE_URL) and by the example participant
 * (its own database without DATABASE_URL); each process needs its own folder.
 */
export async function startEmbeddedPostgres(dataDir: string, options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const root = path.resolve(dataDir);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const unlock = lock(root, options);
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: {
      pgdata: path.join(root, 'pgdata'),
      pglite: require.resolve('@electric-sql/pglite'),
      socket: require.resolve('@electric-sql/pglite-socket'),
    },
  });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  let address: string;
  try {
    address = await new Promise<string>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      void exited.then((code) => reject(new Error(`embedded Postgres stopped while starting (exit code ${code})`)));
    });
  } catch (err) {
    await worker.terminate();
    unlock();
    throw err;
  }
  worker.removeAllListeners('error');

  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    let failure: unknown;
    worker.once('error', (err) => (failure = err)); // reported by stop(), not as a crash
    const timer = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
    try {
      worker.postMessage('stop');
      await exited;
    } finally {
      clearTimeout(timer);
      unlock();
    }
    if (failure) throw failure;
  };
  return { url: `postgresql://postgres@${address}/postgres`, stop: () => (stopping ??= stop()) };
}

/**
 * The `pg` module with a Pool that stops `embedded` once it has ended: TypeORM ends its pool
 * exactly when its DataSource is destroyed (also after a failed initialize), so passing this as
 * the DataSource's `driver` stops the embedded server with it.
 */
export function stoppingWithPool(embedded: EmbeddedPostgres): typeof pg {
  class EmbeddedPool extends pg.Pool {
    override end(): Promise<void>;
    override end(callback: () => void): void;
    override end(callback?: () => void): Promise<void> | void {
      const ended = super.end().finally(() => embedded.stop());
      if (!callback) return ended;
      ended.then(() => callback(), callback);
    }
  }
  return { ...pg, Pool: EmbeddedPool };
}

/**
 * Pool settings for the embedded server: one backend, so one connection, kept open for the life
 * of the pool. TypeORM queues the rest, each transaction holding the connection from BEGIN to
 * COMMIT, so they never interleave.
 */
export const EMBEDDED_POOL = { max: 1, idleTimeoutMillis: 0, connectionTimeoutMillis: 30_000 };

/** Data folders this process holds, so a second start in the same process is refused too. */
const held = new Set<string>();

/**
 * Takes `<root>/embedded-postgres.lock`, created atomically with our pid and host. A lock left by
 * a process that is gone (same host, pid not running) is taken over; the lock is also dropped
 * when this process exits without stopping. Returns the release function.
 */
function lock(root: string, options: EmbeddedPostgresOptions): () => void {
  const file = path.join(root, LOCK_FILE);
  if (held.has(root)) throw inUse(root, file, `${process.pid} on ${hostname()} (this process)`, options);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
  } finally {
    closeSync(fd);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, file); // atomic: fails when the lock exists, never exposes a half-written one
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = readOwner(file);
        if (owner && attempt === 0 && isStale(owner)) {
          // Two processes taking over the same stale lock at the same instant could both win;
          // that needs a crash followed by two simultaneous starts, and is not guarded against.
          unlinkQuietly(file);
          continue;
        }
        throw inUse(root, file, owner ? `${owner.pid} on ${owner.host}` : 'another process', options);
      }
    }
  } finally {
    unlinkQuietly(tmp);
  }
  held.add(root);
  const release = (): void => {
    if (!held.delete(root)) return;
    process.removeListener('exit', release);
    unlinkQuietly(file);
  };
  process.on('exit', release);
  return release;
}

interface Owner {
  pid: number;
  host: string;
}

function readOwner(file: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? { pid: o.pid, host: o.host } : null;
  } catch {
    return null;
  }
}

/** Left by a process that no longer runs. A lock from another host cannot be checked: not stale. */
function isStale(owner: Owner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return true; // an earlier life of this pid (e.g. pid 1 in a restarted container)
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function inUse(root: string, file: string, owner: string, options: EmbeddedPostgresOptions): Error {
  return new Error(
    `embedded Postgres data folder ${root} is in use by process ${owner}: stop that ${options.owner ?? 'coordinator'}, or set ` +
      `${options.dataDirSetting ?? 'TX_EMBEDDED_DATA_DIR'} to another folder, or DATABASE_URL (if that process is gone, delete ${file})`,
  );
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
