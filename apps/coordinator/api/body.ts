import express, { NextFunction, Request, Response } from 'express';
import { problem } from './problem';

function send(res: Response, status: number, slug: string, detail: string): void {
  res.status(status).type('application/problem+json').send(JSON.stringify(problem(status, slug, detail)));
}

const JSON_TYPES = ['application/json', 'application/*+json'];

/** 415 for a body that is not JSON. Bodiless requests (commit, abort) need no content type. */
export function requireJson(req: Request, res: Response, next: NextFunction): void {
  if (Buffer.isBuffer(req.body)) return next(); // already read raw (messageBody)
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !req.is(JSON_TYPES)) return send(res, 415, 'unsupported-media-type', 'Request bodies must be application/json.');
  next();
}

/** The JSON parser with a size limit; its errors become 400 / 413 problem documents. */
export function jsonBody(limitBytes: number) {
  return express.json({ limit: limitBytes, strict: true, type: JSON_TYPES });
}

/**
 * Protocol messages (POST /v1/messages) as raw bytes whatever their content type: the signature
 * is over the exact bytes, and their reader answers 400 for anything that is not a message.
 */
export function messageBody(limitBytes: number) {
  return express.raw({ limit: limitBytes, type: () => true });
}

export function bodyErrors(err: { type?: string; status?: number }, _req: Request, res: Response, next: NextFunction): void {
  if (err.type === 'entity.too.large') return send(res, 413, 'body-too-large', 'The request body is larger than the limit.');
  if (err.type === 'entity.parse.failed') return send(res, 400, 'invalid-json', 'The request body is not valid JSON.');
  if (err.status && err.status >= 400 && err.status < 500) return send(res, err.status, 'bad-request', 'The request body could not be read.');
  next(err);
}
