/**
 * Two coordinator replicas on one log, as deployed with several replicas: the client begins on
 * one and commits on the other, and the member service sends its votes and acks to the first
 * (over Kafka, whichever replica holds the transaction's partition gets them). The replica that
 * began the transaction last saw it active, and the prepares leave the committing replica ahead
 * of its save of `preparing`: the votes must still count at once, not after a resend (the first
 * resend here comes only after 5 s). The member is a plain node:http server speaking the HTTP
 * protocol (CONTRACT section 3b) that answers at once.
 */
import { randomUUID } from 'node:crypto';
import { api, startCoordinator, TestCoordinator } from '../support/coordinator';
import { HttpMember, startHttpMember } from '../support/http-member';
import { dropCreatedDatabases } from '../support/postgres';
import { freePort, RunningProcess, startApp, waitForHttp } from '../support/processes';

let committer: TestCoordinator;
let beginner: RunningProcess;
let beginnerUrl: string;
let member: HttpMember;
let memberUrl: string;
const prepares = new Map<string, number>();

beforeAll(async () => {
  committer = await startCoordinator({
    transport: 'http',
    database: `txreplicas_${randomUUID().slice(0, 8)}`,
    env: { TX_RESEND_INITIAL_MS: '5000', TX_RESEND_MAX_MS: '10000', LOG_LEVEL: 'warn' },
  });
  const port = await freePort();
  beginnerUrl = `http://127.0.0.1:${port}`;
  beginner = startApp('apps/coordinator/main.js', [], { ...committer.env, PORT: String(port) });
  await waitForHttp(`${beginnerUrl}/health/ready`);
  member = await startHttpMember({
    answerTo: () => beginnerUrl,
    seen: (m) => { if (m.type === 'prepare') prepares.set(m.txId, (prepares.get(m.txId) ?? 0) + 1); },
  });
  memberUrl = member.url;
}, 60_000);

afterAll(async () => {
  await member?.close();
  await beginner?.stop();
  await committer?.stop();
  await dropCreatedDatabases();
});

describe('two replicas: begun on one, committed on the other, answers to the first', () => {
  it('counts the votes at once, without a resend', async () => {
    for (let i = 0; i < 5; i++) {
      const participants = ['a', 'b'].map((name) => ({ name, url: memberUrl }));
      const { status, body: tx } = await api(beginnerUrl, 'POST', '/v1/transactions', { participants });
      expect(status).toBe(201);
      const done = await api(committer.url, 'POST', `/v1/transactions/${tx.id}/commit?waitMs=3000`);
      expect([done.status, done.body.outcome]).toEqual([200, 'commit']);
      expect(prepares.get(tx.id)).toBe(2);
    }
  }, 60_000);

  it('answers the waiting commit request with the other replica\'s decision, not when its wait runs out', async () => {
    // The votes go to the replica that began, so the decision is made there; the committing
    // replica, whose request waits, has to look in the log for it (at least once a second).
    const waitMs = 20_000;
    const participants = ['a', 'b'].map((name) => ({ name, url: memberUrl }));
    const { body: tx } = await api(beginnerUrl, 'POST', '/v1/transactions', { participants });
    const started = Date.now();
    const done = await api(committer.url, 'POST', `/v1/transactions/${tx.id}/commit?waitMs=${waitMs}`);
    expect([done.status, done.body.outcome]).toEqual([200, 'commit']);
    expect(Date.now() - started).toBeLessThan(waitMs / 2);
  }, 60_000);
});
