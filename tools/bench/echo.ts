/**
 * The participant side of the bare ceiling: plain kafkajs, no library, no database. It answers
 * every message on its topic with one message to the reply topic (a vote for a prepare, an ack
 * otherwise), which is the message pattern of a participant and nothing more; the replies to one
 * fetched batch go out in one produce request.
 *
 *   node dist/tools/bench/echo.js <bootstrap> <topic> <reply-topic> <max-wait-ms>
 */
import { Kafka, logLevel } from 'kafkajs';
import { COMMIT_INTERVAL_MS } from '../../libs/transport/kafka-transport';
import { KeyPartitioner } from '../../libs/transport/key-partitioner';

async function main(): Promise<void> {
  const [bootstrap, topic, replyTopic, maxWait] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: `echo-${topic}`, brokers: bootstrap.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: true, createPartitioner: KeyPartitioner });
  await producer.connect();
  // Creates the topic (auto-creation) before the consumer asks for it.
  await producer.send({ topic, acks: -1, messages: [{ key: 'setup', value: '{"type":"setup"}' }] });
  const consumer = kafka.consumer({ groupId: `echo-${topic}`, maxWaitTimeInMs: Number(maxWait), sessionTimeout: 6000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: false });
  await consumer.run({
    partitionsConsumedConcurrently: 4,
    // Offsets committed as the system's consumers commit them: at most once a second.
    autoCommit: false,
    autoCommitInterval: COMMIT_INTERVAL_MS,
    // One reply request per fetched batch: the most plain kafkajs does for this pattern.
    eachBatch: async ({ batch, commitOffsetsIfNecessary }) => {
      const replies = [];
      for (const message of batch.messages) {
        const m = JSON.parse(String(message.value)) as { type: string; txId: string; participant: string };
        if (m.type === 'setup') continue;
        const reply = { v: 1, type: m.type === 'prepare' ? 'vote' : 'ack', vote: 'yes', of: m.type, txId: m.txId, participant: m.participant, sentAt: new Date().toISOString() };
        replies.push({ key: m.txId, value: JSON.stringify(reply) });
      }
      if (replies.length) await producer.send({ topic: replyTopic, acks: -1, messages: replies });
      await commitOffsetsIfNecessary();
    },
  });
  process.stdout.write('echo ready\n');
  process.once('SIGTERM', () => void consumer.disconnect().finally(() => process.exit(0)));
}

main().catch((err) => {
  process.stderr.write(`echo: ${(err as Error).message}\n`);
  process.exit(1);
});
