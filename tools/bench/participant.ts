/**
 * A participant for the benchmark: the participant library with handlers that do no business
 * work (prepare votes yes, commit and abort do nothing), so the figures are the protocol's cost:
 * the library still records every step durably in its Postgres before it answers.
 *
 *   DATABASE_URL=… KAFKA_BROKERS=… node dist/tools/bench/participant.js --name p1
 *   DATABASE_URL=… COORDINATOR_URL=… PORT=4001 node dist/tools/bench/participant.js --name p1
 *
 * Prints `bench participant ready` (with its `url` over HTTP) once it receives.
 */
import pino from 'pino';
import { startParticipant } from '../../libs/participant';

async function main(): Promise<void> {
  const i = process.argv.indexOf('--name');
  const name = i >= 0 ? process.argv[i + 1] : undefined;
  if (!name) throw new Error('usage: participant.js --name <name>');
  const logger = pino({ name: `bench-${name}`, level: process.env.LOG_LEVEL || 'warn' });
  const runtime = await startParticipant({
    name,
    logger,
    participant: {
      prepare: async () => 'yes',
      preCommit: async () => undefined,
      commit: async () => undefined,
      abort: async () => undefined,
    },
  });
  process.stdout.write(`${JSON.stringify({ msg: 'bench participant ready', name, url: runtime.url })}\n`);
  const stop = () => void runtime.stop().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`bench participant: ${(err as Error).message}\n`);
  process.exit(1);
});
