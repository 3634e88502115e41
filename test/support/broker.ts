/**
 * A real Kafka-protocol broker for tests: librdkafka's mock cluster behind the small launcher in
 * tools/kafka-test-broker (see its README). Each call starts its own cluster on free ports of
 * 127.0.0.1; faults are injected through the launcher's stdin commands.
 *
 *   const broker = await startTestBroker();
 *   const kafka = new Kafka({ brokers: broker.brokers });
 *   await broker.down(1); ... await broker.up(1);
 *   await broker.stop();
 *
 * Topics auto-create on produce and on subscribe with 4 partitions (the mock's default); use
 * createTopic() for another partition count. kafkajs admin.createTopics does not work on the mock.
 */
import { ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const TOOL_DIR = join(__dirname, '..', '..', 'tools', 'kafka-test-broker');
const BUILD_SCRIPT = join(TOOL_DIR, 'build.sh');
const BINARY = join(TOOL_DIR, 'kafka-test-broker');
const START_TIMEOUT_MS = 15_000;
const COMMAND_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

export interface TestBroker {
  /** Bootstrap servers, comma-separated ("127.0.0.1:port,..."). */
  readonly bootstrap: string;
  /** The same, one "host:port" per broker (broker i+1 is brokers[i]). */
  readonly brokers: string[];
  /** Process id of the launcher. */
  readonly pid: number;
  /** Sends one raw command line; resolves with the "OK" line, rejects with the "ERR ..." line. */
  command(cmd: string): Promise<string>;
  /** Creates a topic with replication factor 1 (rejects when it exists). */
  createTopic(name: string, partitions?: number): Promise<void>;
  /** Takes a broker down: its connections are dropped and new ones are closed at once. */
  down(id?: number): Promise<void>;
  /** Brings a broker back up. */
  up(id?: number): Promise<void>;
  /** Sets a broker's added round-trip time in milliseconds (0 removes it). */
  rtt(id: number, ms: number): Promise<void>;
  /** The next `count` requests with Kafka API key `apiKey` fail with Kafka error code `errorCode`. */
  error(apiKey: number, errorCode: number, count?: number): Promise<void>;
  /** Shuts the cluster down; safe to call more than once. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcessWithoutNullStreams>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

function isBuilt(): boolean {
  try {
    const bin = statSync(BINARY).mtimeMs;
    return bin > statSync(join(TOOL_DIR, 'broker.c')).mtimeMs && bin > statSync(BUILD_SCRIPT).mtimeMs;
  } catch {
    return false;
  }
}

/** Builds the launcher when it is missing or older than its source (tools/kafka-test-broker/build.sh). */
export function buildTestBroker(): Promise<string> {
  if (isBuilt()) return Promise.resolve(BINARY);
  return new Promise((resolve, reject) => {
    execFile('bash', [BUILD_SCRIPT], { timeout: 120_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`building the Kafka test broker failed: ${stderr.trim() || err.message}`));
      else resolve(BINARY);
    });
  });
}

export async function startTestBroker(opts: { brokers?: number } = {}): Promise<TestBroker> {
  const count = opts.brokers ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new Error(`brokers must be 1..64, got ${count}`);
  await buildTestBroker();
  installExitHook();

  const child = spawn(BINARY, [String(count)], { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);

  let stderrTail = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-4000);
  });
  // A write after the child died must not crash the test process.
  child.stdin.on('error', () => undefined);

  type Pending = { resolve(line: string): void; reject(err: Error): void };
  const pending: Pending[] = [];
  let exited = false;
  let onBootstrap: Pending | undefined;

  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      live.delete(child);
      const why = new Error(
        `kafka-test-broker exited (code ${code}, signal ${signal})${stderrTail ? `: ${stderrTail.trim()}` : ''}`,
      );
      onBootstrap?.reject(why);
      for (const p of pending.splice(0)) p.reject(why);
      resolve();
    });
  });
  child.once('error', (err) => {
    onBootstrap?.reject(err);
    for (const p of pending.splice(0)) p.reject(err);
  });

  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    if (onBootstrap) {
      const p = onBootstrap;
      onBootstrap = undefined;
      p.resolve(line);
      return;
    }
    pending.shift()?.resolve(line);
  });

  let bootstrapLine: string;
  try {
    bootstrapLine = await withTimeout(
      new Promise<string>((resolve, reject) => {
        onBootstrap = { resolve, reject };
      }),
      START_TIMEOUT_MS,
      'kafka-test-broker did not print its BOOTSTRAP line',
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const match = /^BOOTSTRAP (\S+)$/.exec(bootstrapLine);
  if (!match) {
    child.kill('SIGKILL');
    throw new Error(`kafka-test-broker printed "${bootstrapLine}" instead of "BOOTSTRAP <servers>"`);
  }
  const bootstrap = match[1];

  let stopping: Promise<void> | undefined;

  // Commands are answered in order, one line each; the pending queue pairs answers with requests.
  const command = (cmd: string): Promise<string> => {
    if (/[\r\n]/.test(cmd)) return Promise.reject(new Error('a command is one line'));
    if (exited || stopping) return Promise.reject(new Error('kafka-test-broker is not running'));
    const answer = new Promise<string>((resolve, reject) => {
      pending.push({ resolve, reject });
      child.stdin.write(`${cmd}\n`);
    });
    return withTimeout(answer, COMMAND_TIMEOUT_MS, `kafka-test-broker did not answer "${cmd}"`).then((line) => {
      if (line.startsWith('ERR')) throw new Error(`kafka-test-broker: "${cmd}": ${line}`);
      return line;
    });
  };
  const ok = (cmd: string) => command(cmd).then(() => undefined);

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        child.stdin.end(); // EOF: the launcher destroys the cluster and exits
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exitedPromise;
        clearTimeout(timer);
      }
      lines.close();
    })();
    return stopping;
  };

  return {
    bootstrap,
    brokers: bootstrap.split(','),
    pid: child.pid ?? -1,
    command,
    createTopic: (name, partitions = 1) => ok(`create ${name} ${partitions}`),
    down: (id = 1) => ok(`down ${id}`),
    up: (id = 1) => ok(`up ${id}`),
    rtt: (id, ms) => ok(`rtt ${id} ${ms}`),
    error: (apiKey, errorCode, count = 1) => ok(`error ${apiKey} ${errorCode} ${count}`),
    stop,
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
