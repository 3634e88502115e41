import type { IncomingMessage } from 'node:http';
import pino, { Logger } from 'pino';
import { pinoHttp } from 'pino-http';

/** The process's one logger: Nest's own lines, the services' PinoLogger and the access log. */
export function coordinatorLogger(level: string): Logger {
  return pino({ level, redact: ['req.headers.authorization', 'req.headers.cookie'] });
}

/**
 * The access log: a line per answered request (health probes left out), mounted as plain Express
 * middleware. nestjs-pino's own would run each request in an AsyncLocalStorage, and on Node 20 that
 * turns on promise hooks for every promise of the process from the first request on, kafkajs' and
 * pg's included: about a quarter of a begin request's time here (BENCHMARKS.md, eighth session). Lines
 * logged while handling a request carry what they need (transaction id, route) themselves.
 */
export function accessLog(logger: Logger) {
  return pinoHttp({ logger, autoLogging: { ignore: (req: IncomingMessage) => (req.url ?? '').startsWith('/health') } });
}
