import pino from 'pino';
import { DataSource } from 'typeorm';
import { PARTICIPANT_NAME, topics } from '../protocol';
import { HttpTransport, HttpTransportOptions } from '../transport/http-transport';
import { KafkaTransport, KafkaTransportOptions } from '../transport/kafka-transport';
import type { MessageTransport } from '../transport/transport';
import { ParticipantConfigError } from './errors';
import { HttpOptionNames, httpOptionsFromEnv } from './http-options';
import { ParticipantRunner, RuntimeTiming } from './runtime';
import type { ParticipantOptions, ParticipantRuntime, TransactionParticipant } from './types';

export { ParticipantConfigError };

export const DEFAULT_TIMING: RuntimeTiming = {
  statusRequestAfterMs: 2000,
  retryInitialMs: 500,
  retryMaxMs: 10_000,
};

/**
 * Starts a participant: creates its table (if absent), receives its messages (topic
 * `<prefix>participant.<name>`, or `POST /tx/messages` over HTTP), and asks the coordinator about
 * every transaction left prepared by an earlier run. Resolves once it is receiving; `stop()` undoes it.
 */
export async function startParticipant(options: ParticipantOptions): Promise<ParticipantRuntime> {
  const env = process.env;
  const name = validateName(options.name);
  validateHandler(options.participant);
  const timing = validateTiming(options);
  const logger = options.logger ?? pino({ name: 'txp-participant', level: env.LOG_LEVEL || 'info' });

  if (options.dataSource && options.databaseUrl) {
    throw new ParticipantConfigError('participant options: give either dataSource or databaseUrl, not both');
  }
  let ownedDataSource: DataSource | undefined;
  let dbWhat = 'DATABASE_URL';
  let dataSource = options.dataSource;
  if (dataSource) {
    if (dataSource.options.type !== 'postgres') {
      throw new ParticipantConfigError(`participant option dataSource must be a postgres DataSource, not ${dataSource.options.type}`);
    }
    if (!dataSource.isInitialized) {
      throw new ParticipantConfigError('participant option dataSource must be initialized (call dataSource.initialize() first)');
    }
  } else {
    const what = options.databaseUrl ? 'participant option databaseUrl' : 'DATABASE_URL';
    dbWhat = what;
    const url = validateDatabaseUrl(options.databaseUrl ?? env.DATABASE_URL, what);
    ownedDataSource = dataSource = new DataSource({ type: 'postgres', url, synchronize: false, entities: [] });
  }
  let transport: MessageTransport;
  let url: string | null = null;
  if (options.transport) {
    transport = options.transport;
  } else {
    const chosen = defaultTransportOptions(name, options, env);
    if (chosen.kind === 'kafka') {
      transport = new KafkaTransport({ ...chosen.options, logger });
    } else {
      transport = new HttpTransport({ ...chosen.options, logger });
      url = chosen.publicUrl;
    }
  }

  if (ownedDataSource) {
    try {
      await ownedDataSource.initialize();
    } catch (err) {
      throw new Error(`participant ${name}: cannot connect to ${dbWhat}: ${(err as Error).message}`, { cause: err });
    }
  }
  const runner = new ParticipantRunner({
    name,
    participant: options.participant,
    dataSource,
    transport,
    url,
    logger,
    timing,
    onStopped: ownedDataSource ? () => ownedDataSource!.destroy() : undefined,
  });
  try {
    await runner.start();
  } catch (err) {
    await runner.stop().catch(() => undefined);
    throw err;
  }
  return runner;
}

function validateName(name: unknown): string {
  if (typeof name !== 'string' || !PARTICIPANT_NAME.test(name)) {
    throw new ParticipantConfigError(
      `participant name ${JSON.stringify(name)} is invalid: use 1-100 characters of A-Z a-z 0-9 . _ -`,
    );
  }
  return name;
}

function validateHandler(p: TransactionParticipant | undefined): void {
  const missing = (['prepare', 'commit', 'abort'] as const).filter((k) => typeof p?.[k] !== 'function');
  if (missing.length) {
    throw new ParticipantConfigError(`participant option participant must implement ${missing.join(', ')}`);
  }
  if (p!.preCommit !== undefined && typeof p!.preCommit !== 'function') {
    throw new ParticipantConfigError('participant option participant.preCommit must be a function');
  }
}

function validateTiming(o: ParticipantOptions): RuntimeTiming {
  const t = { ...DEFAULT_TIMING };
  for (const key of Object.keys(DEFAULT_TIMING) as (keyof RuntimeTiming)[]) {
    const v = o[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new ParticipantConfigError(`participant option ${key} must be a non-negative number of milliseconds`);
    }
    t[key] = v;
  }
  if (t.retryInitialMs < 1) throw new ParticipantConfigError('participant option retryInitialMs must be at least 1');
  if (t.retryMaxMs < t.retryInitialMs) {
    throw new ParticipantConfigError('participant option retryMaxMs must not be less than retryInitialMs');
  }
  return t;
}

/** Checks a Postgres URL; `what` names the option or variable in the error. */
export function validateDatabaseUrl(url: string | undefined, what = 'DATABASE_URL'): string {
  if (!url) throw new ParticipantConfigError(`${what} is not set: give the participant's Postgres URL`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ParticipantConfigError(`${what} is not a valid URL`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ParticipantConfigError(`${what} must be a postgres:// or postgresql:// URL, not ${parsed.protocol}//`);
  }
  return url;
}

export type DefaultTransportOptions =
  | { kind: 'kafka'; options: KafkaTransportOptions }
  | { kind: 'http'; options: HttpTransportOptions; publicUrl: string };

/**
 * The transport the library builds when given none: Kafka when `KAFKA_BROKERS` is set, otherwise
 * HTTP (see httpOptionsFromEnv). Throws ParticipantConfigError; a service can call it to fail fast.
 */
export function defaultTransportOptions(
  name: string,
  options: Pick<ParticipantOptions, HttpOptionNames> = {},
  env: NodeJS.ProcessEnv = process.env,
): DefaultTransportOptions {
  if (env.KAFKA_BROKERS?.trim()) return { kind: 'kafka', options: kafkaOptionsFromEnv(name, env) };
  const http = httpOptionsFromEnv(options, env);
  return { kind: 'http', options: http.transport, publicUrl: http.publicUrl };
}

/**
 * The Kafka transport options of participant `name` from the environment (KAFKA_BROKERS,
 * TX_TOPIC_PREFIX, TX_MESSAGE_SECRET, KAFKA_MAX_WAIT_MS), checked by the same rules as the
 * coordinator's configuration so that one environment suits both. Throws ParticipantConfigError.
 */
export function kafkaOptionsFromEnv(name: string, env: NodeJS.ProcessEnv = process.env): KafkaTransportOptions {
  const rawBrokers = env.KAFKA_BROKERS?.trim();
  if (!rawBrokers) {
    throw new ParticipantConfigError(
      'KAFKA_BROKERS is not set: give comma-separated Kafka bootstrap servers (or pass a transport)',
    );
  }
  if (!/^[A-Za-z0-9.-]+:\d{1,5}(,[A-Za-z0-9.-]+:\d{1,5})*$/.test(rawBrokers.replace(/\s*,\s*/g, ','))) {
    throw new ParticipantConfigError('KAFKA_BROKERS must be a comma-separated list of host:port');
  }
  const brokers = rawBrokers.split(',').map((b) => b.trim());
  const topicPrefix = env.TX_TOPIC_PREFIX ?? 'tx.';
  if (!/^[A-Za-z0-9._-]{0,100}$/.test(topicPrefix)) {
    throw new ParticipantConfigError('TX_TOPIC_PREFIX must use only A-Z a-z 0-9 . _ - (at most 100)');
  }
  const secret = env.TX_MESSAGE_SECRET || undefined;
  if (secret !== undefined && secret.length < 16) {
    throw new ParticipantConfigError('TX_MESSAGE_SECRET must be at least 16 characters');
  }
  let maxWaitTimeInMs = 100;
  if (env.KAFKA_MAX_WAIT_MS) {
    maxWaitTimeInMs = Number(env.KAFKA_MAX_WAIT_MS);
    if (!Number.isInteger(maxWaitTimeInMs) || maxWaitTimeInMs < 1 || maxWaitTimeInMs > 10_000) {
      throw new ParticipantConfigError('KAFKA_MAX_WAIT_MS must be an integer between 1 and 10000');
    }
  }
  let sessionTimeoutMs = 10_000;
  if (env.KAFKA_SESSION_TIMEOUT_MS) {
    sessionTimeoutMs = Number(env.KAFKA_SESSION_TIMEOUT_MS);
    if (!Number.isInteger(sessionTimeoutMs) || sessionTimeoutMs < 1000 || sessionTimeoutMs > 300_000) {
      throw new ParticipantConfigError('KAFKA_SESSION_TIMEOUT_MS must be an integer between 1000 and 300000');
    }
  }
  return {
    brokers,
    sessionTimeoutMs,
    clientId: `txp-participant-${name}`,
    groupId: `txp.${name}`,
    listenTopic: topics(topicPrefix).participant(name),
    topicPrefix,
    secret,
    maxWaitTimeInMs,
  };
}
