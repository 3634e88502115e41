/**
 * `npm run demo`: the coordinator and three example participants (inventory services) as
 * processes, a stream of transactions against them, progress every second, and a table of
 * outcomes and latencies at the end.
 *
 * With nothing set it needs Node only: every process keeps its data in an embedded Postgres
 * (PGlite) under `.data/demo/<name>`, and the protocol runs over HTTP. With DATABASE_URL the
 * coordinator and the participants use that database (their tables do not collide); with
 * KAFKA_BROKERS the protocol runs on Kafka. Other variables (TX_MESSAGE_SECRET,
 * COORDINATOR_API_KEYS, TX_TOPIC_PREFIX, …) are passed on to the processes.
 *
 *   node dist/tools/demo/main.js [--transactions 100] [--rate 3] [--concurrency 8] [--data-dir .data/demo]
 *
 * The stream: most transactions commit; every tenth asks one participant for more than its stock
 * (it votes no); every tenth also enlists `late`, a fourth participant that nobody serves during
 * the stream, with a short timeout (no vote: it aborts at the deadline); `store` is restarted
 * halfway. After the stream `late` starts: the coordinator, which kept resending the aborts,
 * gets its acknowledgements and those transactions finish too. Exit code 0 when every
 * transaction got an outcome and finished, 1 otherwise, 2 on a usage error.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, WriteStream } from 'node:fs';
import { AddressInfo, createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { Result, table } from './report';

/** dist/tools/demo → the repository. */
const ROOT = resolve(__dirname, '..', '..', '..');
const DIST = join(ROOT, 'dist');
const PARTICIPANTS = ['inventory', 'warehouse', 'store'] as const;
/** The participant restarted halfway. */
const RESTARTED = 'store';
/** Enlisted by the transactions meant to time out: nobody serves it until the stream is over. */
const LATE = 'late';
const USAGE = 'usage: demo [--transactions N] [--rate per-second] [--concurrency N] [--data-dir folder]';

interface Options {
  transactions: number;
  rate: number;
  concurrency: number;
  dataDir: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { transactions: 100, rate: 3, concurrency: 8, dataDir: join(ROOT, '.data', 'demo') };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    const value = m?.[2] ?? argv[++i];
    if (!m || value === undefined) usage(`unexpected argument ${JSON.stringify(argv[i] ?? argv[i - 1])}`);
    const num = (min: number, max: number) => {
      const n = Number(value);
      if (!Number.isFinite(n) || n < min || n > max) usage(`--${m![1]} must be a number between ${min} and ${max}`);
      return n;
    };
    switch (m![1]) {
      case 'transactions': o.transactions = Math.round(num(1, 100_000)); break;
      case 'rate': o.rate = num(0.1, 1000); break;
      case 'concurrency': o.concurrency = Math.round(num(1, 1000)); break;
      case 'data-dir': o.dataDir = resolve(value!); break;
      default: usage(`unknown option --${m![1]}`);
    }
  }
  return o;
}

function usage(problem: string): never {
  process.stderr.write(`demo: ${problem}\n${USAGE}\n`);
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => process.stdout.write(`${line}\n`);

/** A TCP port that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => res(port));
    });
  });
}

/** One of the demo's processes: a built app from dist/, its output appended to a log file. */
class Proc {
  private child?: ChildProcess;
  private exit?: Promise<number | null>;
  private lines: string[] = [];
  private readonly watchers = new Set<() => void>();
  private readonly log: WriteStream;
  private stopping = false;
  /** Called when the process exits without being asked to. */
  onCrash?: (code: number | null) => void;

  constructor(
    readonly name: string,
    private readonly entry: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    readonly logFile: string,
  ) {
    this.log = createWriteStream(logFile, { flags: 'a' });
  }

  start(): void {
    this.stopping = false;
    this.lines = [];
    const child = spawn(process.execPath, [join(DIST, this.entry), ...this.args], { cwd: ROOT, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    let tail = '';
    const onData = (d: Buffer) => {
      this.log.write(d);
      const parts = (tail + d.toString()).split('\n');
      tail = parts.pop() ?? '';
      this.lines.push(...parts);
      this.watchers.forEach((w) => w());
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exit = new Promise((res) =>
      child.once('exit', (code) => {
        live.delete(child);
        this.watchers.forEach((w) => w());
        if (!this.stopping) this.onCrash?.(code);
        res(code);
      }),
    );
  }

  /** Resolves with the first line matching `re` since the last start. */
  waitFor(re: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((res, rej) => {
      const check = () => {
        const line = this.lines.find((l) => re.test(l));
        if (line !== undefined) return done(() => res(line));
        if (this.child?.exitCode !== null || this.child?.signalCode !== null) {
          done(() => rej(new Error(`${this.name} exited while starting; see ${rel(this.logFile)}:\n  ${this.lines.slice(-5).join('\n  ')}`)));
        }
      };
      const timer = setTimeout(() => done(() => rej(new Error(`${this.name} did not start within ${timeoutMs / 1000} s; see ${rel(this.logFile)}`))), timeoutMs);
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.watchers.delete(check);
        f();
      };
      this.watchers.add(check);
      check();
    });
  }

  /** SIGTERM and wait for the exit (SIGKILL after `timeoutMs`); resolves with the exit code. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (!this.child || !this.exit) return null;
    this.stopping = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), timeoutMs);
    const code = await this.exit;
    clearTimeout(timer);
    return code;
  }
}

const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((c) => c.kill('SIGKILL')));
const rel = (p: string) => relative(process.cwd(), p) || '.';

/**
 * Embedded mode: a fresh Postgres data folder for each process, copied from a template made
 * once (creating a cluster is most of PGlite's start-up time) and kept in `<dataDir>/template`.
 */
async function prepareEmbedded(dataDir: string, names: string[]): Promise<void> {
  const template = join(dataDir, 'template');
  const pgliteMain = require.resolve('@electric-sql/pglite');
  const pkg = JSON.parse(readFileSync(join(dirname(pgliteMain), '..', 'package.json'), 'utf8')) as { version: string };
  const marker = join(template, 'pglite-version');
  if (!existsSync(marker) || readFileSync(marker, 'utf8') !== pkg.version) {
    say('  creating the embedded Postgres template (first run only) …');
    rmSync(template, { recursive: true, force: true });
    mkdirSync(template, { recursive: true });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { PGlite } = require('@electric-sql/pglite') as typeof import('@electric-sql/pglite');
    const db = await PGlite.create(join(template, 'pgdata'));
    await db.close();
    writeFileSync(marker, pkg.version);
  }
  for (const name of names) {
    rmSync(join(dataDir, name), { recursive: true, force: true });
    cpSync(join(template, 'pgdata'), join(dataDir, name, 'pgdata'), { recursive: true });
  }
}

type Kind = 'commit' | 'vote-no' | 'timeout';

/** Every tenth votes no, every tenth times out, the rest should commit. */
function kindOf(i: number): Kind {
  if (i % 10 === 3) return 'vote-no';
  if (i % 10 === 7) return 'timeout';
  return 'commit';
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const env = { ...process.env };
  delete env.PORT; // each process gets its own
  const embedded = !env.DATABASE_URL;
  const kafka = !!env.KAFKA_BROKERS;
  const apiKey = env.COORDINATOR_API_KEYS?.split(',')[0];
  const run = randomBytes(3).toString('hex');
  const logs = join(o.dataDir, 'logs');
  mkdirSync(logs, { recursive: true });

  say(`txcoord demo (run ${run}): a coordinator and ${PARTICIPANTS.length} example participants (${PARTICIPANTS.join(', ')})`);
  say(`  databases: ${embedded ? `embedded Postgres (PGlite) under ${rel(o.dataDir)}/<name>` : 'DATABASE_URL (shared by all four; their tables do not collide)'}`);
  say(`  protocol:  ${kafka ? `Kafka at ${env.KAFKA_BROKERS}` : 'HTTP (no KAFKA_BROKERS)'}`);
  say(`  stream:    ${o.transactions} transactions at ${o.rate}/s, at most ${o.concurrency} at once: most commit, 1 in 10 asks for more than the stock`);
  say(`             (a no vote), 1 in 10 enlists "${LATE}" that nobody serves yet (times out); ${RESTARTED} is restarted halfway`);
  say(`  logs:      ${rel(logs)}/`);
  if (!existsSync(join(DIST, 'apps', 'coordinator', 'main.js'))) usage('dist/ is missing: run `npm run build` first (npm run demo does)');

  const names = ['coordinator', ...PARTICIPANTS, LATE];
  if (embedded) await prepareEmbedded(o.dataDir, names);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const coordinator = new Proc('coordinator', 'apps/coordinator/main.js', [], {
    ...env,
    PORT: String(port),
    COORDINATOR_URL: base,
    TX_EMBEDDED_DATA_DIR: join(o.dataDir, 'coordinator'),
    LOG_LEVEL: env.LOG_LEVEL || 'info',
    // Quicker than the defaults, so that restarted and late participants catch up within seconds.
    TX_RESEND_MAX_MS: env.TX_RESEND_MAX_MS || '2000',
    TX_BREAKER_RESET_MS: env.TX_BREAKER_RESET_MS || '1000',
  }, join(logs, 'coordinator.log'));

  const participants = new Map<string, Proc>();
  const urls = new Map<string, string>();
  for (const name of [...PARTICIPANTS, LATE]) {
    const args = ['--name', name, '--stock', '1000'];
    if (!kafka) {
      const p = await freePort();
      args.push('--port', String(p));
      urls.set(name, `http://127.0.0.1:${p}`);
    }
    if (embedded) args.push('--data-dir', join(o.dataDir, name));
    participants.set(name, new Proc(name, 'apps/participant-example/main.js', args, {
      ...env,
      COORDINATOR_URL: base,
      ...(apiKey ? { COORDINATOR_API_KEY: apiKey } : {}),
      LOG_LEVEL: env.LOG_LEVEL || 'info',
    }, join(logs, `${name}.log`)));
  }
  const late = participants.get(LATE)!;
  participants.delete(LATE);

  const all = [coordinator, ...participants.values(), late];
  let failed: string | null = null;
  for (const p of all) p.onCrash = (code) => (failed ??= `${p.name} exited on its own (code ${code}); see ${rel(p.logFile)}`);
  const stopAll = () => Promise.all(all.map((p) => p.stop()));
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));

  const started = Date.now();
  say('\nstarting …');
  [coordinator, ...participants.values()].forEach((p) => p.start());
  try {
    await Promise.all([
      coordinator.waitFor(/"recovery finished"/, 120_000),
      ...[...participants.values()].map((p) => p.waitFor(/"participant ready"/, 120_000)),
    ]);
  } catch (err) {
    say(`demo: ${(err as Error).message}`);
    await stopAll();
    process.exit(1);
  }
  say(`  all four are up after ${((Date.now() - started) / 1000).toFixed(1)} s; API documentation at ${base}/docs\n`);

  const headers: Record<string, string> = { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
  const call = async (method: string, path: string, body?: unknown, extra: Record<string, string> = {}) => {
    const r = await fetch(base + path, { method, headers: { ...headers, ...extra }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };

  /** One transaction: begin (with its participants), commit, and what the client saw. */
  const runOne = async (i: number): Promise<Result & { id?: string }> => {
    const kind = kindOf(i);
    const names = [...PARTICIPANTS].filter((_, k) => i % 3 === k || (i + 1) % 3 === k || i % 4 === 0);
    const enlist: { name: string; url?: string; payload: Record<string, unknown> }[] = names.map((name, k) => ({
      name,
      ...(urls.has(name) ? { url: urls.get(name) } : {}),
      payload: { sku: `demo-${run}-sku${i % 7}`, qty: kind === 'vote-no' && k === 0 ? 1_000_000 : 1 + (i % 3) },
    }));
    if (kind === 'timeout') enlist.push({ name: LATE, ...(urls.has(LATE) ? { url: urls.get(LATE) } : {}), payload: { sku: `demo-${run}-late`, qty: 1 } });
    const t0 = Date.now();
    const error = (reason: string) => ({ outcome: 'error' as const, reason, latencyMs: Date.now() - t0 });
    try {
      const begun = await call('POST', '/v1/transactions', {
        protocol: kind === 'commit' && i % 4 === 1 ? '3pc' : '2pc',
        timeoutMs: kind === 'timeout' ? 1500 : 15_000,
        participants: enlist,
        metadata: { demo: run, n: i },
      }, { 'Idempotency-Key': `demo-${run}-${i}` });
      if (begun.status !== 201) return error(`begin answered ${begun.status}`);
      const id = begun.body.id as string;
      let tx = (await call('POST', `/v1/transactions/${id}/commit`)).body;
      while (tx?.outcome === null && Date.now() - t0 < 60_000) {
        await sleep(200);
        tx = (await call('GET', `/v1/transactions/${id}`)).body;
      }
      if (!tx?.outcome) return { ...error('no outcome within 60 s'), id };
      return { outcome: tx.outcome, reason: tx.reason, latencyMs: Date.now() - t0, id };
    } catch (err) {
      return error(`request failed: ${(err as Error).message}`);
    }
  };

  const results: (Result & { id?: string })[] = [];
  let inFlight = 0;
  let begun = 0;
  const streamStart = Date.now();
  const progress = setInterval(() => {
    const committed = results.filter((r) => r.outcome === 'commit').length;
    const aborted = results.filter((r) => r.outcome === 'abort').length;
    const errors = results.length - committed - aborted;
    const secs = Math.round((Date.now() - streamStart) / 1000);
    say(`[${String(secs).padStart(3)}s] begun ${begun}/${o.transactions}  committed ${committed}  aborted ${aborted}  in flight ${inFlight}${errors ? `  errors ${errors}` : ''}`);
  }, 1000);

  const restart = async () => {
    const store = participants.get(RESTARTED)!;
    const t = Date.now();
    say(`  >> restarting ${RESTARTED} (SIGTERM, then start again); its transactions wait for it`);
    await store.stop();
    store.start();
    await store.waitFor(/"participant ready"/, 120_000).then(
      () => say(`  >> ${RESTARTED} is back after ${((Date.now() - t) / 1000).toFixed(1)} s`),
      (err) => (failed ??= (err as Error).message),
    );
  };

  const pending = new Set<Promise<void>>();
  let restarting: Promise<void> | undefined;
  for (let i = 0; i < o.transactions && !failed; i++) {
    const due = streamStart + (i * 1000) / o.rate;
    if (due > Date.now()) await sleep(due - Date.now());
    while (inFlight >= o.concurrency) await sleep(10);
    if (i === Math.floor(o.transactions / 2)) restarting = restart();
    inFlight++;
    begun++;
    const p: Promise<void> = runOne(i).then((r) => {
      results.push(r);
      inFlight--;
      pending.delete(p);
    });
    pending.add(p);
  }
  await Promise.all(pending);
  await restarting;

  // The aborted transactions that enlisted `late` wait for its acknowledgement: start it.
  const lateStart = Date.now();
  say(`  >> starting ${LATE}: the coordinator keeps resending the aborts it was never acknowledged`);
  late.start();
  await late.waitFor(/"participant ready"/, 120_000).then(
    () => say(`  >> ${LATE} is up after ${((Date.now() - lateStart) / 1000).toFixed(1)} s`),
    (err) => (failed ??= (err as Error).message),
  );

  // Every transaction with an outcome goes on to committed/aborted once each participant acknowledged.
  const ids = results.flatMap((r) => (r.id ? [r.id] : []));
  const until = Date.now() + 30_000;
  let unfinished = ids;
  while (unfinished.length && Date.now() < until && !failed) {
    const states = await Promise.all(unfinished.map(async (id) => [id, (await call('GET', `/v1/transactions/${id}`)).body?.state] as const));
    unfinished = states.filter(([, s]) => s !== 'committed' && s !== 'aborted').map(([id]) => id);
    if (unfinished.length) await sleep(500);
  }
  clearInterval(progress);

  const committed = results.filter((r) => r.outcome === 'commit').length;
  const aborted = results.filter((r) => r.outcome === 'abort').length;
  say(`\n${results.length} transactions in ${((Date.now() - streamStart) / 1000).toFixed(1)} s: committed ${committed}, aborted ${aborted}` +
    `${results.length - committed - aborted ? `, without an outcome ${results.length - committed - aborted}` : ''}; ` +
    `${unfinished.length ? `${unfinished.length} not yet finished (acknowledgements outstanding)` : 'every one finished (all participants acknowledged)'}`);
  say('latency: from the begin request to the answer carrying the outcome\n');
  for (const line of table(results)) say(`  ${line}`);
  for (const r of results.filter((x) => x.outcome === 'error').slice(0, 5)) say(`  error: ${r.reason}`);

  say('\nstopping (SIGTERM: each process drains and exits) …');
  const codes = await Promise.all(all.map(async (p) => [p.name, await p.stop()] as const));
  const unclean = codes.filter(([, c]) => c !== 0);
  say(unclean.length ? `  not clean: ${unclean.map(([n, c]) => `${n} exited ${c}`).join(', ')}` : '  all stopped cleanly');
  if (failed) say(`demo failed: ${failed}`);
  const ok = !failed && unfinished.length === 0 && committed + aborted === results.length && unclean.length === 0;
  say(ok ? 'demo finished' : 'demo finished with problems (see above and the logs)');
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`demo: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
