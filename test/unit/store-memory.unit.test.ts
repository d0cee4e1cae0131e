import { MemoryHistoryStore } from '../../history/store/memory.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

storeContract('in-memory', async (opts) => {
  const store = new MemoryHistoryStore(opts ?? FOLD_OPTIONS);
  return { store, inspect: async () => store.dump() };
});
