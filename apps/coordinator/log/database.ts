import { Logger } from '@nestjs/common';
import { TypeOrmModuleOptions } from '@nestjs/typeorm';
import { CoordinatorConfig } from '../config/config';
import { EMBEDDED_POOL, startEmbeddedPostgres, stoppingWithPool } from '../../../libs/embedded-postgres';
import { AuditRow } from './audit.entity';
import { ParticipantRow, TransactionRow } from './entities';
import { DecisionLog1763900000000 } from './migrations/1763900000000-decision-log';
import { Audit1795400000000 } from './migrations/1795400000000-audit';
import { Performance1796300000000 } from './migrations/1796300000000-performance';
import { ParticipantListing1796400000000 } from './migrations/1796400000000-participant-listing';

const common = {
  type: 'postgres' as const,
  entities: [TransactionRow, ParticipantRow, AuditRow],
  migrations: [DecisionLog1763900000000, Audit1795400000000, Performance1796300000000, ParticipantListing1796400000000],
  migrationsRun: true,
  migrationsTransactionMode: 'each' as const,
  synchronize: false,
};

/**
 * TypeORM options of the decision log: migrations run at start, synchronize never. Without
 * DATABASE_URL the log lives in an embedded Postgres under `config.embeddedDataDir`, started here
 * and stopped when the DataSource built from these options is destroyed.
 */
export async function databaseOptions(config: CoordinatorConfig): Promise<TypeOrmModuleOptions> {
  if (config.databaseUrl) {
    return { ...common, url: config.databaseUrl, retryAttempts: 3, retryDelay: 2000, extra: { max: 20, connectionTimeoutMillis: 5000 } };
  }
  const started = Date.now();
  const embedded = await startEmbeddedPostgres(config.embeddedDataDir);
  new Logger('Database').log(`embedded Postgres (PGlite) on ${config.embeddedDataDir} ready in ${Date.now() - started} ms`);

  return {
    ...common,
    url: embedded.url,
    // Nest's shutdown destroys the DataSource, which ends the pool, which stops the server.
    driver: stoppingWithPool(embedded),
    // Nothing transient to wait out, and a failed initialize has already stopped the server.
    toRetry: () => false,
    extra: EMBEDDED_POOL,
  };
}
