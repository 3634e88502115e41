/**
 * The bank test under faults (Jepsen's bank test, on this system): the built coordinator, three
 * account services (bank-a and bank-b on Postgres prepared transactions, bank-c on MariaDB XA)
 * and the Kafka test broker run as separate processes on real databases. Concurrent clients move
 * money between accounts of different services (2PC and 3PC mixed) while faults are injected:
 * kill -9 and restart of the coordinator and of account services, the broker down and up, added
 * round-trip delay, duplicated (and so reordered) deliveries of protocol messages, and banks killing
 * themselves right inside the adapter's crash windows (after a resource prepare/commit/rollback,
 * before the library's record; --crash-per-mille, default 10 ‰ of those steps). Then the
 * faults stop, the system settles, and the invariants are checked.
 *
 *   npm run chaos -- --duration 60 [--concurrency 6] [--accounts 20] [--balance 1000] [--seed N] [--crash-per-mille 10]
 *   npm run chaos -- --duration 20 --corrupt    # corrupts the banks after settling: must report violations
 *
 * Last line: `transfers: N, committed: N, aborted: N, faults: N, violations: N, settle: S s`.
 * Exit 1 when violations > 0 or no fault was injected; 2 on bad arguments; 3 when it could not run.
 * Process logs: .data/chaos/last/*.log.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Kafka, logLevel } from 'kafkajs';
import mysql from 'mysql2/promise';
import { Client } from 'pg';
import { startBroker, BrokerProcess } from '../support/broker';
import { ManagedProcess } from '../support/processes';
import { freePort } from '../support/ports';

// ---- settings ----------------------------------------------------------------------------------

const args = parseArgs(process.argv.slice(2));
const DURATION_S = args.duration ?? 60;
const CONCURRENCY = args.concurrency ?? 6;
const ACCOUNTS = args.accounts ?? 20;
const BALANCE = args.balance ?? 1000;
const SETTLE_TIMEOUT_S = args['settle-timeout'] ?? 240;
/** Per mille: chance that a bank kills itself right after a resource prepare/commit/rollback. */
const CRASH_PER_MILLE = args['crash-per-mille'] ?? 10;
let seed = args.seed ?? Date.now() % 1_000_000;
const SEED = seed;

const PG_ADMIN = process.env.CHAOS_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const MARIADB = {
  host: process.env.CHAOS_MARIADB_HOST ?? '127.0.0.1',
  port: Number(process.env.CHAOS_MARIADB_PORT ?? 3306),
  user: process.env.CHAOS_MARIADB_USER ?? 'root',
  password: process.env.CHAOS_MARIADB_PASSWORD ?? '',
};
const ROOT = join(__dirname, '..', '..', '..');
const LOG_DIR = join(ROOT, '.data', 'chaos', 'last');
const CRASH_FILE = join(LOG_DIR, 'bank-crash.json');
const PREFIX = `chaos${randomUUID().slice(0, 8)}.`;

type Engine = 'postgres' | 'mariadb';
const BANKS: { name: string; engine: Engine; db: string; logDb: string }[] = [
  { name: 'bank-a', engine: 'postgres', db: 'txchaos_bank_a', logDb: 'txchaos_bank_a' },
  { name: 'bank-b', engine: 'postgres', db: 'txchaos_bank_b', logDb: 'txchaos_bank_b' },
  { name: 'bank-c', engine: 'mariadb', db: 'txchaos_bank_c', logDb: 'txchaos_bank_c_log' },
];
const COORD_DB = 'txchaos_coordinator';

function parseArgs(argv: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--corrupt') {
      // Checks the checker: after settling, money is made in bank-a and a debit is half-applied in bank-c.
      out.corrupt = 1;
      continue;
    }
    const m = /^--(duration|concurrency|accounts|balance|seed|settle-timeout|crash-per-mille)(?:=(.*))?$/.exec(argv[i]);
    const v = m ? (m[2] ?? argv[++i]) : undefined;
    if (!m || v === undefined || !/^\d+$/.test(v)) {
      process.stderr.write(
        `chaos: bad argument ${JSON.stringify(argv[i])}; usage: npm run chaos -- --duration <s> [--concurrency n] [--accounts n] [--balance n] [--seed n] [--settle-timeout s]\n`,
      );
      process.exit(2);
    }
    out[m[1]] = Number(v);
  }
  return out;
}

/** A small seeded generator (mulberry32), so a run's choices can be repeated with --seed. */
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => process.stdout.write(`[chaos ${new Date().toISOString().slice(11, 23)}] ${line}\n`);

function pgUrl(db: string): string {
  const u = new URL(PG_ADMIN);
  u.pathname = `/${db}`;
  return u.toString();
}

async function pgQuery<T = any>(db: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: pgUrl(db) });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

// ---- databases ---------------------------------------------------------------------------------

async function freshPg(db: string): Promise<void> {
  // DROP DATABASE refuses while prepared transactions of it exist (a previous run's leftovers).
  const exists = await pgQuery('postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [db]);
  if (exists.length) {
    const left = await pgQuery<{ gid: string }>('postgres', 'SELECT gid FROM pg_prepared_xacts WHERE database = $1', [db]);
    for (const { gid } of left) await pgQuery(db, `ROLLBACK PREPARED '${gid.replace(/'/g, "''")}'`);
  }
  await pgQuery('postgres', `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  await pgQuery('postgres', `CREATE DATABASE "${db}"`);
}

async function mariaAdmin(): Promise<mysql.Connection> {
  return mysql.createConnection(MARIADB);
}

/** Prepared XA branches of our bank-c database (bqual ends with /<db>). */
async function ourXa(conn: mysql.Connection, db: string): Promise<{ sql: string; gtrid: string }[]> {
  const [rows] = await conn.query<any[]>('XA RECOVER');
  const out = [];
  for (const r of rows) {
    const data: Buffer = Buffer.isBuffer(r.data) ? r.data : Buffer.from(String(r.data), 'latin1');
    const g = data.subarray(0, Number(r.gtrid_length));
    const b = data.subarray(Number(r.gtrid_length), Number(r.gtrid_length) + Number(r.bqual_length));
    if (!b.toString().endsWith(`/${db}`)) continue;
    out.push({ sql: `X'${g.toString('hex')}',X'${b.toString('hex')}',${Number(r.formatID)}`, gtrid: g.toString() });
  }
  return out;
}

async function freshMaria(db: string): Promise<void> {
  const c = await mariaAdmin();
  try {
    for (const x of await ourXa(c, db)) await c.query(`XA ROLLBACK ${x.sql}`);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await c.query(`CREATE DATABASE \`${db}\``);
  } finally {
    await c.end();
  }
}

// ---- processes ---------------------------------------------------------------------------------

const kafkaEnv = (bootstrap: string) => ({
  KAFKA_BROKERS: bootstrap,
  TX_TOPIC_PREFIX: PREFIX,
  KAFKA_MAX_WAIT_MS: '5',
  KAFKA_SESSION_TIMEOUT_MS: '6000',
  LOG_LEVEL: 'info',
});
let coordPort = 0;
let coordinatorUrl = '';

function coordinatorProcess(bootstrap: string): ManagedProcess {
  return new ManagedProcess(
    'coordinator',
    'apps/coordinator/main.js',
    [],
    {
      ...kafkaEnv(bootstrap),
      PORT: String(coordPort),
      DATABASE_URL: pgUrl(COORD_DB),
      TX_RESEND_INITIAL_MS: '500',
      TX_RESEND_MAX_MS: '10000',
      TX_SWEEP_INTERVAL_MS: '1000',
    },
    join(LOG_DIR, 'coordinator.log'),
    async (p) => {
      for (;;) {
        if (!p.running) throw new Error('coordinator exited while starting');
        try {
          const r = await fetch(`${coordinatorUrl}/health/ready`, { signal: AbortSignal.timeout(2000) });
          if (r.status === 200) return;
        } catch {
          /* not yet */
        }
        await sleep(200);
      }
    },
  );
}

function bankProcess(bank: (typeof BANKS)[number], bootstrap: string): ManagedProcess {
  const accountsUrl =
    bank.engine === 'postgres'
      ? pgUrl(bank.db)
      : `mysql://${encodeURIComponent(MARIADB.user)}:${encodeURIComponent(MARIADB.password)}@${MARIADB.host}:${MARIADB.port}/${bank.db}`;
  return new ManagedProcess(
    bank.name,
    'apps/bank-account/main.js',
    ['--name', bank.name, '--accounts', String(ACCOUNTS), '--balance', String(BALANCE)],
    { ...kafkaEnv(bootstrap), DATABASE_URL: pgUrl(bank.logDb), ACCOUNTS_URL: accountsUrl, BANK_TEST_CRASH_FILE: CRASH_FILE },
    join(LOG_DIR, `${bank.name}.log`),
    (_p, lineSeen) => lineSeen(/bank ready/),
  );
}

// ---- clients -----------------------------------------------------------------------------------

interface Transfer {
  id: string | null;
  from: { bank: string; account: string };
  to: { bank: string; account: string };
  amount: number;
  protocol: '2pc' | '3pc';
  /** What the client was told: the outcome, or unknown (errors, 202, gave up). */
  seen: 'commit' | 'abort' | 'unknown';
}

const transfers: Transfer[] = [];
let clientsRunning = true;

async function http(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 15_000) {
  const r = await fetch(coordinatorUrl + path, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await r.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

/** Retries a request through coordinator crashes (network errors, 5xx) for up to `forMs`. */
async function retrying<T>(forMs: number, f: () => Promise<{ status: number; body: any }>, ok: (s: number) => boolean) {
  const until = Date.now() + forMs;
  for (;;) {
    try {
      const r = await f();
      if (ok(r.status)) return r;
      if (r.status < 500 && r.status !== 429) return r;
    } catch {
      /* coordinator down or slow */
    }
    if (Date.now() > until) return null;
    await sleep(300 + rand() * 500);
  }
}

async function client(): Promise<void> {
  while (clientsRunning) {
    const banks = BANKS.map((b) => b.name);
    const fromBank = pick(banks);
    const toBank = pick(banks.filter((b) => b !== fromBank));
    const t: Transfer = {
      id: null,
      from: { bank: fromBank, account: `acct-${between(0, ACCOUNTS - 1)}` },
      to: { bank: toBank, account: `acct-${between(0, ACCOUNTS - 1)}` },
      amount: between(1, Math.max(1, Math.floor(BALANCE / 3))),
      protocol: rand() < 0.5 ? '2pc' : '3pc',
      seen: 'unknown',
    };
    const key = randomUUID();
    const begin = await retrying(
      10_000,
      () =>
        http(
          'POST',
          '/v1/transactions',
          {
            protocol: t.protocol,
            timeoutMs: between(5000, 15000),
            participants: [
              { name: t.from.bank, payload: { op: 'debit', account: t.from.account, amount: t.amount } },
              { name: t.to.bank, payload: { op: 'credit', account: t.to.account, amount: t.amount } },
            ],
            metadata: { chaos: true },
          },
          { 'idempotency-key': key },
        ),
      (s) => s === 201 || s === 200,
    );
    if (!begin || (begin.status !== 201 && begin.status !== 200)) {
      await sleep(200);
      continue;
    }
    t.id = begin.body.id;
    transfers.push(t);
    const commit = await retrying(30_000, () => http('POST', `/v1/transactions/${t.id}/commit?waitMs=10000`, undefined, {}, 20_000), (s) => s === 200);
    let outcome = commit?.status === 200 || commit?.status === 202 ? commit.body.outcome : null;
    // Still deciding (202) or the coordinator was down: follow this transaction until it is decided,
    // so that a client has one transfer in flight at a time.
    const until = Date.now() + 60_000;
    while (outcome == null && commit && Date.now() < until) {
      await sleep(500);
      const r = await http('GET', `/v1/transactions/${t.id}`).catch(() => null);
      if (r?.status === 200) outcome = r.body.outcome;
    }
    if (outcome === 'commit' || outcome === 'abort') t.seen = outcome;
  }
}

// ---- faults ------------------------------------------------------------------------------------

interface Faults {
  count: number;
  byKind: Record<string, number>;
  duplicated: number;
}
const faults: Faults = { count: 0, byKind: {}, duplicated: 0 };
let duplicating = false;

/** Consumes every protocol topic in its own group and, while on, produces copies of what it sees, late. */
async function startDuplicator(bootstrap: string) {
  const kafka = new Kafka({ brokers: bootstrap.split(','), clientId: 'chaos-duplicator', logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: true, idempotent: false });
  const consumer = kafka.consumer({ groupId: `${PREFIX}chaos-duplicator`, maxWaitTimeInMs: 5, sessionTimeout: 6000, heartbeatInterval: 1000 });
  await producer.connect();
  await consumer.connect();
  const topics = [`${PREFIX}coordinator`, ...BANKS.map((b) => `${PREFIX}participant.${b.name}`)];
  for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: false });
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      // Copies are not copied again (that would snowball); receivers ignore the extra header.
      if (!duplicating || message.headers?.['chaos-copy'] || rand() < 0.5) return;
      const copies = rand() < 0.2 ? 2 : 1;
      const delay = between(0, 1500);
      setTimeout(() => {
        const headers = { ...message.headers, 'chaos-copy': '1' };
        const messages = Array.from({ length: copies }, () => ({ key: message.key, value: message.value, headers }));
        producer
          .send({ topic, messages })
          .then(() => (faults.duplicated += copies))
          .catch(() => undefined);
      }, delay).unref();
    },
  });
  return {
    stop: async () => {
      await consumer.disconnect().catch(() => undefined);
      await producer.disconnect().catch(() => undefined);
    },
  };
}

const chains = new Map<ManagedProcess, Promise<void>>();

/** Starts `p` unless it runs; one start at a time per process (the injector and crash restarts share it). */
function ensureRunning(p: ManagedProcess): Promise<void> {
  const next = (chains.get(p) ?? Promise.resolve()).then(async () => {
    for (let i = 0; !p.running; i++) {
      try {
        await p.start();
      } catch (err) {
        say(`${p.label} did not come back (${(err as Error).message}); again`);
        await p.kill();
        if (i >= 5) throw err;
      }
    }
  });
  chains.set(p, next.catch(() => undefined));
  return next;
}

async function injectFaults(until: number, broker: BrokerProcess, coordinator: ManagedProcess, banks: ManagedProcess[]) {
  const record = (kind: string) => {
    faults.count++;
    faults.byKind[kind] = (faults.byKind[kind] ?? 0) + 1;
  };
  const restart = ensureRunning;
  // Every kind once per round, in a shuffled order, so that even a short run sees each of them.
  const KINDS = ['kill-coordinator', 'kill-bank', 'broker-down', 'broker-rtt', 'duplicate', 'kill-coordinator-and-bank', 'kill-bank'];
  let round: string[] = [];
  await sleep(between(2000, 4000));
  while (Date.now() < until) {
    if (!round.length) round = KINDS.map((k) => [rand(), k] as const).sort((x, y) => x[0] - y[0]).map(([, k]) => k);
    const kind = round.shift()!;
    const t0 = Date.now();
    switch (kind) {
      case 'kill-coordinator': {
        await coordinator.kill();
        record(kind);
        await sleep(between(100, 2000));
        await restart(coordinator);
        break;
      }
      case 'kill-bank': {
        const b = pick(banks);
        await b.kill();
        record(`kill-${b.label}`);
        await sleep(between(100, 2000));
        await restart(b);
        break;
      }
      case 'kill-coordinator-and-bank': {
        const b = pick(banks);
        await Promise.all([coordinator.kill(), b.kill()]);
        record(kind);
        await sleep(between(100, 1500));
        await Promise.all([restart(coordinator), restart(b)]);
        break;
      }
      case 'broker-down': {
        await broker.command('down 1');
        record(kind);
        await sleep(between(1000, 4000));
        await broker.command('up 1');
        break;
      }
      case 'broker-rtt': {
        await broker.command(`rtt 1 ${between(100, 800)}`);
        record(kind);
        await sleep(between(2000, 5000));
        await broker.command('rtt 1 0');
        break;
      }
      case 'duplicate': {
        duplicating = true;
        record(kind);
        await sleep(between(3000, 6000));
        duplicating = false;
        break;
      }
    }
    say(`fault ${kind} (${Date.now() - t0} ms); faults ${faults.count}, transfers ${transfers.length}`);
    await sleep(between(4000, 10000));
  }
}

// ---- settle and check --------------------------------------------------------------------------

const UNFINISHED = ['active', 'preparing', 'precommitted', 'committing', 'aborting'];

async function listAll(state?: string): Promise<any[]> {
  const items: any[] = [];
  let cursor: string | null = null;
  do {
    const q: string = `/v1/transactions?limit=200${state ? `&state=${state}` : ''}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await http('GET', q);
    if (r.status !== 200) throw new Error(`GET ${q}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    items.push(...r.body.items);
    cursor = r.body.nextCursor;
  } while (cursor);
  return items;
}

async function preparedLeft(): Promise<string[]> {
  const left: string[] = [];
  for (const b of BANKS) {
    if (b.engine === 'postgres') {
      const rows = await pgQuery<{ gid: string }>('postgres', 'SELECT gid FROM pg_prepared_xacts WHERE database = $1', [b.db]);
      left.push(...rows.map((r) => `${b.name}: pg_prepared_xacts ${r.gid}`));
    } else {
      const c = await mariaAdmin();
      try {
        left.push(...(await ourXa(c, b.db)).map((x) => `${b.name}: XA RECOVER ${x.gtrid}`));
      } finally {
        await c.end();
      }
    }
  }
  return left;
}

async function unfinishedCount(): Promise<number> {
  let n = 0;
  for (const s of UNFINISHED) n += (await listAll(s)).length;
  return n;
}

async function inDoubtRecords(): Promise<number> {
  let n = 0;
  for (const b of BANKS) {
    const r = await pgQuery<{ n: string }>(b.logDb, `SELECT count(*) AS n FROM tx_participant_log WHERE state IN ('prepared', 'precommitted')`);
    n += Number(r[0].n);
  }
  return n;
}

interface Entry {
  bank: string;
  tx_id: string;
  account: string;
  delta: number;
}

async function readBank(b: (typeof BANKS)[number]): Promise<{ accounts: Map<string, number>; entries: Entry[] }> {
  let acc: { id: string; balance: string | number }[];
  let ent: { tx_id: string; account: string; delta: string | number }[];
  if (b.engine === 'postgres') {
    acc = await pgQuery(b.db, 'SELECT id, balance FROM bank_account');
    ent = await pgQuery(b.db, 'SELECT tx_id::text AS tx_id, account, delta FROM bank_entry');
  } else {
    const c = await mysql.createConnection({ ...MARIADB, database: b.db });
    try {
      acc = (await c.query<any[]>('SELECT id, balance FROM bank_account'))[0];
      ent = (await c.query<any[]>('SELECT tx_id, account, delta FROM bank_entry'))[0];
    } finally {
      await c.end();
    }
  }
  return {
    accounts: new Map(acc.map((a) => [a.id, Number(a.balance)])),
    entries: ent.map((e) => ({ bank: b.name, tx_id: e.tx_id, account: e.account, delta: Number(e.delta) })),
  };
}

async function scanLogs(): Promise<string[]> {
  const bad: string[] = [];
  for (const f of ['coordinator', ...BANKS.map((b) => b.name)]) {
    const rl = createInterface({ input: createReadStream(join(LOG_DIR, `${f}.log`)) });
    for await (const line of rl) {
      if (/PROTOCOL VIOLATION|"alert":"atomicity"|InvariantViolation/.test(line)) bad.push(`${f}.log: ${line.slice(0, 400)}`);
    }
  }
  return bad;
}

async function check(): Promise<{ violations: string[]; committed: number; aborted: number; total: number }> {
  const v: string[] = [];
  const all = await listAll();
  const byId = new Map(all.map((t) => [t.id, t]));
  const banks = new Map<string, Awaited<ReturnType<typeof readBank>>>();
  for (const b of BANKS) banks.set(b.name, await readBank(b));

  // 1. Money is neither made nor lost; no balance is negative; balances agree with the journals.
  let total = 0;
  for (const [name, bank] of banks) {
    for (const [id, bal] of bank.accounts) {
      total += bal;
      if (bal < 0) v.push(`${name}/${id}: negative balance ${bal}`);
      const journal = bank.entries.filter((e) => e.account === id).reduce((s, e) => s + e.delta, 0);
      if (BALANCE + journal !== bal) v.push(`${name}/${id}: balance ${bal} but opening ${BALANCE} + journal ${journal}`);
    }
    if (bank.accounts.size !== ACCOUNTS) v.push(`${name}: ${bank.accounts.size} accounts, expected ${ACCOUNTS}`);
  }
  const expected = BANKS.length * ACCOUNTS * BALANCE;
  if (total !== expected) v.push(`total balance ${total}, expected ${expected} (${total - expected > 0 ? '+' : ''}${total - expected})`);

  // 2. Every transaction in the log finished; committed ones applied at both legs, aborted ones nowhere.
  const entriesByTx = new Map<string, Entry[]>();
  for (const bank of banks.values()) for (const e of bank.entries) entriesByTx.set(e.tx_id, [...(entriesByTx.get(e.tx_id) ?? []), e]);
  let committed = 0;
  let aborted = 0;
  for (const t of all) {
    const es = entriesByTx.get(t.id) ?? [];
    if (t.state === 'committed') {
      committed++;
      if (t.outcome !== 'commit') v.push(`${t.id}: state committed with outcome ${t.outcome}`);
      const debit = t.participants.find((p: any) => p.payload?.op === 'debit');
      const credit = t.participants.find((p: any) => p.payload?.op === 'credit');
      const want = [
        { bank: debit.name, account: debit.payload.account, delta: -debit.payload.amount },
        { bank: credit.name, account: credit.payload.account, delta: credit.payload.amount },
      ];
      for (const w of want) {
        if (!es.some((e) => e.bank === w.bank && e.account === w.account && e.delta === w.delta)) {
          v.push(`${t.id}: committed but ${w.bank}/${w.account} ${w.delta} is not applied (half-applied transfer)`);
        }
      }
      if (es.length !== 2) v.push(`${t.id}: committed with ${es.length} journal entries, expected 2`);
    } else if (t.state === 'aborted') {
      aborted++;
      if (es.length) v.push(`${t.id}: aborted but applied at ${es.map((e) => `${e.bank}/${e.account} ${e.delta}`).join(', ')}`);
    } else {
      v.push(`${t.id}: not finished after settling (state ${t.state}, outcome ${t.outcome})`);
    }
  }
  for (const [txId, es] of entriesByTx) {
    if (!byId.has(txId)) v.push(`${txId}: applied at ${es.map((e) => e.bank).join(', ')} but unknown to the coordinator`);
  }

  // 3. What the clients were told holds.
  for (const t of transfers) {
    if (!t.id || t.seen === 'unknown') continue;
    const logged = byId.get(t.id);
    if (!logged) v.push(`${t.id}: the client saw ${t.seen} but the coordinator has no such transaction`);
    else if ((t.seen === 'commit') !== (logged.outcome === 'commit')) v.push(`${t.id}: the client saw ${t.seen}, the log says ${logged.outcome}`);
    else if (t.seen === 'commit' && (entriesByTx.get(t.id) ?? []).length !== 2) v.push(`${t.id}: the client saw commit but it is not applied at both banks`);
  }

  // 4. No prepared transaction left in any database; no library record in doubt; records agree with the log.
  for (const p of await preparedLeft()) v.push(`prepared transaction left: ${p}`);
  for (const b of BANKS) {
    const recs = await pgQuery<{ tx_id: string; state: string }>(b.logDb, `SELECT tx_id::text AS tx_id, state FROM tx_participant_log WHERE participant = $1`, [b.name]);
    for (const r of recs) {
      const t = byId.get(r.tx_id);
      if (r.state === 'prepared' || r.state === 'precommitted') v.push(`${b.name}: library record of ${r.tx_id} still ${r.state}`);
      else if (r.state === 'committed' && t?.outcome !== 'commit') v.push(`${b.name}: library record of ${r.tx_id} committed, coordinator outcome ${t?.outcome ?? 'none'}`);
      else if (r.state === 'aborted' && t?.outcome === 'commit') v.push(`${b.name}: library record of ${r.tx_id} aborted, coordinator outcome commit`);
    }
  }

  // 5. No process reported a protocol or invariant violation.
  for (const line of await scanLogs()) v.push(`reported: ${line}`);
  return { violations: v, committed, aborted, total: all.length };
}

// ---- main --------------------------------------------------------------------------------------

async function main(): Promise<number> {
  rmSync(LOG_DIR, { recursive: true, force: true });
  mkdirSync(LOG_DIR, { recursive: true });
  say(`seed ${SEED}, duration ${DURATION_S} s, concurrency ${CONCURRENCY}, ${BANKS.length} banks × ${ACCOUNTS} accounts × ${BALANCE}; logs ${LOG_DIR}`);

  await freshPg(COORD_DB);
  for (const b of BANKS) {
    if (b.engine === 'postgres') await freshPg(b.db);
    else {
      await freshMaria(b.db);
      await freshPg(b.logDb);
    }
  }
  coordPort = await freePort();
  coordinatorUrl = `http://127.0.0.1:${coordPort}`;
  const broker = await startBroker(1);
  // Created up front (4 partitions, as auto-creation would), so no consumer waits for auto-creation.
  for (const t of ['coordinator', 'dead-letter', ...BANKS.map((b) => `participant.${b.name}`)]) await broker.command(`create ${PREFIX}${t} 4`);
  const coordinator = coordinatorProcess(broker.bootstrap);
  const banks = BANKS.map((b) => bankProcess(b, broker.bootstrap));
  await coordinator.start();
  await Promise.all(banks.map((b) => b.start()));
  const duplicator = await startDuplicator(broker.bootstrap);
  say(`running: coordinator ${coordinatorUrl}, broker ${broker.bootstrap}, topic prefix ${PREFIX}`);

  const progress = setInterval(() => {
    const seen = { commit: 0, abort: 0, unknown: 0 };
    for (const t of transfers) seen[t.seen]++;
    say(`transfers ${transfers.length} (client saw commit ${seen.commit}, abort ${seen.abort}, unknown ${seen.unknown}); faults ${faults.count}`);
  }, 10_000);
  progress.unref();

  // Banks that kill themselves in the adapter's crash windows (test hook of apps/bank-account) are
  // counted as faults and restarted.
  let injecting = true;
  for (const b of banks) {
    b.onUnexpectedExit = () => {
      if (injecting) {
        faults.count++;
        faults.byKind[`self-kill-${b.label}`] = (faults.byKind[`self-kill-${b.label}`] ?? 0) + 1;
        say(`${b.label} killed itself in a crash window (test hook); restarting`);
      } else say(`${b.label} exited on its own after the faults stopped; restarting`);
      void ensureRunning(b).catch((err) => say(`${b.label} restart failed: ${(err as Error).message}`));
    };
  }
  writeFileSync(CRASH_FILE, JSON.stringify({ rate: CRASH_PER_MILLE / 1000 }));
  const until = Date.now() + DURATION_S * 1000;
  const clients = Array.from({ length: CONCURRENCY }, () => client());
  await injectFaults(until, broker, coordinator, banks);
  while (Date.now() < until) await sleep(200);

  // Stop injecting: everything up, no delay, no more copies; the clients finish what they started.
  const faultsEnd = Date.now();
  injecting = false;
  rmSync(CRASH_FILE, { force: true });
  duplicating = false;
  await broker.command('up 1').catch(() => undefined);
  await broker.command('rtt 1 0').catch(() => undefined);
  rmSync(CRASH_FILE, { force: true });
  for (const p of [coordinator, ...banks]) await ensureRunning(p);
  clientsRunning = false;
  say(`faults stopped (${faults.count}); waiting for clients and for the system to settle`);
  await Promise.all(clients);

  let settled = false;
  let last = '';
  while (Date.now() - faultsEnd < SETTLE_TIMEOUT_S * 1000) {
    try {
      const [unfinished, prepared, doubt] = await Promise.all([unfinishedCount(), preparedLeft(), inDoubtRecords()]);
      last = `unfinished ${unfinished}, prepared ${prepared.length}, in-doubt records ${doubt}`;
      if (unfinished === 0 && prepared.length === 0 && doubt === 0) {
        settled = true;
        break;
      }
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(500);
  }
  const settleS = (Date.now() - faultsEnd) / 1000;
  clearInterval(progress);
  say(settled ? `settled in ${settleS.toFixed(1)} s` : `did NOT settle within ${SETTLE_TIMEOUT_S} s: ${last}`);

  if (args.corrupt) {
    say('--corrupt: adding 7 to bank-a/acct-0 and a lone debit journal entry at bank-c; the check must fail');
    await pgQuery(BANKS[0].db, `UPDATE bank_account SET balance = balance + 7 WHERE id = 'acct-0'`);
    const c = await mysql.createConnection({ ...MARIADB, database: BANKS[2].db });
    try {
      const txId = randomUUID();
      await c.query(`UPDATE bank_account SET balance = balance - 5 WHERE id = 'acct-1'`);
      await c.query(`INSERT INTO bank_entry (tx_id, account, delta) VALUES (?, 'acct-1', -5)`, [txId]);
    } finally {
      await c.end();
    }
  }
  const result = await check();
  await duplicator.stop();
  for (const b of banks) b.onUnexpectedExit = undefined;
  for (const p of [coordinator, ...banks]) await p.stop();
  await broker.stop();

  const seen = { commit: 0, abort: 0, unknown: 0 };
  for (const t of transfers) seen[t.seen]++;
  say(`faults by kind: ${JSON.stringify(faults.byKind)}; messages duplicated: ${faults.duplicated}`);
  say(`restarts: ${[coordinator, ...banks].map((p) => `${p.label} ${p.starts - 1}`).join(', ')}`);
  say(`clients saw: commit ${seen.commit}, abort ${seen.abort}, unknown ${seen.unknown}; log holds ${result.total} transactions`);
  for (const line of result.violations.slice(0, 50)) say(`VIOLATION ${line}`);
  if (result.violations.length > 50) say(`… and ${result.violations.length - 50} more violations`);
  process.stdout.write(
    `transfers: ${result.total}, committed: ${result.committed}, aborted: ${result.aborted}, faults: ${faults.count}, violations: ${result.violations.length}, settle: ${settleS.toFixed(1)} s\n`,
  );
  return result.violations.length > 0 || faults.count === 0 ? 1 : 0;
}

// Ctrl-C: exit through process.on('exit'), which kills the child processes (processes.ts).
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`chaos: could not run: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(3);
  },
);
