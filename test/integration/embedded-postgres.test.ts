/**
 * The embedded decision log: PGlite served over the Postgres wire protocol, used through the
 * coordinator's own TypeORM options (migrations, the single-connection pool, shutdown) and
 * DecisionLog, then restarted on the same folder.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { DataSource, DataSourceOptions } from 'typeorm';
import { loadConfig } from '../../apps/coordinator/config/config';
import { databaseOptions } from '../../apps/coordinator/log/database';
import { DecisionLog } from '../../apps/coordinator/log/decision-log';
import { LOCK_FILE, startEmbeddedPostgres } from '../../libs/embedded-postgres';
import { begin } from '../../libs/engine';

let dir: string;
let ds: DataSource | undefined;
let sleeper: ChildProcess | undefined;

async function openLog(): Promise<DataSource> {
  const config = loadConfig({ ...process.env, DATABASE_URL: '', TX_EMBEDDED_DATA_DIR: dir });
  expect(config.databaseUrl).toBeNull();
  return new DataSource((await databaseOptions(config)) as DataSourceOptions).initialize();
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'embedded-pg-'));
});

afterAll(async () => {
  sleeper?.kill();
  if (ds?.isInitialized) await ds.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const id = randomUUID();

test('migrates on first start and keeps the decision log', async () => {
  ds = await openLog();
  expect(await ds.query('SELECT name FROM migrations')).toEqual(expect.arrayContaining([{ name: 'DecisionLog1763900000000' }]));

  const log = new DecisionLog(ds);
  const { state } = begin({ id, protocol: '2pc', timeoutMs: 30_000, participants: [{ name: 'inventory', payload: { sku: 'A1' } }], now: Date.now() });
  expect(await log.insert(state, { key: 'k-1', hash: 'h-1' })).toEqual({ created: true, state });
  expect(await log.get(id)).toEqual(state);
  // The idempotency key's partial unique index works.
  expect(await log.insert({ ...state, id: randomUUID() }, { key: 'k-1', hash: 'h-1' })).toMatchObject({ created: false, sameRequest: true });
});

test('queues concurrent locking transactions on its one connection', async () => {
  const db = ds!;
  const log = new DecisionLog(db);
  const bumps = Array.from({ length: 20 }, () =>
    db.transaction(async (em) => {
      const [row] = await em.query('SELECT timeout_ms FROM tx_transaction WHERE id = $1 FOR UPDATE', [id]);
      // A writer beside the log keeps its protocol: every change bumps the version (see DecisionLog).
      await em.query('UPDATE tx_transaction SET timeout_ms = $2, version = version + 1 WHERE id = $1', [id, row.timeout_ms + 1]);
    }),
  );
  const updates = Array.from({ length: 20 }, () =>
    log.update(id, (s) => ({ next: { ...s, metadata: { n: Number(s.metadata.n ?? 0) + 1 } }, result: null })),
  );
  const reads = Array.from({ length: 20 }, () => log.get(id));
  await Promise.all([...bumps, ...updates, ...reads]);

  const after = await log.get(id);
  expect(after?.timeoutMs).toBe(30_020); // no lost update: each read-modify-write ran alone
  expect(after?.metadata).toEqual({ n: 20 });
});

test('refuses a second user of the same folder while it runs', async () => {
  await expect(startEmbeddedPostgres(dir)).rejects.toThrow(/in use by process .*stop that coordinator/);
});

test('stops with the DataSource and finds its rows after a restart', async () => {
  await ds!.destroy();
  expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);

  ds = await openLog();
  // Each migration ran once, on the first start only.
  expect(await ds.query('SELECT count(*)::int AS n FROM migrations')).toEqual([{ n: ds.migrations.length }]);
  const state = await new DecisionLog(ds).get(id);
  expect(state).toMatchObject({ id, timeoutMs: 30_020, metadata: { n: 20 }, participants: [{ name: 'inventory', payload: { sku: 'A1' } }] });
  await ds.destroy();
});

test('a lock held by another live process blocks start; a stale one is taken over', async () => {
  sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const lockFile = path.join(dir, LOCK_FILE);
  writeFileSync(lockFile, JSON.stringify({ pid: sleeper.pid, host: hostname() }));
  await expect(startEmbeddedPostgres(dir)).rejects.toThrow(`in use by process ${sleeper.pid} on ${hostname()}`);

  await new Promise((resolve) => {
    sleeper!.once('exit', resolve);
    sleeper!.kill();
  });
  const embedded = await startEmbeddedPostgres(dir); // the owner is gone: the lock is stale
  await embedded.stop();
  expect(existsSync(lockFile)).toBe(false);
});
