/** Injection token of the MessageTransport chosen by configuration (Kafka or HTTP). */
export const TRANSPORT = Symbol('MessageTransport');
