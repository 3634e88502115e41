/**
 * The load: a fixed number of clients, each in a closed loop (begin with participants, then commit
 * and wait for the outcome; then the next), over keep-alive HTTP connections to the REST API.
 */
import { Agent, request } from 'node:http';

export interface LoadSettings {
  coordinatorUrl: string;
  protocol: '2pc' | '3pc';
  participants: { name: string; url: string | null }[];
  concurrency: number;
  /** Measured time; before it, `warmupMs` of the same load is run and not counted. */
  durationMs: number;
  warmupMs: number;
}

export interface LoadResult {
  committed: number;
  aborted: number;
  errors: number;
  seconds: number;
  /** Begin to outcome, per committed transaction, in ms. */
  latencies: number[];
  firstError?: string;
}

export async function runLoad(s: LoadSettings): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: s.concurrency });
  const target = new URL(s.coordinatorUrl);
  const call = (method: string, path: string, body?: unknown) => json(agent, target, method, path, body);
  const participants = s.participants.map((p) => ({ name: p.name, payload: {}, ...(p.url ? { url: p.url } : {}) }));
  const beginBody = { protocol: s.protocol, participants, timeoutMs: 30_000 };
  const result: LoadResult = { committed: 0, aborted: 0, errors: 0, seconds: 0, latencies: [] };
  const measureFrom = Date.now() + s.warmupMs;
  const end = measureFrom + s.durationMs;

  const client = async () => {
    while (Date.now() < end) {
      const t0 = performance.now();
      const started = Date.now();
      try {
        const begun = await call('POST', '/v1/transactions', beginBody);
        if (begun.status !== 201) throw new Error(`begin answered ${begun.status}: ${JSON.stringify(begun.body).slice(0, 200)}`);
        const done = await call('POST', `/v1/transactions/${begun.body.id}/commit?waitMs=30000`);
        if (done.status !== 200) throw new Error(`commit answered ${done.status}: ${JSON.stringify(done.body).slice(0, 200)}`);
        if (started < measureFrom) continue;
        if (done.body.outcome === 'commit') {
          result.committed++;
          result.latencies.push(performance.now() - t0);
        } else {
          result.aborted++;
        }
      } catch (err) {
        if (started >= measureFrom) {
          result.errors++;
          result.firstError ??= (err as Error).message;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await Promise.all(Array.from({ length: s.concurrency }, client));
  result.seconds = (Date.now() - measureFrom) / 1000;
  agent.destroy();
  return result;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function json(agent: Agent, target: URL, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method,
        path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: text });
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
