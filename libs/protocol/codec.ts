import { createHmac, timingSafeEqual } from 'node:crypto';
import { messageSchema, ProtocolMessage, PROTOCOL_VERSION } from './messages';

/** Header that carries the hex HMAC-SHA256 of the value bytes when TX_MESSAGE_SECRET is set. */
export const SIGNATURE_HEADER = 'tx-signature';
/** Header on dead-lettered messages saying why they could not be read. */
export const ERROR_HEADER = 'tx-error';

export function encodeMessage(message: ProtocolMessage): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}

export function sign(value: Buffer, secret: string): string {
  return createHmac('sha256', secret).update(value).digest('hex');
}

export function verifySignature(value: Buffer, signature: string | undefined, secret: string): boolean {
  if (!signature || !/^[0-9a-f]{64}$/i.test(signature)) return false;
  const expected = Buffer.from(sign(value, secret), 'hex');
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'));
}

export type DecodeResult = { ok: true; message: ProtocolMessage } | { ok: false; error: string };

/**
 * Reads one message value as received from the wire. Checks, in order: the signature (when a
 * secret is configured), JSON, the protocol version, then every field. The error says which failed.
 */
export function decodeMessage(
  value: Buffer | null | undefined,
  opts: { secret?: string; signature?: string } = {},
): DecodeResult {
  if (!value || value.length === 0) return { ok: false, error: 'empty message value' };
  if (opts.secret && !verifySignature(value, opts.signature, opts.secret)) {
    return { ok: false, error: opts.signature ? 'bad signature' : 'missing signature' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    return { ok: false, error: 'value is not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, error: 'value is not a JSON object' };
  }
  const v = (parsed as { v?: unknown }).v;
  if (v !== PROTOCOL_VERSION) return { ok: false, error: `unknown protocol version v=${JSON.stringify(v)}` };
  const result = messageSchema.safeParse(parsed);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    return { ok: false, error: `invalid message: ${issues.join('; ')}` };
  }
  return { ok: true, message: result.data };
}
