/**
 * kill -9 of a participant at each step, then a restart: it finishes by asking.
 *
 * The coordinator here never resends (its resend delay is a minute) and whatever was queued for
 * the dead participant on its topic is dropped before it restarts (as if lost), so the only way a
 * restarted participant can learn the outcome is its own status-request — or, in 3PC once
 * pre-committed, its own timeout action. Each crashing participant is the example inventory
 * service armed with one test-only TX_TEST_CRASH_AT point; `payments` is a healthy one.
 */
import { randomUUID } from 'node:crypto';
import { eventually } from '../support/processes';
import {
  call, CrashWorld, dropQueued, expectConsistent, expectNoViolation, getTx, launchParticipant, participantStates, runName, startWorld, stopWorld,
} from '../support/crash';

const POINTS: Record<string, string> = {
  'inv-a': 'after-prepared-persist',
  'inv-b': 'after-vote-send',
  'inv-c': 'after-commit-persist',
  'inv-d': 'after-precommit-persist',
};
const QTY = 2;
let w: CrashWorld;

beforeAll(async () => {
  w = await startWorld(runName('part'), ['payments', ...Object.keys(POINTS)], {
    firstCrashPoint: '',
    coordinatorEnv: { TX_RESEND_INITIAL_MS: '60000', TX_RESEND_MAX_MS: '60000' },
    participantEnvByName: Object.fromEntries(Object.entries(POINTS).map(([name, point]) => [name, { TX_TEST_CRASH_AT: point }])),
  });
}, 90_000);

afterAll(() => stopWorld(w), 30_000);

/** Begins and commits a transaction of `name` and payments; resolves once `name` killed itself at its point. */
async function crashDuring(name: string, protocol: '2pc' | '3pc', timeoutMs: number) {
  const sku = `sku-${randomUUID()}`;
  const begun = await call(w, 'POST', '/v1/transactions', {
    protocol, timeoutMs, participants: [name, 'payments'].map((n) => ({ name: n, payload: { sku, qty: QTY } })),
  });
  expect(begun.status).toBe(201);
  const txId: string = begun.body.id;
  await call(w, 'POST', `/v1/transactions/${txId}/commit?waitMs=0`);
  const p = w.participants[name];
  await p.waitFor(new RegExp(`TX_TEST_CRASH_AT: participant ${name} crashing at ${POINTS[name]}`), 20_000);
  await p.exited;
  expect(p.child.signalCode).toBe('SIGKILL');
  return { txId, sku, deadline: Date.parse(begun.body.deadline) };
}

const state = async (txId: string, name: string) => (await participantStates(w, txId, [name]))[name];
const waitTx = (txId: string, ok: (t: any) => boolean, what: string) => eventually(() => getTx(w, txId), ok, 30_000, what);

async function restart(name: string, txId: string, asks = true) {
  w.participants[name] = await launchParticipant(w, name);
  if (asks) {
    await w.participants[name].waitFor(new RegExp(`"txId":"${txId}".*in doubt after restart; sending status-request`), 20_000);
    await w.coordinator!.waitFor(new RegExp(`"txId":"${txId}","participant":"${name}".*status request`), 20_000);
  }
}

/**
 * The four cases run at once (each has its own crashing participant; waiting for deadlines, group
 * rebalances and restarts dominates): started together, each reported by its own test.
 */
const cases: Record<string, () => Promise<void>> = {
  'after its prepared state is durable, before its vote left: the deadline aborts; on restart it asks and aborts': async () => {
    const { txId, sku } = await crashDuring('inv-a', '2pc', 4000);
    expect(await state(txId, 'inv-a')).toBe('prepared'); // durable before the vote, which never left
    const t = await waitTx(txId, (x) => x.outcome !== null, 'the deadline to decide');
    expect(t).toMatchObject({ outcome: 'abort', reason: 'timeout:prepare' });
    expect(t.participants.find((p: any) => p.name === 'inv-a').vote).toBeNull();
    await dropQueued(w, 'inv-a'); // the redelivered prepare and the abort are lost
    await restart('inv-a', txId);
    await expectConsistent(w, txId, sku, QTY, 'abort', ['inv-a', 'payments']);
  },
  'after its yes vote left: the coordinator commits; on restart it asks and commits': async () => {
    const { txId, sku } = await crashDuring('inv-b', '2pc', 20_000);
    expect(await state(txId, 'inv-b')).toBe('prepared');
    await waitTx(txId, (x) => x.outcome === 'commit', 'the commit decision');
    await dropQueued(w, 'inv-b'); // the commit sent while it was down is lost
    await restart('inv-b', txId);
    await expectConsistent(w, txId, sku, QTY, 'commit', ['inv-b', 'payments']);
  },
  'after its commit is durable, before the ack: the redelivered commit is acknowledged from its record, the handler does not run again': async () => {
    const { txId, sku } = await crashDuring('inv-c', '2pc', 20_000);
    expect(await state(txId, 'inv-c')).toBe('committed');
    expect((await getTx(w, txId)).participants.find((p: any) => p.name === 'inv-c').acked).toBe(false);
    await restart('inv-c', txId, false); // nothing in doubt: nothing to ask
    await expectConsistent(w, txId, sku, QTY, 'commit', ['inv-c', 'payments']);
    expect(w.participants['inv-c'].output()).not.toMatch(new RegExp(`"txId":"${txId}".*reservation committed`));
  },
  '3PC, after its pre-commit is durable, before the ack: the coordinator commits at the deadline; on restart it asks and commits': async () => {
    const { txId, sku } = await crashDuring('inv-d', '3pc', 4000);
    expect(await state(txId, 'inv-d')).toBe('precommitted');
    // Its pre-commit ack never came: at the deadline the coordinator goes on to commit (Skeen).
    await waitTx(txId, (x) => x.state === 'committing', 'the coordinator to move to committing');
    await dropQueued(w, 'inv-d'); // the commit is lost
    // (Unanswered, it would commit on its own once past the deadline + statusRequestAfterMs: see
    // test/participant/three-phase-rules.test.ts and the 3PC coordinator crash test.)
    await restart('inv-d', txId);
    await expectConsistent(w, txId, sku, QTY, 'commit', ['inv-d', 'payments']);
  },
};

let running: Record<string, Promise<void>>;

describe('participant killed (-9) at each step, then restarted: it finishes by asking', () => {
  beforeAll(() => {
    running = Object.fromEntries(Object.entries(cases).map(([name, run]) => {
      const p = run();
      p.catch(() => undefined); // reported by its test
      return [name, p];
    }));
  });

  for (const name of Object.keys(cases)) {
    it(name, () => running[name], 90_000);
  }

  it('no process saw a protocol violation', async () => {
    await Promise.allSettled(Object.values(running));
    expectNoViolation(w);
  });
});
