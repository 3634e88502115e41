import type { ICustomPartitioner, PartitionerArgs } from 'kafkajs';

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`) of `data`, as a signed 32-bit integer.
 * Plain 32-bit integer arithmetic (`Math.imul`, `>>>`) gives Java's int overflow exactly.
 */
export function murmur2(data: Buffer): number {
  const m = 0x5bd1e995;
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  // The last one to three bytes (Java's switch falling through its cases).
  const rest = length & 3;
  if (rest > 0) {
    const tail = length - rest;
    if (rest === 3) h ^= data[tail + 2] << 16;
    if (rest >= 2) h ^= data[tail + 1] << 8;
    h ^= data[tail];
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition Kafka's default partitioning gives a key, of a topic with `partitions` partitions. */
export function partitionOfKey(key: string | Buffer, partitions: number): number {
  return (murmur2(Buffer.isBuffer(key) ? key : Buffer.from(key)) & 0x7fffffff) % partitions;
}

/**
 * Kafka's default partitioning, as the Java client and kafkajs's `DefaultPartitioner` do it: a
 * message's own `partition` if it has one; else murmur2 of its key, made positive, modulo the
 * partition count; else round robin over the partitions that have a leader. Same partition for
 * every key as kafkajs's, so members on either (or on another language's client) agree; but
 * kafkajs computes murmur2 with 64-bit Long objects, which with those objects' helpers was about
 * 0.9 s of a restarted coordinator's CPU while it resent 30,000 prepares (BENCHMARKS.md, sixth
 * session).
 */
export const KeyPartitioner: ICustomPartitioner = () => {
  const next = new Map<string, number>();
  return ({ topic, partitionMetadata, message }: PartitionerArgs): number => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    if (message.key !== null && message.key !== undefined) {
      return partitionOfKey(Buffer.isBuffer(message.key) ? message.key : String(message.key), partitionMetadata.length);
    }
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    const n = (next.get(topic) ?? Math.floor(Math.random() * 0x7fffffff)) + 1;
    next.set(topic, n);
    if (available.length > 0) return available[(n & 0x7fffffff) % available.length].partitionId;
    return (n & 0x7fffffff) % partitionMetadata.length;
  };
};
