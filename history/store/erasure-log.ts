import { ErasureRecord } from '../../contract/erasure.js';
import { TOPICS } from '../../contract/raw-event.js';
import type { ConsumerHandler, LogMessage, LogProducer } from '../../lib/log.js';
import type { Logger } from '../../lib/logger.js';
import type { ErasedPerson, HistoryStore } from './store.js';

/**
 * Erasures on the log (`history.erasures`, contract/erasure.ts), so that an erase reaches every store
 * and every later reader of `clicks.raw`, not only the store that answered the DELETE:
 *
 * - `withErasureLog`: the store a process serves erases through; its erase appends the erasure
 *   records first, then erases the store. Appended first, because the log is what lasts: if the
 *   store step fails, the answer is an error and the follower below applies the erasure anyway.
 * - `followErasures`: applies every erasure record to a store (idempotent; an id already erased at or
 *   after the record's time is left alone). The worker runs it on its namespace, a replay runs it on
 *   the namespace it builds before and after folding, so erasures made at any time reach it.
 */
/** The consumer group that applies `history.erasures` to the namespace a `clicks.raw` group folds into. */
export const erasuresGroupOf = (rawGroup: string) => `${rawGroup}.erasures`;

export function withErasureLog(store: HistoryStore, producer: LogProducer): HistoryStore {
  return new ErasureLoggingStore(store, producer);
}

export function erasureMessages(person: string, ids: readonly string[], at: number, which: readonly string[] = ids): LogMessage[] {
  return which.map((id) => {
    const record: ErasureRecord = { v: 1, id, person, ids: [...ids], at };
    // Keyed by the id: compaction keeps the latest erasure of each.
    return { key: id, value: JSON.stringify(record) };
  });
}

class ErasureLoggingStore implements HistoryStore {
  constructor(
    private readonly inner: HistoryStore,
    private readonly producer: LogProducer,
  ) {}

  get options() {
    return this.inner.options;
  }

  async erase(person: string, at: number): Promise<ErasedPerson> {
    // The ids known now go on the log before anything is erased; ids the erase finds on its way (a
    // link made meanwhile) follow.
    const view = await this.inner.getPerson(person);
    const root = view?.person ?? person;
    const known = [...new Set([root, person, ...(view?.linkedIds ?? [])])];
    await this.producer.send(TOPICS.erasures, erasureMessages(root, known, at));
    // A follower of the log (this process's worker) may apply those records before the next line
    // does: what was erased is then what this read found, plus what the erase finds.
    const erased = await this.inner.erase(person, at);
    const ids = [...new Set([...known, ...erased.ids])];
    const more = ids.filter((id) => !known.includes(id));
    if (more.length > 0) await this.producer.send(TOPICS.erasures, erasureMessages(root, ids, at, more));
    return { person: view ? root : erased.person, ids, held: view !== null || erased.held };
  }

  applyErasure: HistoryStore['applyErasure'] = (ids, at) => this.inner.applyErasure(ids, at);
  foldBatch: HistoryStore['foldBatch'] = (partition, records, publishedBelow) => this.inner.foldBatch(partition, records, publishedBelow);
  admit: HistoryStore['admit'] = (site, topics, caps) => this.inner.admit(site, topics, caps);
  getPerson: HistoryStore['getPerson'] = (person) => this.inner.getPerson(person);
  topics: HistoryStore['topics'] = () => this.inner.topics();
  hasTopic: HistoryStore['hasTopic'] = (topic) => this.inner.hasTopic(topic);
  stageCounts: HistoryStore['stageCounts'] = (topics, window) => this.inner.stageCounts(topics, window);
  stageMembers: HistoryStore['stageMembers'] = (topic, stage, since, limit) => this.inner.stageMembers(topic, stage, since, limit);
  dialogues: HistoryStore['dialogues'] = (topic, persons) => this.inner.dialogues(topic, persons);
  rfms: HistoryStore['rfms'] = (persons) => this.inner.rfms(persons);
  needsPage: HistoryStore['needsPage'] = (q) => this.inner.needsPage(q);
  trend: HistoryStore['trend'] = (topic, by, from, to) => this.inner.trend(topic, by, from, to);
  recentTransitions: HistoryStore['recentTransitions'] = (limit) => this.inner.recentTransitions(limit);
  crossSell: HistoryStore['crossSell'] = (topics) => this.inner.crossSell(topics);
  related: HistoryStore['related'] = (topic, limit) => this.inner.related(topic, limit);
  setAutomation: HistoryStore['setAutomation'] = (a) => this.inner.setAutomation(a);
  automation: HistoryStore['automation'] = () => this.inner.automation();
  automationPage: HistoryStore['automationPage'] = (set, after, limit) => this.inner.automationPage(set, after, limit);
  automationCount: HistoryStore['automationCount'] = (set) => this.inner.automationCount(set);
  dropAudience: HistoryStore['dropAudience'] = (name) => this.inner.dropAudience(name);
  dueTicks: HistoryStore['dueTicks'] = (now, limit) => this.inner.dueTicks(now, limit);
  clearDue: HistoryStore['clearDue'] = (entries) => this.inner.clearDue(entries);
  sweepLease: HistoryStore['sweepLease'] = (owner, ttlMs) => this.inner.sweepLease(owner, ttlMs);
  purchasers: HistoryStore['purchasers'] = (limit) => this.inner.purchasers(limit);
  crmModel: HistoryStore['crmModel'] = () => this.inner.crmModel();
  setCrmModel: HistoryStore['setCrmModel'] = (m) => this.inner.setCrmModel(m);
  crmLease: HistoryStore['crmLease'] = (owner, ttlMs) => this.inner.crmLease(owner, ttlMs);
  close: HistoryStore['close'] = () => this.inner.close();
}

/**
 * A handler of `history.erasures` that applies each record to `store`. A record that is not an
 * erasure (a buggy or hostile producer) is logged and skipped: it must not stop the others.
 */
export function followErasures(store: HistoryStore, logger: Logger): ConsumerHandler {
  return async (batch) => {
    const idsAt = new Map<number, string[]>();
    for (const m of batch.messages) {
      let parsed: ReturnType<typeof ErasureRecord.safeParse>;
      try {
        parsed = ErasureRecord.safeParse(JSON.parse(m.value));
      } catch {
        parsed = ErasureRecord.safeParse(undefined);
      }
      if (!parsed.success) {
        logger.warn({ partition: batch.partition, offset: m.offset }, `skipped a record of ${TOPICS.erasures} that is not an erasure`);
        continue;
      }
      const ids = idsAt.get(parsed.data.at) ?? [];
      ids.push(parsed.data.id);
      idsAt.set(parsed.data.at, ids);
    }
    for (const [at, ids] of idsAt) await store.applyErasure(ids, at);
  };
}
