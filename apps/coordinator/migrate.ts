/**
 * Runs the decision log's migrations on DATABASE_URL and exits: the Kubernetes migration Job
 * (`node dist/apps/coordinator/migrate.js`), or a deploy step before new coordinator replicas start.
 * The coordinator runs the same migrations at start; running them here first means replicas of a
 * new version never race each other over a schema change. Exit 0 when the schema is up to date.
 *
 * Reads the coordinator's configuration (a bad variable stops it with the same one line);
 * DATABASE_URL is required: the embedded store is migrated by the coordinator that owns it.
 */
import 'reflect-metadata';
import { DataSource, DataSourceOptions } from 'typeorm';
import { ConfigError, CoordinatorConfig, loadConfig } from './config/config';
import { databaseOptions } from './log/database';

/** pg_advisory_lock key: one migrate run at a time per database (two Jobs, a retry overlapping). */
const LOCK_KEY = 0x7478_6d67; // "txmg"

function fail(message: string): never {
  process.stderr.write(`migrate: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: CoordinatorConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  if (!config.databaseUrl) fail('DATABASE_URL is required (the embedded store is migrated by the coordinator that owns it)');

  const options = { ...(await databaseOptions(config)), migrationsRun: false } as DataSourceOptions;
  const db = new DataSource(options);
  const started = Date.now();
  await db.initialize();
  const lock = db.createQueryRunner();
  try {
    await lock.connect();
    await lock.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    const applied = await db.runMigrations({ transaction: 'each' });
    const known = db.migrations.map((m) => m.name ?? m.constructor.name);
    process.stdout.write(applied.length
      ? `migrate: applied ${applied.map((m) => m.name).join(', ')} in ${Date.now() - started} ms\n`
      : `migrate: schema up to date (${known.length} migrations: ${known.join(', ')})\n`);
    await lock.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
  } finally {
    await lock.release();
    await db.destroy();
  }
}

main().catch((err) => fail(`failed: ${err instanceof Error ? err.message : String(err)}`));
