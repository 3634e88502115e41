/** Child processes of the chaos run and the benchmark: started from dist/, logs appended to a file, killed with SIGKILL. */
import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, WriteStream } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');
const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((c) => c.kill('SIGKILL')));

export class ManagedProcess {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private readonly log: WriteStream;
  starts = 0;
  /** Set by kill()/stop(): the next exit was asked for. */
  private expectExit = false;
  /** Called when the process exits without kill()/stop() (it crashed on its own). */
  onUnexpectedExit?: () => void;

  constructor(
    readonly label: string,
    private readonly entry: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
    logFile: string,
    /** Resolves when the process is ready to work. */
    private readonly ready: (p: ManagedProcess, lineSeen: (re: RegExp) => Promise<string>) => Promise<unknown>,
    /** Options for node itself (for example --cpu-prof). */
    private readonly nodeArgs: string[] = [],
  ) {
    this.log = createWriteStream(logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(timeoutMs = 90_000): Promise<void> {
    this.starts++;
    this.expectExit = false;
    const child = spawn(process.execPath, [...this.nodeArgs, join(ROOT, 'dist', this.entry), ...this.args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    live.add(child);
    this.log.write(`\n### ${this.label}: start #${this.starts} pid ${child.pid} at ${new Date().toISOString()}\n`);
    const watchers = new Set<(line: string) => void>();
    let tail = '';
    const onData = (d: Buffer) => {
      this.log.write(d);
      const text = tail + d.toString();
      const parts = text.split('\n');
      tail = parts.pop() ?? '';
      for (const l of parts) watchers.forEach((w) => w(l));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.log.write(`\n### ${this.label}: exit code ${code} signal ${signal} at ${new Date().toISOString()}\n`);
        resolve();
        if (!this.expectExit) this.onUnexpectedExit?.();
      }),
    );
    const lineSeen = (re: RegExp) =>
      new Promise<string>((resolve, reject) => {
        const w = (l: string) => {
          if (re.test(l)) {
            watchers.delete(w);
            resolve(l);
          }
        };
        watchers.add(w);
        void this.exited!.then(() => reject(new Error(`${this.label} exited while starting`)));
      });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.ready(this, lineSeen),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${this.label} not ready within ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** kill -9: no chance to clean up. */
  async kill(): Promise<void> {
    this.expectExit = true;
    if (this.running) this.child!.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    this.expectExit = true;
    if (this.running) {
      this.child!.kill('SIGTERM');
      const t = setTimeout(() => this.child?.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(t);
    }
    await new Promise((r) => this.log.end(r));
  }
}
