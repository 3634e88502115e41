/**
 * Bank account service: a member service on the participant library whose accounts live in its own
 * database — Postgres (prepared transactions) or MariaDB (XA). A transfer between two services is
 * one global transaction: a debit leg at one, a credit leg at the other (see bank.ts).
 *
 *   DATABASE_URL=postgres://…/bank_a KAFKA_BROKERS=host:9092 \
 *     node dist/apps/bank-account/main.js --name bank-a [--accounts 100 --balance 10000]
 *   DATABASE_URL=postgres://…/bank_c_log ACCOUNTS_URL=mysql://root@127.0.0.1:3306/bank_c KAFKA_BROKERS=… \
 *     node dist/apps/bank-account/main.js --name bank-c
 *
 * DATABASE_URL: the library's own Postgres (its protocol record, `tx_participant_log`).
 * ACCOUNTS_URL: the accounts' database, `postgres://` or `mysql://` / `mariadb://` (default: DATABASE_URL).
 * `--accounts N --balance B` open accounts acct-0 … acct-(N-1) with balance B where missing.
 * The line `bank ready` means it is consuming. SIGTERM/SIGINT stop it; exit 2 on bad configuration.
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import { Pool } from 'pg';
import pino from 'pino';
import { DataSource } from 'typeorm';
import {
  mariadbXaParticipant,
  ParticipantConfigError,
  ParticipantRuntime,
  postgresPreparedParticipant,
  ResourceNotReadyError,
  ResourceParticipant,
  startParticipant,
  TransactionParticipant,
  validateDatabaseUrl,
} from '../../libs/participant';
import { PARTICIPANT_NAME } from '../../libs/protocol';
import { ensureMySchema, ensurePgSchema, myWork, pgWork } from './bank';

const PROGRAM = 'bank-account';
const USAGE = 'usage: bank-account --name <name> [--accounts <n>] [--balance <cents>]';

function fail(message: string, code: number): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(code);
}

interface Config {
  name: string;
  accounts: number;
  balance: number;
  databaseUrl: string;
  accountsUrl: URL;
  engine: 'postgres' | 'mariadb';
}

function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(name|accounts|balance)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new ParticipantConfigError(`unexpected argument ${JSON.stringify(argv[i])}; ${USAGE}`);
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new ParticipantConfigError(`--${m[1]} needs a value; ${USAGE}`);
    args.set(m[1], v);
  }
  const name = args.get('name');
  if (!name || !PARTICIPANT_NAME.test(name)) throw new ParticipantConfigError(`--name is required (A-Z a-z 0-9 . _ -); ${USAGE}`);
  const int = (key: string, def: number) => {
    const v = args.get(key);
    if (v === undefined) return def;
    if (!/^\d{1,15}$/.test(v)) throw new ParticipantConfigError(`--${key} must be a non-negative integer`);
    return Number(v);
  };
  const databaseUrl = validateDatabaseUrl(env.DATABASE_URL, 'DATABASE_URL');
  const raw = env.ACCOUNTS_URL || databaseUrl;
  let accountsUrl: URL;
  try {
    accountsUrl = new URL(raw);
  } catch {
    throw new ParticipantConfigError('ACCOUNTS_URL is not a valid URL');
  }
  const engine = /^postgres(ql)?:$/.test(accountsUrl.protocol)
    ? 'postgres'
    : /^(mysql|mariadb):$/.test(accountsUrl.protocol)
      ? 'mariadb'
      : null;
  if (!engine) throw new ParticipantConfigError('ACCOUNTS_URL must be a postgres://, mysql:// or mariadb:// URL');
  if (engine === 'mariadb' && accountsUrl.pathname.length < 2) throw new ParticipantConfigError('ACCOUNTS_URL must name a database');
  return { name, accounts: int('accounts', 0), balance: int('balance', 10_000), databaseUrl, accountsUrl, engine };
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ParticipantConfigError) fail(`configuration error: ${err.message}`, 2);
    throw err;
  }
  const logger = pino({ name: PROGRAM, level: process.env.LOG_LEVEL || 'info' });
  const library = new DataSource({ type: 'postgres', url: config.databaseUrl, synchronize: false, entities: [], extra: { max: 20 } });
  let adapter: ResourceParticipant<any>;
  try {
    await library.initialize();
    if (config.engine === 'postgres') {
      const pool = new Pool({ connectionString: config.accountsUrl.toString(), max: 20 });
      pool.on('error', (err) => logger.warn({ err }, 'accounts pool: idle connection error'));
      await ensurePgSchema(pool, config.accounts, config.balance);
      adapter = postgresPreparedParticipant({ name: config.name, pool, ownsPool: true, libraryDataSource: library, work: pgWork, logger });
    } else {
      const u = config.accountsUrl;
      const pool = mysql.createPool({
        host: u.hostname,
        port: Number(u.port || 3306),
        user: decodeURIComponent(u.username || 'root'),
        password: decodeURIComponent(u.password),
        database: decodeURIComponent(u.pathname.slice(1)),
        connectionLimit: 20,
      });
      await ensureMySchema(pool, config.accounts, config.balance);
      adapter = mariadbXaParticipant({ name: config.name, pool, ownsPool: true, libraryDataSource: library, work: myWork, logger });
    }
    const report = await adapter.start();
    logger.info({ participant: config.name, ...summary(report) }, 'resource recovery at start');
  } catch (err) {
    if (err instanceof ResourceNotReadyError) fail(`resource database not ready: ${err.message}`, 2);
    fail(`cannot use the databases: ${(err as Error).message}`, 1);
  }

  let runtime: ParticipantRuntime;
  try {
    runtime = await startParticipant({ name: config.name, participant: withTestCrashes(adapter, process.env), dataSource: library, logger });
  } catch (err) {
    if (err instanceof ParticipantConfigError) fail(`configuration error: ${err.message}`, 2);
    fail(`start failed: ${(err as Error).message}`, 1);
  }
  logger.info({ participant: config.name, engine: config.engine, url: runtime.url ?? undefined }, 'bank ready');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ participant: config.name, signal }, 'bank stopping');
    let code = 0;
    try {
      await runtime.stop();
      await adapter.stop();
      await library.destroy();
    } catch (err) {
      logger.error({ err }, 'unclean shutdown');
      code = 1;
    }
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * TEST-ONLY (the chaos run): with BANK_TEST_CRASH_FILE set, the file holds `{ "rate": p }`, and the
 * process kills itself (SIGKILL) with probability p right after the resource transaction was
 * prepared, committed or rolled back and before the library recorded it — the narrowest crash
 * windows of the adapter (resource-participant.ts, crash points 4 and 6). No file, or rate 0: off.
 * The chaos run writes the file while it injects faults and removes it before settling.
 */
function withTestCrashes(adapter: TransactionParticipant, env: NodeJS.ProcessEnv): TransactionParticipant {
  const file = env.BANK_TEST_CRASH_FILE;
  if (!file) return adapter;
  let rate = 0;
  let readAt = 0;
  const currentRate = () => {
    if (Date.now() - readAt > 200) {
      readAt = Date.now();
      try {
        rate = Number(JSON.parse(readFileSync(file, 'utf8')).rate) || 0;
      } catch {
        rate = 0;
      }
    }
    return rate;
  };
  const maybeCrash = (where: string, txId: string) => {
    if (Math.random() < currentRate()) {
      process.stdout.write(`${JSON.stringify({ level: 50, time: Date.now(), msg: 'TEST CRASH (BANK_TEST_CRASH_FILE)', where, txId })}\n`);
      process.kill(process.pid, 'SIGKILL');
    }
  };
  return {
    prepare: async (ctx) => {
      const vote = await adapter.prepare(ctx);
      if (vote === 'yes' || (typeof vote === 'object' && vote.vote === 'yes')) maybeCrash('after-resource-prepare', ctx.txId);
      return vote;
    },
    commit: async (ctx) => {
      await adapter.commit(ctx);
      maybeCrash('after-resource-commit', ctx.txId);
    },
    abort: async (ctx) => {
      await adapter.abort(ctx);
      maybeCrash('after-resource-rollback', ctx.txId);
    },
  };
}

function summary(r: { found: number; rolledBack: string[]; committed: string[]; inDoubt: string[]; skipped: string[] }) {
  return { found: r.found, rolledBack: r.rolledBack.length, committed: r.committed.length, inDoubt: r.inDoubt.length, skipped: r.skipped.length };
}

main().catch((err) => fail(`fatal: ${(err as Error)?.message ?? String(err)}`, 1));
