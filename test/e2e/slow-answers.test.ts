/**
 * Late is not lost: a member service that always answers 600 ms after a message (a queue in front
 * of it, say) gets prepares and commits resent only until the coordinator has seen how long its
 * answers take; from then on nothing is resent, though the first resend interval is 150 ms. The
 * member here is a plain node:http server speaking the HTTP protocol (CONTRACT section 3b).
 */
import { randomUUID } from 'node:crypto';
import { api, startCoordinator, TestCoordinator } from '../support/coordinator';
import { HttpMember, startHttpMember } from '../support/http-member';
import { dropCreatedDatabases } from '../support/postgres';

const ANSWER_AFTER_MS = 600;
let coordinator: TestCoordinator;
let member: HttpMember;
let memberUrl: string;

beforeAll(async () => {
  coordinator = await startCoordinator({
    transport: 'http',
    database: `txslow_${randomUUID().slice(0, 8)}`,
    env: { TX_RESEND_INITIAL_MS: '150', TX_RESEND_MAX_MS: '5000', LOG_LEVEL: 'warn' },
  });
  member = await startHttpMember({ answerTo: () => coordinator.url, answerAfterMs: ANSWER_AFTER_MS });
  memberUrl = member.url;
}, 60_000);

afterAll(async () => {
  await member?.close();
  await coordinator?.stop();
  await dropCreatedDatabases();
});

async function resends(type: string): Promise<number> {
  const text = await (await fetch(`${coordinator.url}/metrics`)).text();
  const m = new RegExp(`^txcoord_resends_total\\{type="${type}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function commitOne(): Promise<void> {
  const { body: tx } = await api(coordinator.url, 'POST', '/v1/transactions', { participants: [{ name: 'slow', url: memberUrl }] });
  const { body } = await api(coordinator.url, 'POST', `/v1/transactions/${tx.id}/commit?waitMs=10000`);
  expect(body.outcome).toBe('commit');
}

describe('a member that answers late', () => {
  it('is resent to only until its answer times are known', async () => {
    for (let i = 0; i < 3; i++) await commitOne();
    await new Promise((r) => setTimeout(r, 2 * ANSWER_AFTER_MS)); // the acks of the last one
    // Before any answer was seen, the first prepare was resent at 150 ms, 300 ms … like a lost one.
    const early = { prepare: await resends('prepare'), commit: await resends('commit') };
    expect(early.prepare).toBeGreaterThan(0);

    for (let i = 0; i < 8; i++) await commitOne();
    await new Promise((r) => setTimeout(r, 2 * ANSWER_AFTER_MS));
    expect(await resends('prepare')).toBe(early.prepare);
    expect(await resends('commit')).toBe(early.commit);
    const text = await (await fetch(`${coordinator.url}/metrics`)).text();
    const timeout = Number(/^txcoord_answer_timeout_seconds (\S+)$/m.exec(text)?.[1]);
    expect(timeout).toBeGreaterThan(ANSWER_AFTER_MS / 1000);
    expect(timeout).toBeLessThan(5);
  }, 60_000);
});
