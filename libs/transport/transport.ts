import { ProtocolMessage } from '../protocol';

/** One received message as it came off the wire, kept for dead-lettering and logs. */
export interface Envelope {
  topic: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string | undefined>;
}

/**
 * Handles one decoded, validated message. A throw means "not handled": Kafka redelivers it; over
 * HTTP the sender's own resend brings it again.
 */
export type MessageHandler = (message: ProtocolMessage, envelope: Envelope) => Promise<void>;

/**
 * Carries protocol messages between the coordinator and participants (CONTRACT sections 3, 3b).
 * Implementations route each message by its type: coordinator → participant messages go to the
 * participant (its topic on Kafka, its URL over HTTP), the others to the coordinator; the key is
 * always the txId. Receiving decodes and verifies each message; unreadable ones are refused
 * (dead-lettered with `tx-error` on Kafka, answered 400 over HTTP) and receiving goes on.
 */
export interface MessageTransport {
  /** Starts receiving on this process's own topic or endpoint; resolves once it is receiving. */
  start(handler: MessageHandler): Promise<void>;
  /**
   * Sends messages, signed when a secret is configured; resolves once the broker (Kafka) or every
   * receiver (HTTP) has them. `routes` maps participant names to their URLs: the HTTP transport
   * needs them, Kafka ignores them.
   */
  send(messages: ProtocolMessage[], routes?: ReadonlyMap<string, string>): Promise<void>;
  /** Resolves when the broker (or, for an HTTP participant, the coordinator) is reachable; rejects otherwise (readiness). */
  check(): Promise<void>;
  /**
   * Messages known to be waiting in this process's inbox where a message with this key (a
   * transaction id) arrives (Kafka: the lag of the key's partition as of its last fetch, if that
   * was within the last few seconds); 0 when none or not known. A resend can wait while the answer
   * may be among them.
   */
  backlog?(key: string): number;
  /**
   * False while this process cannot read its inbox (Kafka: its consumer is out of its group,
   * joining or rebalancing); answers cannot arrive then, so a resend cannot help. Absent: always.
   */
  receiving?(): boolean;
  /**
   * What this process's inbox has read since it started (Kafka: its consumer's fetches, and the
   * messages they brought, unreadable and repeated ones included), for metrics. Absent: not counted.
   */
  inboxReads?(): { fetches: number; messages: number };
  /** Stops receiving (leaves the consumer group, closes the endpoint) and disconnects. */
  stop(): Promise<void>;
}
