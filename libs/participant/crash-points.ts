import { CRASH_ENV, CrashPoints, parseCrashSpec } from '../testing/crash-points';
import { ParticipantConfigError } from './errors';

/**
 * TEST-ONLY: where `TX_TEST_CRASH_AT` can kill a participant process (see
 * libs/testing/crash-points.ts); the crash tests in test/crash use them. Unset, nothing happens.
 */
export const PARTICIPANT_CRASH_POINTS = [
  /** The prepared record and the handler's work are committed; the yes vote has not been sent. */
  'after-prepared-persist',
  /** The vote has been sent. */
  'after-vote-send',
  /** 3PC: the precommitted record is committed; the pre-commit ack has not been sent. */
  'after-precommit-persist',
  /** The commit handler and the committed record are committed; the commit ack has not been sent. */
  'after-commit-persist',
] as const;

export type ParticipantCrashPoint = (typeof PARTICIPANT_CRASH_POINTS)[number];

/** Reads TX_TEST_CRASH_AT; throws ParticipantConfigError on an unknown point. */
export function participantCrashPoints(name: string, env: NodeJS.ProcessEnv = process.env): CrashPoints<ParticipantCrashPoint> {
  try {
    return new CrashPoints(parseCrashSpec(env[CRASH_ENV], PARTICIPANT_CRASH_POINTS), `participant ${name}`);
  } catch (err) {
    throw new ParticipantConfigError((err as Error).message);
  }
}
