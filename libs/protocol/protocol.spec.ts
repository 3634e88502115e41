import { randomUUID } from 'node:crypto';
import { decodeMessage, encodeMessage, sign, SIGNATURE_HEADER, topics, ProtocolMessage } from './index';

const txId = randomUUID();
const now = new Date().toISOString();
const prepare: ProtocolMessage = {
  v: 1, type: 'prepare', txId, participant: 'inventory', protocol: '2pc', sentAt: now, deadline: now,
  payload: { sku: 'A1', qty: 2 },
};

describe('protocol codec', () => {
  it('round-trips every message type', () => {
    const all: ProtocolMessage[] = [
      prepare,
      { v: 1, type: 'pre-commit', txId, participant: 'p', protocol: '3pc', sentAt: now },
      { v: 1, type: 'commit', txId, participant: 'p', protocol: '2pc', sentAt: now },
      { v: 1, type: 'abort', txId, participant: 'p', protocol: '2pc', sentAt: now, reason: 'vote-no:p' },
      { v: 1, type: 'vote', txId, participant: 'p', protocol: '2pc', sentAt: now, vote: 'no', reason: 'x' },
      { v: 1, type: 'ack', txId, participant: 'p', protocol: '2pc', sentAt: now, of: 'commit' },
      { v: 1, type: 'status-request', txId, participant: 'p', protocol: '2pc', sentAt: now },
    ];
    for (const m of all) expect(decodeMessage(encodeMessage(m))).toEqual({ ok: true, message: m });
  });

  it.each([
    ['empty', Buffer.alloc(0), /empty/],
    ['not JSON', Buffer.from('{nope'), /not JSON/],
    ['an array', Buffer.from('[1]'), /not a JSON object/],
    ['unknown version', encodeMessage({ ...prepare, v: 2 } as never), /unknown protocol version v=2/],
    ['unknown type', encodeMessage({ ...prepare, type: 'explode' } as never), /invalid message: type/],
    ['bad txId', encodeMessage({ ...prepare, txId: 'x' }), /txId/],
    ['bad participant', encodeMessage({ ...prepare, participant: 'a b' }), /participant/],
    ['missing payload', Buffer.from(JSON.stringify({ ...prepare, payload: undefined })), /payload/],
    ['bad vote', Buffer.from(JSON.stringify({ ...prepare, type: 'vote', vote: 'maybe' })), /vote/],
  ])('rejects %s with a reason', (_name, value, reason) => {
    const r = decodeMessage(value);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(reason);
  });

  it('verifies HMAC signatures when a secret is set', () => {
    const value = encodeMessage(prepare);
    const good = sign(value, 's3cret');
    expect(decodeMessage(value, { secret: 's3cret', signature: good }).ok).toBe(true);
    expect(decodeMessage(value, { secret: 's3cret' })).toEqual({ ok: false, error: 'missing signature' });
    expect(decodeMessage(value, { secret: 's3cret', signature: sign(value, 'other') })).toEqual({
      ok: false, error: 'bad signature',
    });
    expect(decodeMessage(value, { secret: 's3cret', signature: 'zz' })).toEqual({ ok: false, error: 'bad signature' });
    expect(SIGNATURE_HEADER).toBe('tx-signature');
  });

  it('names topics from the prefix', () => {
    const t = topics('acme.tx.');
    expect([t.coordinator, t.deadLetter, t.participant('inventory')]).toEqual([
      'acme.tx.coordinator', 'acme.tx.dead-letter', 'acme.tx.participant.inventory',
    ]);
    expect(topics().coordinator).toBe('tx.coordinator');
  });
});
