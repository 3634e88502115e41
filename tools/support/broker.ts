/**
 * The Kafka test broker (tools/kafka-test-broker: librdkafka's mock cluster) as a child process
 * with fault commands, for the chaos run and the benchmark. The same launcher the jest suites drive through
 * test/support/broker.ts; this copy lives in tools/ because tools/ is built without test/.
 */
import { ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const TOOL_DIR = join(__dirname, '..', '..', '..', 'tools', 'kafka-test-broker');

export interface BrokerProcess {
  bootstrap: string;
  pid: number;
  command(cmd: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startBroker(brokers = 1): Promise<BrokerProcess> {
  execFileSync('bash', [join(TOOL_DIR, 'build.sh')], { stdio: 'inherit' });
  const child: ChildProcessWithoutNullStreams = spawn(join(TOOL_DIR, 'kafka-test-broker'), [String(brokers)], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr.resume();
  child.stdin.on('error', () => undefined);
  const lines = createInterface({ input: child.stdout });
  const queue: ((line: string) => void)[] = [];
  let exited = false;
  child.once('exit', () => {
    exited = true;
    for (const q of queue.splice(0)) q('ERR exited');
  });
  lines.on('line', (l) => queue.shift()?.(l));
  const first = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('kafka-test-broker did not start')), 15_000);
    queue.push((l) => {
      clearTimeout(t);
      resolve(l);
    });
  });
  const m = /^BOOTSTRAP (\S+)$/.exec(first);
  if (!m) throw new Error(`kafka-test-broker printed ${first}`);
  let chain = Promise.resolve();
  const command = (cmd: string) => {
    const run = chain.then(
      () =>
        new Promise<void>((resolve, reject) => {
          if (exited) return reject(new Error('broker exited'));
          queue.push((l) => (l.startsWith('OK') ? resolve() : reject(new Error(`broker: ${cmd}: ${l}`))));
          child.stdin.write(`${cmd}\n`);
        }),
    );
    chain = run.catch(() => undefined);
    return run;
  };
  return {
    bootstrap: m[1],
    pid: child.pid!,
    command,
    async stop() {
      if (exited) return;
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    },
  };
}
