/** Topic names of CONTRACT section 3, all under one prefix (TX_TOPIC_PREFIX, default "tx."). */
export interface Topics {
  coordinator: string;
  deadLetter: string;
  participant(name: string): string;
}

export function topics(prefix = 'tx.'): Topics {
  return {
    coordinator: `${prefix}coordinator`,
    deadLetter: `${prefix}dead-letter`,
    participant: (name) => `${prefix}participant.${name}`,
  };
}
