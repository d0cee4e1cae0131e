import { MemoryHistoryStore } from '../../history/store/memory.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

storeContract('in-memory', async (opts) => {
  const store = new MemoryHistoryStore(opts ?? FOLD_OPTIONS);
  const sorted = (xs: string[]) => [...xs].sort();
  return {
    store,
    inspect: async () => {
      const d = store.dump();
      return { people: sorted(d.people), indexed: sorted(d.indexed), erased: sorted(d.erased) };
    },
  };
});
