import { z } from 'zod';
import { BreakerSettings } from '../../../libs/resilience/breaker';
import { coordinatorCrashSpec } from '../protocol/crash-hooks';

/** Everything the coordinator reads from its environment, validated once at start. */
export interface CoordinatorConfig {
  port: number;
  /** null: the embedded Postgres (see the README). */
  databaseUrl: string | null;
  /** Empty: the HTTP transport. */
  kafkaBrokers: string[];
  topicPrefix: string;
  defaultTimeoutMs: number;
  apiKeys: string[];
  messageSecret: string | null;
  coordinatorUrl: string;
  /** TX_PARTICIPANT_URLS: where the HTTP transport reaches participants enlisted without a url. */
  participantUrls: Map<string, string>;
  /** Kafka fetch long-poll; small values cut latency on brokers that do not answer early. */
  kafkaMaxWaitMs: number;
  /** How soon the group notices a crashed member (and a restarted one can take over). */
  kafkaSessionTimeoutMs: number;
  resendInitialMs: number;
  resendMaxMs: number;
  /** How often unfinished transactions whose timers live nowhere (another replica died) are picked up. */
  sweepIntervalMs: number;
  bodyLimitBytes: number;
  logLevel: string;
  embeddedDataDir: string;
  /** An unfinished transaction older than this is reported as stuck (logs and `stuck` in its REST view). */
  stuckAfterMs: number;
  /** Finished transactions are deleted from the log this long after they finished; 0 keeps them. */
  retentionMs: number;
  /** Circuit breakers around the decision log (Postgres) and the Kafka producer. */
  breaker: BreakerSettings;
  /** A decision-log operation taking longer than this fails with 503 and counts against the breaker. */
  dbTimeoutMs: number;
  /** Requests to /v1 (protocol messages excepted) per client address and minute; 0: no limit. */
  rateLimitPerMinute: number;
  /** After SIGTERM: how long to keep serving (readiness 503, no new transactions) before draining. */
  shutdownDelayMs: number;
  /** After SIGTERM: the longest the whole shutdown may take before the process exits anyway. */
  shutdownTimeoutMs: number;
  /** TEST-ONLY (TX_TEST_CRASH_AT): kill -9 the process at a protocol step; null in any real deployment. */
  testCrashAt: string | null;
}

/** A bad variable: the message is the one line printed before the process exits. */
export class ConfigError extends Error {
  constructor(variable: string, problem: string, value: string | undefined) {
    super(`configuration error: ${variable} ${problem}${value === undefined ? '' : ` (got ${JSON.stringify(value)})`}`);
    this.name = 'ConfigError';
  }
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const brokerList = /^[A-Za-z0-9.-]+:\d{1,5}(,[A-Za-z0-9.-]+:\d{1,5})*$/;

/** Each variable: its schema, its default, and the words used when it is wrong. */
const rules = {
  PORT: { schema: int(1, 65535), default: '3000', problem: 'must be an integer port between 1 and 65535' },
  DATABASE_URL: {
    schema: z.string().regex(/^postgres(ql)?:\/\/\S+$/).optional(),
    problem: 'must be a postgres:// or postgresql:// URL',
    // Shown without its credentials: a URL's password must not reach a log.
    shown: (raw: string) => raw.replace(/^([^:/]*:\/\/)[^@/]*@/, '$1***@'),
  },
  KAFKA_BROKERS: { schema: z.string().regex(brokerList).optional(), problem: 'must be a comma-separated list of host:port' },
  TX_TOPIC_PREFIX: { schema: z.string().regex(/^[A-Za-z0-9._-]{0,100}$/), default: 'tx.', problem: 'must use only A-Z a-z 0-9 . _ - (at most 100)' },
  TX_DEFAULT_TIMEOUT_MS: { schema: int(100, 3_600_000), default: '30000', problem: 'must be an integer between 100 and 3600000' },
  COORDINATOR_API_KEYS: { schema: z.string().regex(/^[^,\s]{16,}(,[^,\s]{16,})*$/).optional(), problem: 'must be a comma-separated list of keys of at least 16 characters', secret: true },
  TX_MESSAGE_SECRET: { schema: z.string().min(16).optional(), problem: 'must be at least 16 characters', secret: true },
  TX_PARTICIPANT_URLS: {
    schema: z.string().regex(/^[A-Za-z0-9._-]{1,100}=https?:\/\/[^\s,=]+(,[A-Za-z0-9._-]{1,100}=https?:\/\/[^\s,=]+)*$/).optional(),
    problem: 'must be a comma-separated list of name=http(s)://host:port',
  },
  COORDINATOR_URL: { schema: z.string().url().regex(/^https?:\/\//), default: 'http://localhost:3000', problem: 'must be an http(s) URL' },
  KAFKA_MAX_WAIT_MS: { schema: int(1, 10_000), default: '100', problem: 'must be an integer between 1 and 10000' },
  KAFKA_SESSION_TIMEOUT_MS: { schema: int(1000, 300_000), default: '10000', problem: 'must be an integer between 1000 and 300000' },
  TX_RESEND_INITIAL_MS: { schema: int(10, 60_000), default: '500', problem: 'must be an integer between 10 and 60000' },
  TX_RESEND_MAX_MS: { schema: int(10, 600_000), default: '15000', problem: 'must be an integer between 10 and 600000' },
  TX_SWEEP_INTERVAL_MS: { schema: int(100, 600_000), default: '5000', problem: 'must be an integer between 100 and 600000' },
  TX_BODY_LIMIT_BYTES: { schema: int(1024, 16 * 1024 * 1024), default: String(256 * 1024), problem: 'must be an integer between 1024 and 16777216' },
  LOG_LEVEL: { schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), default: 'info', problem: 'must be one of trace, debug, info, warn, error, fatal, silent' },
  TX_EMBEDDED_DATA_DIR: { schema: z.string().min(1), default: '.data/coordinator', problem: 'must be a folder path' },
  TX_STUCK_AFTER_MS: { schema: int(1000, 86_400_000), default: '60000', problem: 'must be an integer between 1000 and 86400000' },
  TX_RETENTION_MS: {
    schema: z.coerce.number().int().refine((n) => n === 0 || (n >= 1000 && n <= 31_536_000_000)),
    default: '604800000',
    problem: 'must be 0 (keep finished transactions) or an integer between 1000 and 31536000000',
  },
  TX_BREAKER_ERROR_PERCENT: { schema: int(1, 100), default: '50', problem: 'must be an integer between 1 and 100' },
  TX_BREAKER_VOLUME: { schema: int(1, 10_000), default: '5', problem: 'must be an integer between 1 and 10000' },
  TX_BREAKER_WINDOW_MS: { schema: int(1000, 600_000), default: '10000', problem: 'must be an integer between 1000 and 600000' },
  TX_BREAKER_RESET_MS: { schema: int(100, 600_000), default: '5000', problem: 'must be an integer between 100 and 600000' },
  TX_DB_TIMEOUT_MS: { schema: int(100, 600_000), default: '10000', problem: 'must be an integer between 100 and 600000' },
  TX_RATE_LIMIT_PER_MINUTE: { schema: int(0, 10_000_000), default: '6000', problem: 'must be an integer between 0 (no limit) and 10000000' },
  TX_SHUTDOWN_DELAY_MS: { schema: int(0, 600_000), default: '0', problem: 'must be an integer between 0 and 600000' },
  TX_SHUTDOWN_TIMEOUT_MS: { schema: int(1000, 3_600_000), default: '20000', problem: 'must be an integer between 1000 and 3600000' },
  TX_TEST_CRASH_AT: { schema: z.string().optional(), problem: 'is test-only' },
} as const;

type Rules = typeof rules;
type Values = { [K in keyof Rules]: z.infer<Rules[K]['schema']> };

export function loadConfig(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const v = {} as Record<string, unknown>;
  for (const [name, rule] of Object.entries(rules) as [keyof Rules, Rules[keyof Rules]][]) {
    const raw = env[name] === '' ? undefined : env[name];
    const result = rule.schema.safeParse(raw ?? ('default' in rule ? rule.default : undefined));
    if (!result.success) {
      const shown = 'secret' in rule ? undefined : 'shown' in rule && raw !== undefined ? rule.shown(raw) : raw;
      throw new ConfigError(name, rule.problem, shown);
    }
    v[name] = result.data;
  }
  const c = v as Values;
  if (c.TX_RESEND_MAX_MS < c.TX_RESEND_INITIAL_MS) {
    throw new ConfigError('TX_RESEND_MAX_MS', 'must not be below TX_RESEND_INITIAL_MS', String(c.TX_RESEND_MAX_MS));
  }
  if (c.TX_SHUTDOWN_DELAY_MS >= c.TX_SHUTDOWN_TIMEOUT_MS) {
    throw new ConfigError('TX_SHUTDOWN_DELAY_MS', 'must be below TX_SHUTDOWN_TIMEOUT_MS', String(c.TX_SHUTDOWN_DELAY_MS));
  }
  try {
    coordinatorCrashSpec(c.TX_TEST_CRASH_AT);
  } catch (err) {
    throw new ConfigError('TX_TEST_CRASH_AT', (err as Error).message.replace(/^TX_TEST_CRASH_AT /, '').replace(/ \(test only; got .*$/, ' (test only)'), c.TX_TEST_CRASH_AT);
  }
  return {
    port: c.PORT,
    databaseUrl: c.DATABASE_URL ?? null,
    kafkaBrokers: c.KAFKA_BROKERS ? c.KAFKA_BROKERS.split(',') : [],
    topicPrefix: c.TX_TOPIC_PREFIX,
    defaultTimeoutMs: c.TX_DEFAULT_TIMEOUT_MS,
    apiKeys: c.COORDINATOR_API_KEYS ? c.COORDINATOR_API_KEYS.split(',') : [],
    messageSecret: c.TX_MESSAGE_SECRET ?? null,
    coordinatorUrl: c.COORDINATOR_URL.replace(/\/$/, ''),
    participantUrls: participantUrls(c.TX_PARTICIPANT_URLS),
    kafkaMaxWaitMs: c.KAFKA_MAX_WAIT_MS,
    kafkaSessionTimeoutMs: c.KAFKA_SESSION_TIMEOUT_MS,
    resendInitialMs: c.TX_RESEND_INITIAL_MS,
    resendMaxMs: c.TX_RESEND_MAX_MS,
    sweepIntervalMs: c.TX_SWEEP_INTERVAL_MS,
    bodyLimitBytes: c.TX_BODY_LIMIT_BYTES,
    logLevel: c.LOG_LEVEL,
    embeddedDataDir: c.TX_EMBEDDED_DATA_DIR,
    stuckAfterMs: c.TX_STUCK_AFTER_MS,
    retentionMs: c.TX_RETENTION_MS,
    breaker: {
      errorThresholdPercentage: c.TX_BREAKER_ERROR_PERCENT,
      volumeThreshold: c.TX_BREAKER_VOLUME,
      windowMs: c.TX_BREAKER_WINDOW_MS,
      resetTimeoutMs: c.TX_BREAKER_RESET_MS,
      timeoutMs: 0,
    },
    dbTimeoutMs: c.TX_DB_TIMEOUT_MS,
    rateLimitPerMinute: c.TX_RATE_LIMIT_PER_MINUTE,
    shutdownDelayMs: c.TX_SHUTDOWN_DELAY_MS,
    shutdownTimeoutMs: c.TX_SHUTDOWN_TIMEOUT_MS,
    testCrashAt: c.TX_TEST_CRASH_AT ?? null,
  };
}

/** `name=url,name=url` → map; each URL must parse and each name appear once. */
function participantUrls(raw: string | undefined): Map<string, string> {
  const urls = new Map<string, string>();
  for (const entry of raw ? raw.split(',') : []) {
    const at = entry.indexOf('=');
    const [name, url] = [entry.slice(0, at), entry.slice(at + 1)];
    if (!URL.canParse(url)) throw new ConfigError('TX_PARTICIPANT_URLS', `has an invalid URL for ${name}`, raw);
    if (urls.has(name)) throw new ConfigError('TX_PARTICIPANT_URLS', `names ${name} twice`, raw);
    urls.set(name, url.replace(/\/+$/, ''));
  }
  return urls;
}

/** Nest injection token of the validated configuration. */
export const CONFIG = Symbol('CoordinatorConfig');
