#!/usr/bin/env node
/**
 * txctl: the operator's command line for a running coordinator (over its REST API).
 *
 *   npx txctl list [--state s] [--participant p] [--limit n]
 *   npx txctl show <id>
 *   npx txctl follow <id> [--interval ms] [--timeout s]
 *   npx txctl resend <id> [--reason text]
 *   npx txctl abort <id> [--reason text]
 *   npx txctl audit [<id>] [--limit n]
 *
 * COORDINATOR_URL (default http://localhost:3000) and TXCTL_API_KEY (else COORDINATOR_API_KEY).
 * Exit codes: 0 done, 1 failed (unreachable, unauthorized, server error), 2 usage, 3 refused
 * (409: the action contradicts the transaction's outcome), 4 not found, 5 follow timed out.
 */
import { parseArgs } from 'node:util';
import { Client, HttpError } from './client';
import { formatAudit, formatList, formatShow, formatTransition, Tx } from './format';

export const USAGE = `usage: txctl <command> [options]

commands:
  list [--state <s>] [--participant <p>] [--limit <n>]   transactions, newest first (default limit 20)
  show <id>                                              one transaction with its participants
  follow <id> [--interval <ms>] [--timeout <s>]          print each change until it finishes
  resend <id> [--reason <text>]                          send the recorded outcome again now to
                                                         participants that have not acknowledged
  abort <id> [--reason <text>]                           abort a transaction that has no decision
  audit [<id>] [--limit <n>]                             the record of resend and abort actions

options:
  --url <url>     the coordinator (default: COORDINATOR_URL, else http://localhost:3000)
  --json          print the API's JSON instead of text
  -h, --help      this text

environment: COORDINATOR_URL, TXCTL_API_KEY (or COORDINATOR_API_KEY): sent as Authorization: Bearer.
exit codes: 0 done, 1 failed, 2 usage, 3 refused, 4 not found, 5 follow timed out.`;

const STATES = ['active', 'preparing', 'precommitted', 'committing', 'aborting', 'committed', 'aborted'];
const FINISHED = new Set(['committed', 'aborted']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class UsageError extends Error {}

interface Io {
  out(line: string): void;
  err(line: string): void;
}

const stdio: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function positiveInt(raw: string | undefined, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new UsageError(`--${name} must be an integer between 1 and ${max}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function txId(positionals: string[], command: string): string {
  const [id, ...rest] = positionals;
  if (id === undefined) throw new UsageError(`${command} needs a transaction id`);
  if (rest.length) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
  if (!UUID.test(id)) throw new UsageError(`${JSON.stringify(id)} is not a transaction id (a UUID)`);
  return id;
}

/** Runs one command line; resolves with the exit code. */
export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env, io: Io = stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        state: { type: 'string' },
        participant: { type: 'string' },
        limit: { type: 'string' },
        interval: { type: 'string' },
        timeout: { type: 'string' },
        reason: { type: 'string' },
      },
    });
  } catch (err) {
    io.err(`txctl: ${(err as Error).message}\n(txctl --help for usage)`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  const [command, ...args] = positionals;
  if (o.help || command === 'help') {
    io.out(USAGE);
    return 0;
  }
  if (!command) {
    io.err(USAGE);
    return 2;
  }

  const base = o.url ?? env.COORDINATOR_URL ?? 'http://localhost:3000';
  if (!/^https?:\/\/[^\s]+$/.test(base) || !URL.canParse(base)) {
    io.err(`txctl: the coordinator URL must be an http(s) URL, got ${JSON.stringify(base)}`);
    return 2;
  }
  const client = new Client(base, env.TXCTL_API_KEY || env.COORDINATOR_API_KEY || undefined);
  const print = (value: unknown, text: () => string) => io.out(o.json ? JSON.stringify(value, null, 2) : text());
  const allowed = (names: string[]) => {
    for (const name of ['state', 'participant', 'limit', 'interval', 'timeout', 'reason'] as const) {
      if (o[name] !== undefined && !names.includes(name)) throw new UsageError(`${command} does not take --${name}`);
    }
  };

  try {
    switch (command) {
      case 'list': {
        allowed(['state', 'participant', 'limit']);
        if (args.length) throw new UsageError(`unexpected argument ${JSON.stringify(args[0])}`);
        if (o.state !== undefined && !STATES.includes(o.state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
        const limit = positiveInt(o.limit, 'limit', 20, 10_000);
        const items = await client.list({ state: o.state, participant: o.participant, limit });
        print(items, () => formatList(items));
        return 0;
      }
      case 'show': {
        allowed([]);
        const tx = await client.get(txId(args, command));
        print(tx, () => formatShow(tx));
        return 0;
      }
      case 'follow': {
        allowed(['interval', 'timeout']);
        return await follow(client, txId(args, command), positiveInt(o.interval, 'interval', 500, 60_000),
          o.timeout === undefined ? null : positiveInt(o.timeout, 'timeout', 0, 86_400) * 1000, o.json === true, io);
      }
      case 'resend': {
        allowed(['reason']);
        const r = await client.action(txId(args, command), 'resend', o.reason);
        print(r, () => (r.result === 'resent'
          ? `resent to ${r.sent.length} participant(s): ${r.sent.join(', ')} (transaction ${r.transaction.id}, ${r.transaction.state}, outcome ${r.transaction.outcome})`
          : `nothing to resend: every participant has acknowledged (transaction ${r.transaction.id}, ${r.transaction.state}, outcome ${r.transaction.outcome})`));
        return 0;
      }
      case 'abort': {
        allowed(['reason']);
        const r = await client.action(txId(args, command), 'abort', o.reason);
        print(r, () => (r.result === 'aborted'
          ? `aborted transaction ${r.transaction.id} (now ${r.transaction.state}; abort sent to ${r.sent.length} participant(s))`
          : `transaction ${r.transaction.id} was already aborted (${r.transaction.state}, reason ${r.transaction.reason ?? '-'})`));
        return 0;
      }
      case 'audit': {
        allowed(['limit']);
        if (args.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(args[1])}`);
        const id = args.length ? txId(args, command) : undefined;
        const items = await client.audit(id, positiveInt(o.limit, 'limit', 50, 500));
        print(items, () => formatAudit(items));
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`txctl: ${err.message}\n(txctl --help for usage)`);
      return 2;
    }
    if (err instanceof HttpError) {
      io.err(`txctl: ${err.describe(command)}`);
      return err.status === 404 ? 4 : err.status === 409 ? 3 : 1;
    }
    io.err(`txctl: cannot reach the coordinator at ${base}: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`);
    return 1;
  }
}

/** Polls one transaction and prints a line for each change of state, outcome or acknowledgements. */
async function follow(client: Client, id: string, intervalMs: number, timeoutMs: number | null, json: boolean, io: Io): Promise<number> {
  const until = timeoutMs === null ? Infinity : Date.now() + timeoutMs;
  let last: Tx | null = null;
  let lastKey = '';
  for (;;) {
    const tx = await client.get(id);
    const key = JSON.stringify([tx.state, tx.outcome, tx.reason, tx.participants.map((p) => [p.name, p.vote, p.acked])]);
    if (key !== lastKey) {
      io.out(json ? JSON.stringify(tx) : formatTransition(last, tx));
      last = tx;
      lastKey = key;
    }
    if (FINISHED.has(tx.state)) return 0;
    if (Date.now() >= until) {
      io.err(`txctl: transaction ${id} is still ${tx.state} after ${timeoutMs! / 1000} s`);
      return 5;
    }
    await sleep(Math.min(intervalMs, Math.max(0, until - Date.now())));
  }
}

if (require.main === module) {
  run(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
