import type { Env } from '../../lib/config.js';
import { createQueryApp, type QueryApiOptions } from '../../history/query/app.js';
import { apiKeysFromEnv } from '../../history/query/auth.js';
import { crmQueryOptions } from './automation.js';

/**
 * The query API as `npm start` and `npm run api` both serve it: the keys and the CRM options from
 * the environment, the rest from the process's backends.
 */
export function queryAppFromEnv(env: Env, deps: Pick<QueryApiOptions, 'store' | 'logger' | 'feed' | 'registry' | 'stallRules'>) {
  return createQueryApp({ ...deps, keys: apiKeysFromEnv(env), crm: crmQueryOptions(env) });
}
