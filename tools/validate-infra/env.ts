/**
 * The environment variables the apps really read, taken from their own configuration code (not
 * from a list kept here): the coordinator's loadConfig and the example participant's loadConfig
 * are run on an environment that records every name they look up.
 */
import { loadConfig as loadCoordinatorConfig } from '../../apps/coordinator/config/config';
import { loadConfig as loadParticipantConfig } from '../../apps/participant-example/config';

function recording(base: Record<string, string>, seen: Set<string>): NodeJS.ProcessEnv {
  return new Proxy({ ...base }, {
    get(target, key) {
      if (typeof key === 'string') seen.add(key);
      return (target as Record<string | symbol, unknown>)[key];
    },
  }) as NodeJS.ProcessEnv;
}

/** Every variable the coordinator's configuration reads (it reads all of them on every start). */
export function coordinatorVariables(): Set<string> {
  // NODE_OPTIONS is read by node itself (the manifests set a V8 heap cap with it).
  const seen = new Set<string>(['NODE_OPTIONS']);
  loadCoordinatorConfig(recording({}, seen));
  return seen;
}

/**
 * Every variable the example participant reads: its configuration on Kafka and over HTTP, plus
 * LOG_LEVEL, which its main reads directly.
 */
export function participantVariables(): Set<string> {
  const seen = new Set<string>(['LOG_LEVEL']);
  const db = { DATABASE_URL: 'postgres://u@h:5432/d' };
  loadParticipantConfig(['--name', 'probe'], recording({ ...db, KAFKA_BROKERS: 'h:9092' }, seen));
  loadParticipantConfig(['--name', 'probe'], recording(db, seen));
  return seen;
}

/** Runs the coordinator's configuration on `env`: the one-line error, or null when it starts. */
export function coordinatorConfigError(env: Record<string, string | undefined>): string | null {
  try {
    loadCoordinatorConfig(env);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export function coordinatorConfig(env: Record<string, string | undefined>) {
  return loadCoordinatorConfig(env);
}

/** Runs the example participant's configuration on its arguments and `env`. */
export function participantConfigError(args: string[], env: Record<string, string | undefined>): string | null {
  try {
    loadParticipantConfig(args, env);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
