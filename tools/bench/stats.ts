/** Figures for the benchmark: percentiles, and CPU and memory of a process read from /proc. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The p-th percentile (0..100) of samples, nearest rank; NaN when there are none. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Latency {
  p50: number;
  p95: number;
  p99: number;
}

export function latency(samples: number[]): Latency {
  return { p50: percentile(samples, 50), p95: percentile(samples, 95), p99: percentile(samples, 99) };
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
}

/**
 * Seconds the process's main thread has spent runnable but waiting for a core (the second field
 * of /proc/<pid>/schedstat): what CPU figures do not show when every core is taken.
 */
export function runQueueSeconds(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
}

/** Each process's share of a core between two readings of CPU seconds by name, as `name %` (100: one core busy). */
export function cpuPercents(before: Map<string, number>, now: Map<string, number>, seconds: number): string[] {
  return [...now].map(([name, v]) => `${name} ${(((v - (before.get(name) ?? v)) / seconds) * 100).toFixed(0)}`);
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Samples one process while a measurement runs: its CPU use over the window (in cores: 1.0 is
 * one core busy all the time) and its peak resident memory, read every 200 ms.
 */
export class ProcessSampler {
  private readonly startCpu: number;
  private readonly startAt = Date.now();
  private peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.startCpu = cpuSeconds(pid);
    this.peak = rssBytes(pid);
    this.timer = setInterval(() => {
      try {
        this.peak = Math.max(this.peak, rssBytes(pid));
      } catch {
        /* the process is gone; stop() reports what was seen */
      }
    }, 200);
    this.timer.unref();
  }

  stop(): { cpuCores: number; peakRssMb: number } {
    clearInterval(this.timer);
    let cpu = NaN;
    try {
      this.peak = Math.max(this.peak, rssBytes(this.pid));
      cpu = (cpuSeconds(this.pid) - this.startCpu) / ((Date.now() - this.startAt) / 1000);
    } catch {
      /* the process is gone */
    }
    return { cpuCores: cpu, peakRssMb: this.peak / (1024 * 1024) };
  }
}
