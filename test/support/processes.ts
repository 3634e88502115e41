import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((c) => c.kill('SIGKILL')));

export interface RunningProcess {
  child: ChildProcess;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Resolves when a printed line matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGKILL: no chance to clean up, as in a crash. */
  kill(): Promise<void>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

/** Starts a built app from dist/ (the suite's global setup builds it). */
export function startApp(entry: string, args: string[], env: Record<string, string>): RunningProcess {
  const child = spawn(process.execPath, [join(ROOT, 'dist', entry), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    listeners.forEach((l) => l());
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { live.delete(child); listeners.forEach((l) => l()); resolve(code); }));
  const waitFor = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = out.split('\n').find((l) => pattern.test(l));
        if (line !== undefined) return done(() => resolve(line));
        if (child.exitCode !== null || child.signalCode !== null) done(() => reject(new Error(`${entry} exited before printing ${pattern}:\n${out.slice(-3000)}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${entry} did not print ${pattern} within ${timeoutMs} ms:\n${out.slice(-3000)}`))), timeoutMs);
      const done = (f: () => void) => { clearTimeout(timer); listeners.delete(check); f(); };
      listeners.add(check);
      check();
    });
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  return { child, output: () => out, waitFor, kill: () => signal('SIGKILL'), stop: () => signal('SIGTERM'), exited };
}

/** Polls a URL until it answers 200. */
export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    try {
      const r = await fetch(url);
      if (r.status === 200) return;
      last = `${r.status} ${await r.text()}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms: ${last}`);
}

/** A TCP port that was free a moment ago (the OS picks it); the tools' helper, shared. */
export { freePort } from '../../tools/support/ports';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `read` until `ok` holds for its value. */
export async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const until = Date.now() + timeoutMs;
  let v = await read();
  while (!ok(v)) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(v).slice(0, 2000)}`);
    await sleep(100);
    v = await read();
  }
  return v;
}
