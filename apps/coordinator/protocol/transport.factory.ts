import { PinoLogger } from 'nestjs-pino';
import { topics } from '../../../libs/protocol';
import { HttpTransport } from '../../../libs/transport/http-transport';
import { KafkaTransport } from '../../../libs/transport/kafka-transport';
import { MessageTransport } from '../../../libs/transport/transport';
import { CoordinatorConfig } from '../config/config';

/** Kafka when KAFKA_BROKERS is set; otherwise the HTTP transport of CONTRACT section 3b. */
export function createTransport(config: CoordinatorConfig, logger: PinoLogger): MessageTransport {
  if (config.kafkaBrokers.length === 0) {
    // Receiving goes through POST /v1/messages of the Nest app (MessagesController).
    return new HttpTransport({
      role: 'coordinator',
      participantUrls: config.participantUrls,
      secret: config.messageSecret ?? undefined,
      logger,
    });
  }
  return new KafkaTransport({
    brokers: config.kafkaBrokers,
    clientId: 'txcoord-coordinator',
    groupId: `${config.topicPrefix}coordinator`,
    listenTopic: topics(config.topicPrefix).coordinator,
    topicPrefix: config.topicPrefix,
    secret: config.messageSecret ?? undefined,
    maxWaitTimeInMs: config.kafkaMaxWaitMs,
    sessionTimeoutMs: config.kafkaSessionTimeoutMs,
    breaker: config.breaker,
    logger,
  });
}
