import { MemoryHistoryStore } from '../../history/store-memory.js';
import { FOLD_OPTIONS, storeContract } from '../support/store-contract.js';

storeContract('in-memory', async () => new MemoryHistoryStore(FOLD_OPTIONS));
