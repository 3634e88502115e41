import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module';
import { bodyErrors, jsonBody, messageBody, requireJson } from './api/body';
import { setupOpenApi } from './api/openapi';
import { RequestsInProgress, shutdownGate } from './api/shutdown-gate';
import { ConfigError, CoordinatorConfig, loadConfig } from './config/config';
import { accessLog, coordinatorLogger } from './logger';
import { LifecycleService } from './protocol/lifecycle.service';

function configOrExit(): CoordinatorConfig {
  try {
    return loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}

async function main(): Promise<void> {
  const config = configOrExit();
  // forceCloseConnections: at close, idle keep-alive connections are dropped instead of waited for.
  const root = coordinatorLogger(config.logLevel);
  const app = await NestFactory.create(AppModule.forRoot(config, root), { bodyParser: false, bufferLogs: true, forceCloseConnections: true });
  const logger = app.get(Logger);
  app.useLogger(logger);
  const lifecycle = app.get(LifecycleService);
  const requests = new RequestsInProgress();
  app.use(requests.middleware);
  // Above info the access log writes nothing, and pino-http would still serialize every request
  // into a child logger (redaction included): mount it only where its lines are written.
  if (root.isLevelEnabled('info')) app.use(accessLog(root));
  app.use(shutdownGate(() => lifecycle.phase));
  // Protocol messages are read raw (their signature covers the exact bytes); everything else is JSON.
  app.use('/v1/messages', messageBody(config.bodyLimitBytes));
  app.use(requireJson, jsonBody(config.bodyLimitBytes), bodyErrors);
  setupOpenApi(app, config);
  // Not Nest's enableShutdownHooks: it closes at once and then re-raises the signal (exit code 143).
  const shutdown = gracefulShutdown(app, config, lifecycle, requests, logger);
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  await app.listen(config.port);
  logger.log(`coordinator listening on port ${config.port}; API documentation at /docs`);
  // A signal during start-up recovery: shutdown stops the transport under it, which is no failure.
  await lifecycle.start().catch((err) => {
    if (lifecycle.phase === 'running') throw err;
  });
}

/**
 * SIGTERM / SIGINT: readiness 503 and no new transactions at once; protocol steps under way finish
 * (or are left to recovery at the deadline); the transport stops (Kafka consumers leave their
 * group); requests being answered get their answers; then the application closes (the log store
 * last) and the process exits 0, all within TX_SHUTDOWN_TIMEOUT_MS. Past that it exits 1. A second
 * signal exits at once (1).
 */
function gracefulShutdown(app: INestApplication, config: CoordinatorConfig, lifecycle: LifecycleService, requests: RequestsInProgress, logger: Logger) {
  let started = false;
  return async (signal: string): Promise<void> => {
    if (started) return;
    started = true;
    process.once(signal, () => {
      process.stderr.write(`coordinator: second ${signal} during shutdown; exiting now\n`);
      process.exit(1);
    });
    const deadline = Date.now() + config.shutdownTimeoutMs;
    setTimeout(() => {
      process.stderr.write(`coordinator: shutdown did not finish within TX_SHUTDOWN_TIMEOUT_MS (${config.shutdownTimeoutMs} ms); exiting\n`);
      process.exit(1);
    }, config.shutdownTimeoutMs).unref();
    logger.log(`${signal} received: shutting down gracefully (at most ${config.shutdownTimeoutMs} ms)`);
    try {
      await lifecycle.shutdown(deadline);
      const open = await requests.idle(Math.max(0, deadline - Date.now() - 3000));
      if (open) logger.warn(`${open} request(s) still in progress at close`);
      await app.close();
    } catch (err) {
      process.stderr.write(`coordinator: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    }
    logger.log('coordinator stopped');
    process.exit(0);
  };
}

main().catch((err) => {
  process.stderr.write(`coordinator failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
