/**
 * End to end over Kafka: the built coordinator and three example participants as processes, a real
 * Postgres for each, and the Kafka test broker. Everything is observed from outside: the REST API,
 * the participants' own databases, and the topics.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, Producer } from 'kafkajs';
import { encodeMessage, topics } from '../../libs/protocol';
import { startTestBroker, TestBroker } from '../support/broker';
import { api, startCoordinator, startParticipant, TestCoordinator, uniquePrefix } from '../support/coordinator';
import { dropCreatedDatabases, freshDatabase, query } from '../support/postgres';
import { eventually, RunningProcess } from '../support/processes';

const NAMES = ['inventory', 'payments', 'shipping'];
/** Databases are named per run, so that concurrent runs of this suite cannot drop each other's. */
const RUN = `txe2e_${randomUUID().slice(0, 8)}`;
let broker: TestBroker;
let coordinator: TestCoordinator;
let prefix: string;
const dbs: Record<string, string> = {};
const participants: Record<string, RunningProcess> = {};
let kafka: Kafka;
let producer: Producer;

beforeAll(async () => {
  broker = await startTestBroker();
  prefix = uniquePrefix();
  coordinator = await startCoordinator({ brokers: broker.bootstrap, prefix, database: `${RUN}_coordinator` });
  for (const name of NAMES) {
    dbs[name] = await freshDatabase(`${RUN}_${name}`);
    participants[name] = await startParticipant(name, { brokers: broker.bootstrap, prefix, databaseUrl: dbs[name] });
  }
  kafka = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING });
  producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
}, 120_000);

afterAll(async () => {
  await producer?.disconnect();
  await Promise.all(Object.values(participants).map((p) => p.stop()));
  await coordinator?.stop();
  await broker?.stop();
  await dropCreatedDatabases();
});

const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => api(coordinator.url, method, path, body, headers);
const getTx = async (id: string) => (await call('GET', `/v1/transactions/${id}`)).body;
const finished = (id: string) => eventually(() => getTx(id), (t) => t.state === 'committed' || t.state === 'aborted', 20_000, `transaction ${id} to finish`);

async function stock(name: string, sku: string): Promise<number | null> {
  const rows = await query<{ qty: number }>(dbs[name], 'SELECT qty FROM example_stock WHERE participant = $1 AND sku = $2', [name, sku]);
  return rows.length ? Number(rows[0].qty) : null;
}

async function reservations(name: string, txId: string): Promise<number> {
  const rows = await query(dbs[name], 'SELECT 1 FROM example_reservation WHERE tx_id = $1', [txId]);
  return rows.length;
}

const order = (sku: string, qty = 1) => NAMES.map((name) => ({ name, payload: { sku, qty } }));

describe('two-phase commit over Kafka, end to end', () => {
  it('commits across three participants and every one applies it', async () => {
    const sku = `sku-${randomUUID()}`;
    const begun = await call('POST', '/v1/transactions', { participants: order(sku, 2), metadata: { order: 42 } });
    expect(begun.status).toBe(201);
    expect(begun.headers.get('location')).toBe(`/v1/transactions/${begun.body.id}`);
    expect(begun.body).toMatchObject({ protocol: '2pc', state: 'active', outcome: null, timeoutMs: 30000, metadata: { order: 42 } });

    const committed = await call('POST', `/v1/transactions/${begun.body.id}/commit`);
    expect(committed.status).toBe(200);
    expect(committed.body.outcome).toBe('commit');
    expect(committed.body.decidedAt).not.toBeNull();

    const done = await finished(begun.body.id);
    expect(done).toMatchObject({ state: 'committed', outcome: 'commit', reason: null });
    expect(done.participants.map((p: any) => [p.name, p.vote, p.acked])).toEqual(NAMES.map((n) => [n, 'yes', true]));
    for (const name of NAMES) {
      expect(await stock(name, sku)).toBe(98);
      expect(await reservations(name, begun.body.id)).toBe(0);
    }
    // Asking again returns the same outcome.
    expect((await call('POST', `/v1/transactions/${begun.body.id}/commit`)).body.outcome).toBe('commit');
  });

  it('runs three-phase commit: prepare, pre-commit, then commit at every participant', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', { protocol: '3pc', participants: order(sku, 4) });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ protocol: '3pc', outcome: 'commit' });
    const done = await finished(tx.id);
    expect(done.state).toBe('committed');
    expect(done.participants.map((p: any) => [p.name, p.vote, p.preCommitted, p.acked])).toEqual(NAMES.map((n) => [n, 'yes', true, true]));
    for (const name of NAMES) expect(await stock(name, sku)).toBe(96);
    // The coordinator's log shows the order of what it sent; resends repeat a step, never go back.
    const sent = coordinator.proc.output().split('\n').filter((l) => l.includes(tx.id) && l.includes('messages sent')).map((l) => JSON.parse(l).sent.map((m: string) => m.split(':')[0])[0]);
    expect(sent.filter((type: string, i: number) => type !== sent[i - 1])).toEqual(['prepare', 'pre-commit', 'commit']);
  });

  it('aborts everywhere when one participant votes no', async () => {
    const sku = `sku-${randomUUID()}`;
    const parts = order(sku, 3);
    parts[1].payload.qty = 1000; // payments cannot reserve that much: votes no
    const { body: tx } = await call('POST', '/v1/transactions', { participants: parts });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ outcome: 'abort', reason: 'vote-no:payments' });
    const done = await finished(tx.id);
    expect(done.state).toBe('aborted');
    expect(done.participants.find((p: any) => p.name === 'payments')).toMatchObject({ vote: 'no', voteReason: 'insufficient-stock' });
    for (const name of NAMES) {
      const q = await stock(name, sku);
      expect(q === null || q === 100).toBe(true);
      expect(await reservations(name, tx.id)).toBe(0);
    }
  });

  it('aborts at the deadline when a participant stays silent', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', {
      timeoutMs: 1500,
      participants: [...order(sku), { name: 'nobody-listens', payload: {} }],
    });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ outcome: 'abort', reason: 'timeout:prepare' });
    // The live participants hear the abort and give their reservations back.
    await eventually(() => getTx(tx.id), (t) => NAMES.every((n) => t.participants.find((p: any) => p.name === n).acked), 20_000, 'acks of the abort');
    for (const name of NAMES) {
      // Untouched (the abort overtook the prepare) or given back: never reduced.
      expect([null, 100]).toContain(await stock(name, sku));
      expect(await reservations(name, tx.id)).toBe(0);
    }
    // The silent one has not acknowledged, so the transaction waits in aborting, resending.
    expect((await getTx(tx.id)).state).toBe('aborting');
  });

  it('answers 202 with the current state when waitMs passes before the outcome', async () => {
    const { body: tx } = await call('POST', '/v1/transactions', { timeoutMs: 5000, participants: [{ name: 'nobody-listens' }] });
    const r = await call('POST', `/v1/transactions/${tx.id}/commit?waitMs=200`);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ state: 'preparing', outcome: null });
    await call('POST', `/v1/transactions/${tx.id}/abort`);
  });

  it('is unmoved by duplicated deliveries of every message', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', { participants: order(sku, 5) });
    await call('POST', `/v1/transactions/${tx.id}/commit`);
    await finished(tx.id);
    const t = topics(prefix);
    const base = { v: 1 as const, txId: tx.id, protocol: '2pc' as const, sentAt: new Date().toISOString() };
    const send = (topic: string, value: Buffer) => producer.send({ topic, messages: [{ key: tx.id, value }, { key: tx.id, value }] });
    for (const name of NAMES) {
      const prepare = encodeMessage({ ...base, type: 'prepare', participant: name, deadline: new Date(Date.now() + 60000).toISOString(), payload: { sku, qty: 5 } });
      await send(t.participant(name), prepare);
      await send(t.participant(name), encodeMessage({ ...base, type: 'commit', participant: name }));
      await send(t.coordinator, encodeMessage({ ...base, type: 'vote', participant: name, vote: 'no' }));
      await send(t.coordinator, encodeMessage({ ...base, type: 'ack', participant: name, of: 'commit' }));
    }
    // Give the duplicates time to be consumed, then check that nothing moved.
    const marker = await call('POST', '/v1/transactions', { participants: order(`sku-${randomUUID()}`) });
    await call('POST', `/v1/transactions/${marker.body.id}/commit`);
    await finished(marker.body.id);
    const after = await getTx(tx.id);
    expect(after).toMatchObject({ state: 'committed', outcome: 'commit' });
    for (const name of NAMES) expect(await stock(name, sku)).toBe(95);
  });

  it('enlists participants over REST, idempotently, then commits', async () => {
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', {});
    expect(tx.participants).toEqual([]);
    for (const p of order(sku)) expect((await call('POST', `/v1/transactions/${tx.id}/participants`, p)).status).toBe(201);
    const again = await call('POST', `/v1/transactions/${tx.id}/participants`, order(sku)[0]);
    expect(again.status).toBe(200);
    expect(again.body.participants).toHaveLength(3);
    expect((await call('POST', `/v1/transactions/${tx.id}/commit`)).body.outcome).toBe('commit');
    expect((await finished(tx.id)).state).toBe('committed');
    const late = await call('POST', `/v1/transactions/${tx.id}/participants`, { name: 'latecomer' });
    expect(late.status).toBe(409);
    expect(late.headers.get('content-type')).toMatch(/application\/problem\+json/);
  });

  it('commits at once with no participants, and lists newest first with filters and a cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { body } = await call('POST', '/v1/transactions', { metadata: { i } });
      ids.push(body.id);
      expect((await call('POST', `/v1/transactions/${body.id}/commit`)).body).toMatchObject({ state: 'committed', outcome: 'commit' });
    }
    const page1 = await call('GET', '/v1/transactions?state=committed&limit=2');
    expect(page1.status).toBe(200);
    expect(page1.body.items.map((t: any) => t.id)).toEqual([ids[2], ids[1]]);
    const page2 = await call('GET', `/v1/transactions?state=committed&limit=2&cursor=${page1.body.nextCursor}`);
    expect(page2.body.items[0].id).toBe(ids[0]);
    const byParticipant = await call('GET', '/v1/transactions?participant=payments&limit=200');
    expect(byParticipant.body.items.length).toBeGreaterThan(0);
    expect(byParticipant.body.items.every((t: any) => t.participants.some((p: any) => p.name === 'payments'))).toBe(true);
  });

  it('begins idempotently with Idempotency-Key', async () => {
    const key = `key-${randomUUID()}`;
    const body = { participants: [{ name: 'inventory', payload: { sku: 'x', qty: 1 } }], metadata: { a: 1, b: 2 } };
    const first = await call('POST', '/v1/transactions', body, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    const reordered = { metadata: { b: 2, a: 1 }, participants: body.participants };
    const second = await call('POST', '/v1/transactions', reordered, { 'idempotency-key': key });
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    const other = await call('POST', '/v1/transactions', { metadata: { a: 2 } }, { 'idempotency-key': key });
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({ status: 422, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
    await call('POST', `/v1/transactions/${first.body.id}/abort`);
  });

  it('refuses bad requests of every kind with problem JSON and changes nothing', async () => {
    const { body: tx } = await call('POST', '/v1/transactions', { participants: [{ name: 'inventory', payload: { sku: 'z', qty: 1 } }] });
    const before = await getTx(tx.id);
    const countBefore = (await call('GET', '/v1/transactions?limit=200')).body.items.length;
    const cases: [string, string, unknown, Record<string, string> | undefined, number, string?][] = [
      ['POST', '/v1/transactions', '{"protocol":', undefined, 400],
      ['POST', '/v1/transactions', 'protocol=2pc', { 'content-type': 'text/plain' }, 415],
      ['POST', '/v1/transactions', { protocol: '4pc' }, undefined, 400, 'body.protocol'],
      ['POST', '/v1/transactions', { timeoutMs: 5 }, undefined, 400, 'body.timeoutMs'],
      ['POST', '/v1/transactions', { timeoutMs: 'soon' }, undefined, 400, 'body.timeoutMs'],
      ['POST', '/v1/transactions', { participants: [{ name: 'bad name!' }] }, undefined, 400, 'body.participants.0.name'],
      ['POST', '/v1/transactions', { participants: [{ name: 'a' }, { name: 'a' }] }, undefined, 400, 'body.participants'],
      ['POST', '/v1/transactions', { surprise: true }, undefined, 400, 'body'],
      ['POST', '/v1/transactions', { metadata: { blob: 'x'.repeat(300 * 1024) } }, undefined, 413],
      ['POST', '/v1/transactions', { participants: [] }, { 'idempotency-key': 'has space' }, 400, 'header Idempotency-Key'],
      ['GET', '/v1/transactions/not-a-uuid', undefined, undefined, 400, 'path.id'],
      ['GET', `/v1/transactions/${randomUUID()}`, undefined, undefined, 404],
      ['POST', `/v1/transactions/${randomUUID()}/commit`, undefined, undefined, 404],
      ['POST', `/v1/transactions/${tx.id}/commit?waitMs=-1`, undefined, undefined, 400, 'query.waitMs'],
      ['POST', `/v1/transactions/${tx.id}/participants`, { name: 'inventory', payload: { sku: 'other' } }, undefined, 409],
      ['POST', `/v1/transactions/${tx.id}/participants`, { payload: {} }, undefined, 400, 'body.name'],
      ['GET', '/v1/transactions?limit=0', undefined, undefined, 400, 'query.limit'],
      ['GET', '/v1/transactions?state=exploded', undefined, undefined, 400, 'query.state'],
      ['GET', '/v1/transactions?cursor=garbage', undefined, undefined, 400, 'query.cursor'],
      ['GET', '/v1/nothing-here', undefined, undefined, 404],
      ['POST', '/v1/messages', { v: 1, type: 'vote' }, undefined, 404], // the HTTP transport's endpoint; this coordinator runs on Kafka
    ];
    for (const [method, path, body, headers, status, field] of cases) {
      const r = await call(method, path, body, headers);
      const label = `${method} ${path} ${typeof body === 'string' ? body : JSON.stringify(body ?? '').slice(0, 60)}`;
      expect([label, r.status]).toEqual([label, status]);
      expect([label, r.headers.get('content-type')]).toEqual([label, expect.stringMatching(/^application\/problem\+json/)]);
      expect(r.body).toMatchObject({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) });
      if (field) expect([label, r.body.errors.map((e: any) => e.field)]).toEqual([label, expect.arrayContaining([field])]);
    }
    expect(await getTx(tx.id)).toEqual(before);
    expect((await call('GET', '/v1/transactions?limit=200')).body.items.length).toBe(countBefore);
    // Abort after a commit outcome conflicts.
    await call('POST', `/v1/transactions/${tx.id}/commit`);
    const conflict = await call('POST', `/v1/transactions/${tx.id}/abort`);
    expect(conflict.status).toBe(409);
  });

  it('exposes Prometheus metrics of what happened', async () => {
    const r = await fetch(`${coordinator.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await r.text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^txcoord_transactions_begun_total\{protocol="2pc"\} (\d+)/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^txcoord_transactions_decided_total\{protocol="2pc",outcome="commit",reason="none"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^txcoord_transactions_decided_total\{protocol="2pc",outcome="abort",reason="vote-no"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^txcoord_transactions_unfinished\{state="aborting"\} (\d+)/m)).toBeGreaterThan(0);
    expect(text).toMatch(/^txcoord_decision_seconds_bucket\{/m);
    expect(text).toMatch(/^txcoord_resends_total\{type="(prepare|abort)"\} \d+/m);
    // Every message the coordinator took came in a fetch of its inbox.
    const received = [...text.matchAll(/^txcoord_messages_received_total\{type="[a-z-]+"\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
    expect(received).toBeGreaterThan(0);
    expect(value(/^txcoord_inbox_fetches_total (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^txcoord_inbox_messages_total (\d+)/m)).toBeGreaterThanOrEqual(received);
    // The event loop's busy time grows with the work done, and never faster than the clock.
    const busy = async () => Number(/^txcoord_event_loop_busy_seconds_total ([\d.e+-]+)/m.exec(await (await fetch(`${coordinator.url}/metrics`)).text())?.[1]);
    const t0 = Date.now();
    const first = await busy();
    await call('GET', '/v1/transactions?limit=5');
    const second = await busy();
    const elapsedS = (Date.now() - t0) / 1000;
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first);
    expect(second - first).toBeLessThanOrEqual(elapsedS + 0.001);
  });

  it('dead-letters an unreadable message and carries on', async () => {
    const t = topics(prefix);
    const consumer = kafka.consumer({ groupId: `dlq-${randomUUID()}`, maxWaitTimeInMs: 5 });
    const dead: { value: string; error: string }[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: t.deadLetter, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => { dead.push({ value: String(message.value), error: String(message.headers?.['tx-error']) }); } });
    await producer.send({ topic: t.coordinator, messages: [{ key: 'k', value: 'this is not json' }, { key: 'k', value: JSON.stringify({ v: 9, type: 'vote' }) }] });
    await eventually(async () => dead.length, (n) => n >= 2, 20_000, 'two dead letters');
    expect(dead.find((d) => d.value === 'this is not json')?.error).toMatch(/not JSON/);
    expect(dead.find((d) => d.value.includes('"v":9'))?.error).toMatch(/version/);
    await consumer.disconnect();
    const sku = `sku-${randomUUID()}`;
    const { body: tx } = await call('POST', '/v1/transactions', { participants: order(sku) });
    expect((await call('POST', `/v1/transactions/${tx.id}/commit`)).body.outcome).toBe('commit');
  });

  it('a participant restarted while prepared asks for the outcome and finishes', async () => {
    const sku = `sku-${randomUUID()}`;
    const lateDb = await freshDatabase(`${RUN}_late`);
    const { body: tx } = await call('POST', '/v1/transactions', {
      timeoutMs: 60_000,
      participants: [{ name: 'inventory', payload: { sku, qty: 7 } }, { name: 'late', payload: { sku, qty: 1 } }],
    });
    expect((await call('POST', `/v1/transactions/${tx.id}/commit?waitMs=100`)).status).toBe(202);
    await eventually(() => getTx(tx.id), (t) => t.participants[0].vote === 'yes', 20_000, 'inventory to vote yes');
    expect(await reservations('inventory', tx.id)).toBe(1);
    await participants.inventory.kill(); // crash while prepared, before any decision
    const late = await startParticipant('late', { brokers: broker.bootstrap, prefix, databaseUrl: lateDb });
    await eventually(() => getTx(tx.id), (t) => t.outcome === 'commit', 20_000, 'the commit decision');
    participants.inventory = await startParticipant('inventory', { brokers: broker.bootstrap, prefix, databaseUrl: dbs.inventory });
    const done = await finished(tx.id);
    expect(done.state).toBe('committed');
    expect(await reservations('inventory', tx.id)).toBe(0);
    expect(await stock('inventory', sku)).toBe(93);
    await eventually(async () => coordinator.proc.output(), (o) => o.includes('status request') && o.includes(tx.id), 10_000, 'a status request');
    await late.stop();
  });
});
