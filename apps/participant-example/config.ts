import { PARTICIPANT_NAME } from '../../libs/protocol';
import { defaultTransportOptions, validateDatabaseUrl } from '../../libs/participant';

/** A configuration problem; the message is the one line printed before exiting. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface ExampleConfig {
  name: string;
  /** Quantity a SKU starts with the first time this participant sees it. */
  initialStock: number;
  /** null: an embedded Postgres (PGlite) in `dataDir`, for trying the example out. */
  databaseUrl: string | null;
  /** Folder of the embedded Postgres when DATABASE_URL is not set (default `.data/<name>`). */
  dataDir: string;
  /** HTTP transport: the port of its message endpoint (default: the library's, env PORT or 4000). */
  port?: number;
}

export const USAGE = 'usage: participant-example --name <name> [--stock <n>] [--port <n>] [--data-dir <folder>]';

const OPTIONS = ['name', 'stock', 'port', 'data-dir'];

/** Reads `--name <name>` / `--name=<name>`, `--stock <n>`, `--port <n>`, `--data-dir` and the environment. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): ExampleConfig {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}; ${USAGE}`);
    const [, key, inline] = m;
    if (!OPTIONS.includes(key)) throw new ConfigError(`unknown option --${key}; ${USAGE}`);
    const value = inline ?? argv[++i];
    if (value === undefined || (inline === undefined && value.startsWith('--'))) {
      throw new ConfigError(`--${key} needs a value; ${USAGE}`);
    }
    args.set(key, value);
  }

  const name = args.get('name');
  if (name === undefined) throw new ConfigError(`--name is required; ${USAGE}`);
  if (!PARTICIPANT_NAME.test(name)) {
    throw new ConfigError(`--name ${JSON.stringify(name)} is invalid: use 1-100 characters of A-Z a-z 0-9 . _ -`);
  }

  let initialStock = 100;
  const stock = args.get('stock');
  if (stock !== undefined) {
    if (!/^\d+$/.test(stock) || Number(stock) > 2_147_483_647) {
      throw new ConfigError(`--stock must be a non-negative integer, got ${JSON.stringify(stock)}`);
    }
    initialStock = Number(stock);
  }

  let port: number | undefined;
  const rawPort = args.get('port');
  if (rawPort !== undefined) {
    port = Number(rawPort);
    if (!/^\d+$/.test(rawPort) || port < 1 || port > 65535) {
      throw new ConfigError(`--port must be an integer between 1 and 65535, got ${JSON.stringify(rawPort)}`);
    }
  }

  let databaseUrl: string | null = null;
  if (env.DATABASE_URL) {
    try {
      databaseUrl = validateDatabaseUrl(env.DATABASE_URL, 'DATABASE_URL');
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
  }
  const dataDir = args.get('data-dir') ?? `.data/${name}`;
  if (dataDir.trim() === '') throw new ConfigError(`--data-dir must be a folder path; ${USAGE}`);
  try {
    // Checked now; the library builds the transport (Kafka or HTTP) from the same settings.
    defaultTransportOptions(name, { httpPort: port }, env);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return { name, initialStock, databaseUrl, dataDir, port };
}
