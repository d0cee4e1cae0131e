import { MemoryHistoryStore } from '../../history/store/memory.js';
import { automationContract } from '../support/automation-contract.js';
import { FOLD_OPTIONS } from '../support/store-contract.js';

automationContract('memory', async () => {
  let now = 0;
  const store = new MemoryHistoryStore(FOLD_OPTIONS, () => now);
  return {
    store,
    inspect: async () => store.dump(),
    setNow: (ms) => {
      now = ms;
    },
  };
});
