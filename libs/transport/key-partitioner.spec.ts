import { randomBytes, randomUUID } from 'node:crypto';
import { Partitioners, PartitionMetadata } from 'kafkajs';
import { KeyPartitioner, murmur2 } from './key-partitioner';

const metadata = (n: number): PartitionMetadata[] =>
  Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: 1, replicas: [1], isr: [1], offlineReplicas: [], partitionErrorCode: 0 }));

describe('KeyPartitioner', () => {
  it('puts every key on the partition kafkajs (Java-compatible murmur2) puts it on', () => {
    const ours = KeyPartitioner();
    const theirs = Partitioners.DefaultPartitioner();
    for (const partitions of [1, 3, 32, 100]) {
      const partitionMetadata = metadata(partitions);
      for (let i = 0; i < 2000; i++) {
        // Transaction ids as sent, and raw keys of every length mod 4 (the tail cases).
        const key = i % 2 ? randomUUID() : randomBytes(i % 41);
        const args = { topic: 't', partitionMetadata, message: { key, value: 'v' } };
        expect(ours(args)).toBe(theirs(args));
      }
    }
  });

  it('matches values of Kafka’s own murmur2 test', () => {
    // org.apache.kafka.common.utils.UtilsTest#testMurmur2
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ];
    for (const [key, hash] of cases) expect(murmur2(Buffer.from(key))).toBe(hash);
  });

  it('uses a partition given with the message, and spreads keyless messages over partitions with a leader', () => {
    const p = KeyPartitioner();
    const partitionMetadata = metadata(4).map((m) => (m.partitionId === 2 ? { ...m, leader: -1 } : m));
    expect(p({ topic: 't', partitionMetadata, message: { key: 'k', value: 'v', partition: 3 } })).toBe(3);
    const seen = new Set(Array.from({ length: 12 }, () => p({ topic: 't', partitionMetadata, message: { value: 'v' } })));
    expect([...seen].sort()).toEqual([0, 1, 3]);
  });
});
