import { excerptOf, type DeadLetter } from '../../contract/dead-letter.js';
import { TOPICS } from '../../contract/raw-event.js';
import type { ConsumedMessage, TopicMessages } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';

/** Where in the worker a record was refused: it travels with the dead letter. */
export type WorkerStep = 'parse' | 'classify' | 'budget' | 'fold';

/** Why a step refused a record. */
export interface Refusal {
  step: WorkerStep;
  reason: string;
  detail: string;
}

/**
 * The one owner of the worker's dead letters for a batch: every step hands it the records it
 * refuses, and it turns them into `clicks.invalid` records (the DeadLetter shape), published with
 * the batch's commit.
 */
export class DeadLetters {
  readonly refused: (Refusal & { m: ConsumedMessage })[] = [];

  constructor(private readonly partition: number) {}

  add(m: ConsumedMessage, refusal: Refusal): void {
    this.refused.push({ m, ...refusal });
  }

  get size(): number {
    return this.refused.length;
  }

  /** The dead letters to publish (none when nothing was refused); logs the first reason. */
  records(logger: Logger): TopicMessages {
    if (this.refused.length === 0) return { topic: TOPICS.invalid, messages: [] };
    const first = this.refused[0]!;
    logger.warn(
      { partition: this.partition, count: this.refused.length, step: first.step, reason: first.reason, detail: first.detail.slice(0, 200) },
      'records refused by the worker, dead-lettered',
    );
    const rt = Date.now();
    return {
      topic: TOPICS.invalid,
      messages: this.refused.map(({ m, step, reason, detail }) => {
        const letter: DeadLetter = {
          stage: 'worker',
          step,
          reason,
          detail: excerptOf(detail, 1024),
          partition: this.partition,
          offset: m.offset,
          rt,
          payload: excerptOf(m.value),
        };
        return { key: m.key ?? '', value: JSON.stringify(letter) };
      }),
    };
  }
}
