import { randomBytes } from 'node:crypto';
import { freshDatabase } from './postgres';
import { freePort, RunningProcess, startApp, waitForHttp } from './processes';

/** The protocol's carrier: Kafka (needs brokers and a topic prefix) or HTTP (CONTRACT section 3b). */
export type TestTransport =
  | { transport?: 'kafka'; brokers: string; prefix: string }
  | { transport: 'http' };

/** A coordinator process on its own database (and topic prefix), tuned for fast tests. */
export interface TestCoordinator {
  url: string;
  env: Record<string, string>;
  proc: RunningProcess;
  /** Kills -9 and starts again on the same database, port and topics. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export function uniquePrefix(): string {
  return `t${randomBytes(4).toString('hex')}.`;
}

export async function startCoordinator(opts: TestTransport & { database: string; env?: Record<string, string> }): Promise<TestCoordinator> {
  const port = await freePort();
  const env: Record<string, string> = {
    PORT: String(port),
    DATABASE_URL: await freshDatabase(opts.database),
    ...kafkaEnv(opts),
    TX_RESEND_INITIAL_MS: '200',
    TX_RESEND_MAX_MS: '1000',
    TX_SWEEP_INTERVAL_MS: '1000',
    ...opts.env,
  };
  const url = `http://127.0.0.1:${port}`;
  const launch = async () => {
    const proc = startApp('apps/coordinator/main.js', [], env);
    await Promise.race([waitForHttp(`${url}/health/ready`), proc.exited.then(() => { throw new Error(`coordinator exited:\n${proc.output()}`); })]);
    return proc;
  };
  const c: TestCoordinator = {
    url,
    env,
    proc: await launch(),
    async restart() {
      await c.proc.kill();
      c.proc = await launch();
    },
    stop: () => c.proc.stop(),
  };
  return c;
}

/** Kafka's variables, tuned for the test broker; none over HTTP. */
function kafkaEnv(t: TestTransport): Record<string, string> {
  if (t.transport === 'http') return {};
  return { KAFKA_BROKERS: t.brokers, TX_TOPIC_PREFIX: t.prefix, KAFKA_MAX_WAIT_MS: '5', KAFKA_SESSION_TIMEOUT_MS: '6000' };
}

/** A running example participant; over HTTP, `url` is where the coordinator reaches it. */
export interface TestParticipant extends RunningProcess {
  url: string | null;
}

/**
 * An example participant (inventory) process on its own database. Over HTTP it listens on `port`
 * (default: a free one) and posts to `coordinatorUrl`.
 */
export async function startParticipant(
  name: string,
  opts: TestTransport & { databaseUrl: string; port?: number; coordinatorUrl?: string; env?: Record<string, string> },
): Promise<TestParticipant> {
  const args = ['--name', name];
  const env: Record<string, string> = { DATABASE_URL: opts.databaseUrl, ...kafkaEnv(opts) };
  if (opts.transport === 'http') {
    args.push('--port', String(opts.port ?? (await freePort())));
    if (opts.coordinatorUrl) env.COORDINATOR_URL = opts.coordinatorUrl;
  }
  const proc = startApp('apps/participant-example/main.js', args, { ...env, ...opts.env });
  const ready = await proc.waitFor(/participant ready/);
  return Object.assign(proc, { url: (JSON.parse(ready) as { url?: string }).url ?? null });
}

/** Calls the coordinator's REST API; returns status, headers and parsed JSON (or text). */
export async function api(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const r = await fetch(base + path, init);
  const text = await r.text();
  let json: any;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, headers: r.headers, body: json };
}
