import { MemoryHistoryStore } from '../../history/store-memory.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

storeContract('in-memory', async () => {
  const store = new MemoryHistoryStore(FOLD_OPTIONS);
  return { store, inspect: async () => store.dump() };
});
