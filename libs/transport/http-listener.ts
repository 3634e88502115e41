import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { SIGNATURE_HEADER } from '../protocol';
import type { ReceiveResult } from './http-transport';

export interface ListenOptions {
  /** Interface to bind, e.g. 127.0.0.1 or 0.0.0.0. */
  host: string;
  port: number;
  /** Where messages are posted, e.g. /tx/messages. */
  path: string;
  /** Larger bodies get 413 (default 1 MiB). */
  limitBytes?: number;
}

export interface MessageListener {
  close(): Promise<void>;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 413: 'Content Too Large',
  500: 'Internal Server Error', 503: 'Service Unavailable',
};

/**
 * A small node:http server for a process that has no web framework of its own (a participant):
 * `POST <path>` hands the raw body bytes to `receive` and answers 202, or problem JSON (400
 * unreadable, 413 too large, 503 not receiving); `GET /health` answers 200.
 */
export function listenForMessages(
  opts: ListenOptions,
  receive: (value: Buffer, signature: string | undefined) => Promise<ReceiveResult>,
): Promise<MessageListener> {
  const limit = opts.limitBytes ?? 1024 * 1024;
  const server = createServer((req, res) => {
    void route(req, res).catch(() => {
      if (!res.headersSent) problem(res, 500, 'internal', 'Unexpected error; the message may be sent again.');
      else res.destroy();
    });
  });
  // Bounds slow or stalled clients; messages are small.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (path !== opts.path) return problem(res, 404, 'not-found', `No route ${req.method} ${path}.`);
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return problem(res, 405, 'method-not-allowed', `${opts.path} takes POST.`);
    }
    const body = await readBody(req, limit);
    if (body === null) {
      res.setHeader('connection', 'close');
      return problem(res, 413, 'body-too-large', `The message is larger than ${limit} bytes.`);
    }
    const header = req.headers[SIGNATURE_HEADER];
    const r = await receive(body, Array.isArray(header) ? header[header.length - 1] : header);
    if (r.status === 202) {
      res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
    } else if (r.status === 400) {
      problem(res, 400, 'unreadable-message', `Unreadable message: ${r.error}.`);
    } else {
      res.setHeader('retry-after', '1');
      problem(res, 503, 'not-receiving', r.error);
    }
  }

  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, { cause: err })));
    server.listen(opts.port, opts.host, () => resolve({ close: () => close(server) }));
  });
}

/** The body, or null once it passes the limit (the rest is not read). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function problem(res: ServerResponse, status: number, slug: string, detail: string): void {
  const body = { type: `urn:txcoord:problem:${slug}`, title: TITLES[status] ?? 'Error', status, detail };
  res.writeHead(status, { 'content-type': 'application/problem+json' }).end(JSON.stringify(body));
}

/** Stops accepting, lets requests in progress finish for a moment, then drops what is left. */
function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), 2000);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
