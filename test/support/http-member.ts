import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { api } from './coordinator';

/** A protocol message as a member receives it (the fields the test members read). */
export interface MemberMessage {
  type: string;
  txId: string;
  participant: string;
  protocol: string;
}

export interface HttpMember {
  url: string;
  close(): Promise<void>;
}

/**
 * A member service as a plain node:http server speaking the HTTP protocol (CONTRACT section 3b):
 * takes each message with 202, then votes yes on a prepare and acknowledges anything else, by
 * posting to `answerTo()`'s /v1/messages after `answerAfterMs`. `seen` is told of every message.
 */
export async function startHttpMember(opts: { answerTo: () => string; answerAfterMs?: number; seen?: (m: MemberMessage) => void }): Promise<HttpMember> {
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      res.writeHead(202).end();
      const m = JSON.parse(body) as MemberMessage;
      opts.seen?.(m);
      const answer = m.type === 'prepare' ? { type: 'vote', vote: 'yes' } : { type: 'ack', of: m.type };
      setTimeout(() => {
        void api(opts.answerTo(), 'POST', '/v1/messages', {
          v: 1, txId: m.txId, participant: m.participant, protocol: m.protocol, sentAt: new Date().toISOString(), ...answer,
        });
      }, opts.answerAfterMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
