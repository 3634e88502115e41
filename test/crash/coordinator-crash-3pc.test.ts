/**
 * kill -9 of the coordinator at each step of three-phase commit, then a restart on the same log:
 * every participant ends with the same outcome, committed only where the commit decision was
 * durable (in 3PC it is made durable before any pre-commit leaves). One case keeps the coordinator
 * down until the participant that got pre-commit has committed on its own (its 3PC timeout
 * action): the others still commit after the restart. TX_TEST_CRASH_AT (test-only) picks the step.
 */
import { eventually } from '../support/processes';
import { CoordinatorCrashCase, coordinatorCrash, CrashSnapshot, CrashWorld, participantStates, runName, startWorld, stopWorld } from '../support/crash';

const NAMES = ['inventory', 'payments', 'shipping'];
let w: CrashWorld;

afterAll(() => stopWorld(w), 30_000);

const all = (at: CrashSnapshot, state: string) => expect(Object.values(at.participants)).toEqual(NAMES.map(() => state));
const decided = (at: CrashSnapshot, state: string) => expect(at.coordinator).toEqual({ state, outcome: 'commit' });

const cases: [string, CoordinatorCrashCase][] = [
  ['after the prepares left, before `preparing` was durable: the log says active, the prepared participants wait and ask, and the deadline aborts it', {
    protocol: '3pc', point: 'before-preparing-persist', timeoutMs: 3000, undecided: 'abort',
    atCrash: (at) => expect(at.coordinator).toEqual({ state: 'active', outcome: null }),
    whileDown: async (world, txId) => {
      await eventually(() => participantStates(world, txId), (x) => Object.values(x).every((v) => v === 'prepared'), 20_000, 'participants to prepare');
    },
  }],
  ['while deciding, down across the deadline: presumed abort, although every vote was yes', {
    protocol: '3pc', point: 'before-decision-persist', timeoutMs: 3000, restartAfterDeadline: true, undecided: 'abort',
    atCrash: (at) => { expect(at.coordinator).toEqual({ state: 'preparing', outcome: null }); all(at, 'prepared'); },
  }],
  ['after the commit decision is durable, before any pre-commit left, down across the deadline: commits', {
    protocol: '3pc', point: 'after-decision-persist', timeoutMs: 3000, restartAfterDeadline: true,
    atCrash: (at) => { decided(at, 'precommitted'); all(at, 'prepared'); },
  }],
  ['after pre-commit reached one participant only, down until that one committed on its own: the others commit after the restart', {
    protocol: '3pc', point: 'after-first-send', timeoutMs: 3000,
    atCrash: (at) => decided(at, 'precommitted'),
    // The pre-committed participant's timeout (deadline + 2 s) passes while the coordinator is
    // down: it commits without the coordinator; the prepared ones wait and ask.
    whileDown: async (world, txId) => {
      const s = await eventually(() => participantStates(world, txId), (x) => Object.values(x).includes('committed'), 20_000, 'the pre-committed participant to commit on its own');
      expect(Object.values(s).sort()).toEqual(['committed', 'prepared', 'prepared']);
    },
  }],
  ['after the first pre-commit acknowledgement was recorded (in memory only): recovery pre-commits everyone again, then commits', {
    protocol: '3pc', point: 'after-precommit-ack-recorded', timeoutMs: 20_000,
    atCrash: (at) => decided(at, 'precommitted'),
  }],
  ['after the move to committing is durable, before any commit left: commits', {
    protocol: '3pc', point: 'after-committing-persist', timeoutMs: 20_000,
    atCrash: (at) => { decided(at, 'committing'); all(at, 'precommitted'); },
  }],
  ['after commit reached one participant only: the others get it after the restart', {
    protocol: '3pc', point: 'after-first-commit-send', timeoutMs: 20_000,
    atCrash: (at) => decided(at, 'committing'),
  }],
  ['after the first commit acknowledgement was recorded (in memory only): everyone is driven to commit', {
    protocol: '3pc', point: 'after-ack-recorded', timeoutMs: 20_000,
    atCrash: (at) => { decided(at, 'committing'); expect(Object.values(at.participants)).toContain('committed'); },
  }],
];

beforeAll(async () => {
  w = await startWorld(runName('c3pc'), NAMES, { firstCrashPoint: cases[0][1].point });
}, 90_000);

describe('coordinator killed (-9) at each step of 3PC, then restarted', () => {
  cases.forEach(([name, c], i) => {
    it(`${c.point}: ${name}`, async () => {
      await coordinatorCrash(w, c, cases[i + 1]?.[1].point);
    }, 60_000);
  });
});
