/**
 * kill -9 of the coordinator at each step of two-phase commit, then a restart on the same log:
 * every participant must end with the same outcome, committed only where a commit decision was
 * durable. The coordinator kills itself at the exact step through the test-only TX_TEST_CRASH_AT
 * hook; the participants are the example inventory service over the Kafka test broker.
 */
import { CoordinatorCrashCase, coordinatorCrash, CrashSnapshot, CrashWorld, participantStates, runName, startWorld, stopWorld } from '../support/crash';
import { eventually } from '../support/processes';

const NAMES = ['inventory', 'payments', 'shipping'];
let w: CrashWorld;

afterAll(() => stopWorld(w), 30_000);

const prepared = (at: CrashSnapshot) => expect(Object.values(at.participants)).toEqual(['prepared', 'prepared', 'prepared']);

const cases: [string, CoordinatorCrashCase][] = [
  ['after the prepares left, before `preparing` was durable (they go ahead of its save): the log says active, so the deadline aborts it and tells the prepared participants', {
    protocol: '2pc', point: 'before-preparing-persist', timeoutMs: 3000, undecided: 'abort',
    atCrash: (at) => expect(at.coordinator).toEqual({ state: 'active', outcome: null }),
    // The prepares were out: every participant prepares (and votes into the void) while the coordinator is down.
    whileDown: async (w, txId) => {
      await eventually(() => participantStates(w, txId), (s) => Object.values(s).every((x) => x === 'prepared'), 20_000, 'participants to prepare');
    },
  }],
  ['before the decision (one vote recorded, in memory only): recovery asks every participant again and commits', {
    protocol: '2pc', point: 'after-vote-recorded', timeoutMs: 20_000, undecided: 'commit',
    atCrash: (at) => expect(at.coordinator).toEqual({ state: 'preparing', outcome: null }),
  }],
  ['while deciding (the decision step dies before its commit), restarted in time: the last vote is redelivered and it commits', {
    protocol: '2pc', point: 'before-decision-persist', timeoutMs: 20_000, undecided: 'commit',
    atCrash: (at) => expect(at.coordinator).toEqual({ state: 'preparing', outcome: null }),
  }],
  ['while deciding, down across the deadline: presumed abort, although every vote was yes', {
    protocol: '2pc', point: 'before-decision-persist', timeoutMs: 3000, restartAfterDeadline: true, undecided: 'abort',
    // Every participant voted yes and holds its reservation: only the missing durable decision aborts it.
    atCrash: (at) => { expect(at.coordinator).toEqual({ state: 'preparing', outcome: null }); prepared(at); },
  }],
  ['after the commit decision is durable, before any send, down across the deadline: still commits everywhere', {
    protocol: '2pc', point: 'after-decision-persist', timeoutMs: 3000, restartAfterDeadline: true,
    atCrash: (at) => { expect(at.coordinator).toEqual({ state: 'committing', outcome: 'commit' }); prepared(at); },
  }],
  ['after commit was sent to one participant only: the others get it after the restart', {
    protocol: '2pc', point: 'after-first-send', timeoutMs: 20_000,
    atCrash: (at) => expect(at.coordinator).toEqual({ state: 'committing', outcome: 'commit' }),
  }],
  ['after the first acknowledgement was recorded (in memory only): everyone is driven to commit', {
    protocol: '2pc', point: 'after-ack-recorded', timeoutMs: 20_000,
    atCrash: (at) => {
      expect(at.coordinator).toEqual({ state: 'committing', outcome: 'commit' });
      expect(Object.values(at.participants).filter((s) => s === 'committed').length).toBeGreaterThanOrEqual(1);
    },
  }],
  ['after an abort decision (a no vote) was sent to one participant only: everyone aborts', {
    protocol: '2pc', point: 'after-first-send', timeoutMs: 20_000, noVoter: 'payments',
    atCrash: (at) => expect(at.coordinator).toEqual({ state: 'aborting', outcome: 'abort' }),
  }],
];

beforeAll(async () => {
  w = await startWorld(runName('c2pc'), NAMES, { firstCrashPoint: cases[0][1].point });
}, 90_000);

describe('coordinator killed (-9) at each step of 2PC, then restarted', () => {
  cases.forEach(([name, c], i) => {
    it(`${c.point}: ${name}`, async () => {
      await coordinatorCrash(w, c, cases[i + 1]?.[1].point);
    }, 60_000);
  });
});
