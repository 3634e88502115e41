/**
 * The example member service as a process: apps/participant-example/main.ts compiled on the fly
 * (only its own import graph, into a temporary directory), started the way deployments start it,
 * against real Postgres and a real Kafka-protocol broker, with signed messages.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ts from 'typescript';
import { topics } from '../../libs/protocol';
import { startTestBroker, TestBroker } from '../support/broker';
import { createTestDatabase, FakeCoordinator, msg, newTxId, sleep, TestDatabase, uniquePrefix } from './support';

jest.setTimeout(90_000);

const ROOT = resolve(__dirname, '..', '..');
let outDir: string;
let mainJs: string;

/** Compiles main.ts and what it imports with the project's compiler options. */
function compileExample(): void {
  outDir = mkdtempSync(join(tmpdir(), 'txp-example-'));
  const configPath = join(ROOT, 'tsconfig.json');
  const config = ts.readConfigFile(configPath, ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
  const program = ts.createProgram([join(ROOT, 'apps', 'participant-example', 'main.ts')], {
    ...parsed.options,
    outDir,
    rootDir: ROOT,
    sourceMap: false,
    declaration: false,
    noEmitOnError: true,
    types: ['node'],
  });
  const result = program.emit();
  const errors = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (result.emitSkipped || errors.length) {
    throw new Error(`compiling the example failed:\n${ts.formatDiagnostics(errors, {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => ROOT,
      getNewLine: () => '\n',
    })}`);
  }
  mainJs = join(outDir, 'apps', 'participant-example', 'main.js');
}

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string;
  exited: Promise<number | null>;
}

function run(args: string[], env: Record<string, string | undefined>): Run {
  const child = spawn(process.execPath, [mainJs, ...args], {
    // Compiled outside the repository: let it find the repository's node_modules.
    env: { PATH: process.env.PATH, NODE_PATH: join(ROOT, 'node_modules'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const r: Run = {
    child,
    stdout: [],
    stderr: '',
    exited: new Promise((res) => child.once('exit', (code) => res(code))),
  };
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    const parts = (partial + c).split('\n');
    partial = parts.pop()!;
    r.stdout.push(...parts);
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (r.stderr += c));
  return r;
}

async function waitForLine(r: Run, re: RegExp, timeoutMs = 30_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const line = r.stdout.find((l) => re.test(l));
    if (line) return line;
    if (r.child.exitCode !== null) throw new Error(`exited with ${r.child.exitCode}: ${r.stderr}`);
    if (Date.now() > until) throw new Error(`no line matching ${re} in ${timeoutMs} ms; stderr: ${r.stderr}`);
    await sleep(25);
  }
}

beforeAll(() => compileExample());
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

describe('participant-example configuration', () => {
  const env = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', KAFKA_BROKERS: '127.0.0.1:1' };

  it.each([
    ['no --name', [], env, /--name is required/],
    ['a bad --name', ['--name', 'has space'], env, /--name "has space" is invalid/],
    ['a bad --stock', ['--name', 'inv', '--stock', '-3'], env, /--stock/],
    ['a DATABASE_URL of another scheme', ['--name', 'inv'], { ...env, DATABASE_URL: 'mysql://x/y' }, /DATABASE_URL must be a postgres/],
    ['an empty --data-dir (the embedded Postgres without DATABASE_URL)', ['--name', 'inv', '--data-dir', ' '], { KAFKA_BROKERS: '127.0.0.1:1' }, /--data-dir must be a folder path/],
    ['a bad --port', ['--name', 'inv', '--port', '70000'], env, /--port must be an integer between 1 and 65535/],
    ['a bad COORDINATOR_URL without KAFKA_BROKERS (HTTP)', ['--name', 'inv'], { DATABASE_URL: env.DATABASE_URL, COORDINATOR_URL: 'nope' }, /COORDINATOR_URL must be an http\(s\) URL/],
    ['a bad PORT without KAFKA_BROKERS (HTTP)', ['--name', 'inv'], { DATABASE_URL: env.DATABASE_URL, PORT: 'eighty' }, /PORT must be an integer port/],
    ['a malformed KAFKA_BROKERS', ['--name', 'inv'], { ...env, KAFKA_BROKERS: 'kafka://x' }, /KAFKA_BROKERS must be/],
    ['a short TX_MESSAGE_SECRET', ['--name', 'inv'], { ...env, TX_MESSAGE_SECRET: 'short' }, /TX_MESSAGE_SECRET must be at least 16/],
  ])('exits non-zero with one clear line for %s', async (_what, args, e, expected) => {
    const r = run(args as string[], e);
    const code = await r.exited;
    expect(code).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^participant-example: configuration error: /);
    expect(lines[0]).toMatch(expected);
  });
});

describe('participant-example service', () => {
  const NAME = 'inventory';
  const SECRET = 'example-secret-0123456789';
  let broker: TestBroker;
  let db: TestDatabase;
  let prefix: string;
  let coordinator: FakeCoordinator;
  let proc: Run | undefined;

  beforeAll(async () => {
    broker = await startTestBroker();
    db = await createTestDatabase('example');
    prefix = uniquePrefix('e');
    await broker.createTopic(topics(prefix).coordinator, 1);
    await broker.createTopic(topics(prefix).participant(NAME), 1);
    coordinator = await FakeCoordinator.start(broker, prefix, { secret: SECRET });
  });

  afterAll(async () => {
    if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
    await coordinator?.stop();
    await db?.drop();
    await broker?.stop();
  });

  const stock = async (sku: string) =>
    (await db.ds.query(`SELECT qty FROM example_stock WHERE participant = $1 AND sku = $2`, [NAME, sku]))[0]?.qty;
  const reservations = (txId: string) =>
    db.ds.query(`SELECT sku, qty FROM example_reservation WHERE tx_id = $1`, [txId]);

  it('reserves, commits and releases stock through the protocol, then stops on SIGTERM', async () => {
    proc = run(['--name', NAME, '--stock', '5'], {
      DATABASE_URL: db.url,
      KAFKA_BROKERS: broker.bootstrap,
      TX_TOPIC_PREFIX: prefix,
      TX_MESSAGE_SECRET: SECRET,
      KAFKA_MAX_WAIT_MS: '5',
    });
    const ready = JSON.parse(await waitForLine(proc, /ready/));
    expect(ready).toMatchObject({ msg: 'participant ready', participant: NAME });

    const t1 = newTxId();
    await coordinator.send(msg.prepare(t1, NAME, { sku: 'A1', qty: 3 }));
    expect(await coordinator.vote(t1)).toMatchObject({ vote: 'yes' });
    expect(await stock('A1')).toBe(2);
    expect(await reservations(t1)).toEqual([{ sku: 'A1', qty: 3 }]);

    const t2 = newTxId();
    await coordinator.send(msg.prepare(t2, NAME, { sku: 'A1', qty: 3 }));
    expect(await coordinator.vote(t2)).toMatchObject({ vote: 'no', reason: 'insufficient-stock' });

    const t3 = newTxId();
    await coordinator.send(msg.prepare(t3, NAME, { sku: 'A1' }));
    expect(await coordinator.vote(t3)).toMatchObject({ vote: 'no', reason: 'invalid-payload' });

    await coordinator.send(msg.commit(t1, NAME));
    await coordinator.ack(t1, 'commit');
    expect(await reservations(t1)).toEqual([]);
    expect(await stock('A1')).toBe(2);

    const t4 = newTxId();
    await coordinator.send(msg.prepare(t4, NAME, { sku: 'A1', qty: 2 }));
    expect((await coordinator.vote(t4)).vote).toBe('yes');
    expect(await stock('A1')).toBe(0);
    await coordinator.send(msg.abort(t4, NAME, 'vote-no:payments'));
    await coordinator.ack(t4, 'abort');
    expect(await stock('A1')).toBe(2);
    expect(await reservations(t4)).toEqual([]);

    // Every protocol line is JSON with the txId.
    const t1Lines = proc.stdout.filter((l) => l.includes(t1)).map((l) => JSON.parse(l));
    expect(t1Lines.length).toBeGreaterThanOrEqual(3);
    for (const l of t1Lines) expect(l).toMatchObject({ txId: t1, participant: NAME });

    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.stdout.some((l) => /participant stopped/.test(l))).toBe(true);
    expect(proc.stderr).toBe('');
  });
});
