/**
 * Example member service: an inventory on the participant library.
 *
 *   DATABASE_URL=postgres://… KAFKA_BROKERS=host:9092 node dist/apps/participant-example/main.js --name inventory [--stock 100]
 *   DATABASE_URL=postgres://… COORDINATOR_URL=http://host:3000 node dist/apps/participant-example/main.js --name inventory --port 4001
 *   node dist/apps/participant-example/main.js --name inventory --port 4001   # embedded Postgres in .data/inventory
 *
 * Without KAFKA_BROKERS it speaks HTTP (see the README for the variables). Logs JSON lines to
 * stdout; the line `participant ready` (with its `url` over HTTP) means it is receiving.
 * SIGTERM / SIGINT stop it cleanly.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import pino from 'pino';
import { DataSource, DataSourceOptions } from 'typeorm';
import { EMBEDDED_POOL, startEmbeddedPostgres, stoppingWithPool } from '../../libs/embedded-postgres';
import { ParticipantConfigError, ParticipantService } from '../../libs/participant';
import { InventoryAppModule } from './app.module';
import { ConfigError, ExampleConfig, loadConfig } from './config';
import { ensureInventorySchema } from './schema';

const PROGRAM = 'participant-example';

function fail(message: string, code: number): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(`configuration error: ${err.message}`, 2);
    throw err;
  }
  const logger = pino({ name: PROGRAM, level: process.env.LOG_LEVEL || 'info' });

  let dataSource: DataSource;
  try {
    dataSource = new DataSource(await databaseOptions(config, logger));
    await dataSource.initialize();
    await ensureInventorySchema(dataSource);
  } catch (err) {
    fail(`cannot use ${config.databaseUrl ? 'DATABASE_URL' : `the embedded Postgres in ${config.dataDir}`}: ${(err as Error).message}`, 1);
  }

  let app;
  try {
    app = await NestFactory.createApplicationContext(
      InventoryAppModule.register({
        name: config.name,
        initialStock: config.initialStock,
        dataSource,
        logger,
        httpPort: config.port,
      }),
      { logger: ['error', 'warn'], abortOnError: false },
    );
  } catch (err) {
    await dataSource.destroy().catch(() => undefined);
    if (err instanceof ParticipantConfigError) fail(`configuration error: ${err.message}`, 2);
    fail(`start failed: ${(err as Error).message}`, 1);
  }
  const url = app.get(ParticipantService).url;
  logger.info(
    { participant: config.name, initialStock: config.initialStock, transport: url ? 'http' : 'kafka', ...(url ? { url } : {}) },
    'participant ready',
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ participant: config.name, signal }, 'participant stopping');
    let code = 0;
    try {
      await app.close();
      await dataSource.destroy();
    } catch (err) {
      logger.error({ err }, 'unclean shutdown');
      code = 1;
    }
    logger.info({ participant: config.name }, 'participant stopped');
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * DATABASE_URL, or without it an embedded Postgres (PGlite) in `--data-dir`, started here and
 * stopped when the DataSource is destroyed. The embedded one is for trying the example out: PGlite
 * does not fsync, and a prepared participant must not lose its record.
 */
async function databaseOptions(config: ExampleConfig, logger: pino.Logger): Promise<DataSourceOptions> {
  const common = { type: 'postgres' as const, synchronize: false, entities: [] };
  if (config.databaseUrl) return { ...common, url: config.databaseUrl };
  const started = Date.now();
  const embedded = await startEmbeddedPostgres(config.dataDir, { owner: `participant ${config.name}`, dataDirSetting: '--data-dir' });
  logger.info({ participant: config.name, dataDir: config.dataDir, ms: Date.now() - started }, 'embedded Postgres (PGlite) ready; set DATABASE_URL for anything that matters');
  return { ...common, url: embedded.url, driver: stoppingWithPool(embedded), extra: EMBEDDED_POOL };
}

main().catch((err) => fail(`fatal: ${(err as Error)?.message ?? String(err)}`, 1));
