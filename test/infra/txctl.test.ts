/**
 * txctl against the built coordinator on Kafka (the test broker) and Postgres. Each command runs as
 * its own process (dist/tools/txctl/main.js, as `npx txctl` runs it); its output and exit code are
 * checked, and so are the rows it leaves in tx_audit. A scripted participant ("fake") on the test
 * broker votes yes and acknowledges only when told to, which leaves transactions stuck in
 * `committing` for an operator to handle. The coordinator's own resend timer and sweep are set to
 * a minute and more, so every extra decision the fake receives was sent by `txctl resend`.
 */
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ProtocolMessage, topics } from '../../libs/protocol';
import { KafkaTransport } from '../../libs/transport/kafka-transport';
import { run } from '../../tools/txctl/main';
import { startTestBroker, TestBroker } from '../support/broker';
import { api, startCoordinator, TestCoordinator, uniquePrefix } from '../support/coordinator';
import { dropCreatedDatabases, query } from '../support/postgres';
import { eventually } from '../support/processes';

const ROOT = join(__dirname, '..', '..');
const RUN = `txctl_${randomUUID().slice(0, 8)}`;
const KEY = 'txctl-test-key-0123456789';
const ACTOR = `key:${createHash('sha256').update(KEY).digest('hex').slice(0, 12)}`;

let broker: TestBroker;
let coordinator: TestCoordinator;
let fake: KafkaTransport;
let prefix: string;
/** What the fake participant received, and whether it acknowledges decisions. */
const received: ProtocolMessage[] = [];
let acking = false;

beforeAll(async () => {
  broker = await startTestBroker();
  prefix = uniquePrefix();
  coordinator = await startCoordinator({
    brokers: broker.bootstrap, prefix, database: `${RUN}_coordinator`,
    env: { COORDINATOR_API_KEYS: KEY, TX_RESEND_INITIAL_MS: '60000', TX_RESEND_MAX_MS: '60000', TX_SWEEP_INTERVAL_MS: '600000' },
  });
  fake = new KafkaTransport({
    brokers: broker.brokers, clientId: 'fake', groupId: `${prefix}participant.fake`, listenTopic: topics(prefix).participant('fake'),
    topicPrefix: prefix, maxWaitTimeInMs: 5, sessionTimeoutMs: 6000,
  });
  await fake.start(async (m) => {
    received.push(m);
    const base = { v: 1 as const, txId: m.txId, participant: m.participant, protocol: m.protocol, sentAt: new Date().toISOString() };
    if (m.type === 'prepare') await fake.send([{ ...base, type: 'vote', vote: 'yes' }]);
    if ((m.type === 'commit' || m.type === 'abort') && acking) await fake.send([{ ...base, type: 'ack', of: m.type }]);
  });
}, 120_000);

afterAll(async () => {
  await fake?.stop();
  await coordinator?.stop();
  await broker?.stop();
  await dropCreatedDatabases();
});

interface Result { code: number | null; stdout: string; stderr: string }

/** Runs the built txctl as a process, as an operator would. */
function txctl(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'tools', 'txctl', 'main.js'), ...args], {
      env: { PATH: process.env.PATH ?? '', COORDINATOR_URL: coordinator.url, TXCTL_API_KEY: KEY, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const auth = { authorization: `Bearer ${KEY}` };
const getTx = async (id: string) => (await api(coordinator.url, 'GET', `/v1/transactions/${id}`, undefined, auth)).body;
const decisions = (id: string, type: string) => received.filter((m) => m.txId === id && m.type === type).length;
const audit = (id: string) => query<{ actor: string; action: string; result: string; reason: string | null; detail: string | null; at: Date }>(
  coordinator.env.DATABASE_URL, 'SELECT actor, action, result, reason, detail, at FROM tx_audit WHERE tx_id = $1 ORDER BY id', [id]);

async function begin(participants: string[], timeoutMs = 120_000): Promise<string> {
  const r = await api(coordinator.url, 'POST', '/v1/transactions', { timeoutMs, participants: participants.map((name) => ({ name, payload: { n: 1 } })) }, auth);
  expect(r.status).toBe(201);
  return r.body.id;
}

/** A transaction the fake voted yes on and has not acknowledged: committing, outcome commit. */
async function stuckCommit(): Promise<string> {
  const id = await begin(['fake']);
  const r = await api(coordinator.url, 'POST', `/v1/transactions/${id}/commit`, undefined, auth);
  expect(r.body.outcome).toBe('commit');
  await eventually(async () => decisions(id, 'commit'), (n) => n === 1, 20_000, 'the first commit at the fake');
  expect((await getTx(id)).state).toBe('committing');
  return id;
}

describe('txctl', () => {
  it('resend sends the recorded commit again now, to the participant that has not acknowledged', async () => {
    const id = await stuckCommit();
    const r = await txctl(['resend', id, '--reason', 'fake lost its commit']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(new RegExp(`resent to 1 participant\\(s\\): commit:fake \\(transaction ${id}, committing, outcome commit\\)`));
    await eventually(async () => decisions(id, 'commit'), (n) => n === 2, 20_000, 'the resent commit at the fake');

    const rows = await audit(id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: ACTOR, action: 'resend', result: 'resent', reason: 'fake lost its commit', detail: 'sent commit:fake' });
    expect(Date.now() - rows[0].at.getTime()).toBeLessThan(60_000);
  });

  it('abort refuses a transaction whose outcome is commit, says why, and changes nothing', async () => {
    const id = await stuckCommit();
    const r = await txctl(['abort', id]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`txctl: refused (409): Transaction ${id} has committed (outcome commit): it cannot be aborted.`);
    expect(await getTx(id)).toMatchObject({ state: 'committing', outcome: 'commit' });
    expect(decisions(id, 'abort')).toBe(0);
    expect(await audit(id)).toEqual([expect.objectContaining({ actor: ACTOR, action: 'abort', result: 'refused', detail: 'the transaction has already committed' })]);
  });

  it('abort decides abort for a transaction without a decision; again is a no-op; resend then resends the abort', async () => {
    const id = await begin(['fake', 'nobody']);
    const aborted = await txctl(['abort', id, '--reason', 'client gone']);
    expect(aborted).toMatchObject({ code: 0, stderr: '' });
    expect(aborted.stdout.trim()).toBe(`aborted transaction ${id} (now aborting; abort sent to 2 participant(s))`);
    expect(await getTx(id)).toMatchObject({ state: 'aborting', outcome: 'abort', reason: 'client-abort' });
    await eventually(async () => decisions(id, 'abort'), (n) => n === 1, 20_000, 'the abort at the fake');

    const again = await txctl(['abort', id]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`transaction ${id} was already aborted (aborting, reason client-abort)`);

    const resent = await txctl(['resend', id]);
    expect(resent.code).toBe(0);
    expect(resent.stdout).toContain('resent to 2 participant(s): abort:fake, abort:nobody');
    await eventually(async () => decisions(id, 'abort'), (n) => n === 2, 20_000, 'the resent abort at the fake');

    expect((await audit(id)).map((a) => [a.action, a.result, a.reason])).toEqual([
      ['abort', 'aborted', 'client gone'], ['abort', 'already-aborted', null], ['resend', 'resent', null],
    ]);
  });

  it('resend refuses a transaction that has no decision yet', async () => {
    const id = await begin(['nobody']);
    const r = await txctl(['resend', id]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`has no decision yet (state active): there is no outcome to resend`);
    expect(await getTx(id)).toMatchObject({ state: 'active', outcome: null });
    expect(await audit(id)).toEqual([expect.objectContaining({ action: 'resend', result: 'refused', detail: 'no decision yet (state active)' })]);
  });

  it('follow prints each change and ends when the transaction finishes', async () => {
    const id = await stuckCommit();
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'tools', 'txctl', 'main.js'), 'follow', id, '--interval', '100'], {
      env: { PATH: process.env.PATH ?? '', COORDINATOR_URL: coordinator.url, TXCTL_API_KEY: KEY }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await eventually(async () => out, (o) => o.includes('committing'), 20_000, 'the first follow line');
      acking = true;
      // The fake acknowledges the next commit it gets; the operator sends it now.
      expect((await txctl(['resend', id])).code).toBe(0);
      expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 20_000))])).toBe(0);
    } finally {
      acking = false;
      child.kill('SIGKILL');
    }
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^\S+Z +committing +outcome=commit +votes 1\/1 +acks 0\/1$/);
    expect(lines[lines.length - 1]).toMatch(/ committed +outcome=commit +votes 1\/1 +acks 1\/1 +\[fake acked\]$/);
    expect((await getTx(id)).state).toBe('committed');
  });

  it('list and show print the transactions; --json prints the API\'s JSON', async () => {
    const id = await stuckCommit();
    const list = await txctl(['list', '--participant', 'fake', '--state', 'committing', '--limit', '500']);
    expect(list.code).toBe(0);
    const [header, ...rows] = list.stdout.trim().split('\n');
    expect(header).toMatch(/^ID +STATE +OUTCOME +REASON +CREATED +PARTICIPANTS$/);
    expect(rows.find((l) => l.startsWith(id))).toMatch(/committing +commit +- +\S+Z +fake:yes$/);
    expect(rows.every((l) => / committing /.test(l))).toBe(true);

    const show = await txctl(['show', id]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`id:           ${id}`);
    expect(show.stdout).toContain('outcome:      commit');
    expect(show.stdout).toMatch(/\n {2}fake +yes +no +- +\{"n":1\}\n?$/);

    const json = JSON.parse((await txctl(['show', id, '--json'])).stdout);
    expect(json).toMatchObject({ id, state: 'committing', outcome: 'commit', participants: [{ name: 'fake', vote: 'yes', acked: false }] });
    const all = JSON.parse((await txctl(['list', '--json', '--limit', '2'])).stdout);
    expect(all).toHaveLength(2);
  });

  it('audit lists the actions newest first, for one transaction or all', async () => {
    const r = await txctl(['audit', '--limit', '500']);
    expect(r.code).toBe(0);
    const [header, ...rows] = r.stdout.trim().split('\n');
    expect(header).toMatch(/^AT +ACTOR +ACTION +TRANSACTION +RESULT +REASON +DETAIL$/);
    expect(rows.length).toBeGreaterThanOrEqual(7);
    expect(rows.every((l) => l.includes(ACTOR))).toBe(true);
    const json = JSON.parse((await txctl(['audit', '--json'])).stdout);
    const times = json.map((a: { at: string }) => a.at);
    expect([...times].sort().reverse()).toEqual(times);
  });

  it('reports an unknown transaction (4), a wrong key (1), an unreachable coordinator (1) and bad usage (2)', async () => {
    const unknown = randomUUID();
    const missing = await txctl(['abort', unknown]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain(`No transaction ${unknown}.`);
    expect(await audit(unknown)).toEqual([expect.objectContaining({ action: 'abort', result: 'not-found' })]);

    const wrongKey = await txctl(['list'], { TXCTL_API_KEY: 'not-the-key-0123456789' });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toContain('unauthorized (401)');
    expect(wrongKey.stderr).toContain('TXCTL_API_KEY');

    const down = await txctl(['list'], { COORDINATOR_URL: 'http://127.0.0.1:9' });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('cannot reach the coordinator at http://127.0.0.1:9');

    const usage = await txctl(['abort', 'not-a-uuid']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('"not-a-uuid" is not a transaction id');
  });

  it('checks its arguments before calling anyone', async () => {
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const env = { COORDINATOR_URL: 'http://127.0.0.1:9' };
    expect(await run([], env, io)).toBe(2);
    expect(await run(['--help'], env, io)).toBe(0);
    expect(lines.join('\n')).toContain('usage: txctl <command>');
    for (const bad of [['frob'], ['show'], ['list', '--state', 'done'], ['list', '--limit', '0'], ['follow', randomUUID(), '--timeout', 'x'],
      ['list', '--reason', 'x'], ['show', randomUUID(), 'extra'], ['list', '--bogus'], ['list', '--url', 'ftp://x']]) {
      lines.length = 0;
      expect([bad, await run(bad, env, io)]).toEqual([bad, 2]);
      expect(lines.join('\n')).toMatch(/^txctl: /);
    }
  });
});
