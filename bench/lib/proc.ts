/** CPU and memory of other processes, read from /proc (Linux), so nothing is asked of the process measured. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | null = null;

function clockTicks(): number {
  if (ticksPerSecond === null) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

export interface ProcSample {
  at: number;
  /** User + system CPU time in milliseconds. */
  cpuMs: number;
  rssBytes: number;
}

export function sampleProcess(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /VmRSS:\s+(\d+) kB/.exec(status);
  return { at: performance.now(), cpuMs: ((utime + stime) * 1000) / clockTicks(), rssBytes: rss ? Number(rss[1]) * 1024 : 0 };
}

/** CPU % of one core between two samples. */
export function cpuPercent(from: ProcSample, to: ProcSample): number {
  const wall = to.at - from.at;
  return wall > 0 ? ((to.cpuMs - from.cpuMs) / wall) * 100 : 0;
}

export interface MachineSample {
  busy: number;
  total: number;
}

export function sampleMachine(): MachineSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  const total = values.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Share of all cores busy between two samples, 0–100. */
export function machineBusyPercent(from: MachineSample, to: MachineSample): number {
  const total = to.total - from.total;
  return total > 0 ? ((to.busy - from.busy) / total) * 100 : 0;
}
