/**
 * The partitioned log as the rest of the code sees it. Kafka (kafkajs) in the real stack, the
 * in-process `PartitionedLog` in the embedded mode; ingest and the worker depend only on this.
 */
export interface LogMessage {
  key: string;
  value: string;
}

export interface LogProducer {
  /** Resolves once the log has acknowledged every message (Kafka: all in-sync replicas). */
  send(topic: string, messages: LogMessage[]): Promise<void>;
  /** Whether the producer believes the log is reachable (for /readyz). */
  ready(): boolean;
  close(): Promise<void>;
}

export interface ConsumedMessage {
  offset: string;
  key: string | null;
  value: string;
  /** Log append time, epoch ms. */
  timestamp: number;
}

export interface ConsumedBatch {
  topic: string;
  partition: number;
  messages: ConsumedMessage[];
}

/** The handler resolves only when the batch's effects are durable; the consumer commits after it. */
export type BatchHandler = (batch: ConsumedBatch) => Promise<void>;

export interface LogConsumer {
  run(handler: BatchHandler): Promise<void>;
  stop(): Promise<void>;
}

/** Thrown by producers when the log cannot take messages now; ingest answers 503 with Retry-After. */
export class LogUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LogUnavailableError';
  }
}
