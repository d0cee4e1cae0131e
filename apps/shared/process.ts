import { parseEnv, type Env } from '../../lib/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { onShutdown } from '../../lib/serve.js';

/**
 * A long-running process: parses the environment, creates its logger, runs `start`, and on
 * SIGTERM or SIGINT the stop that `start` returned (exit 0 once it resolved, 1 if it failed).
 * A start that fails prints why on stderr and exits 1.
 */
export async function runProcess(name: string, start: (env: Env, logger: Logger) => Promise<() => Promise<void>>): Promise<void> {
  try {
    const env = parseEnv();
    const logger = createLogger(name, env.LOG_LEVEL);
    // The HTTP grace period, and some time to close the backends after it.
    onShutdown(logger, await start(env, logger), { deadlineMs: env.INGEST_SHUTDOWN_GRACE_MS + 5000 });
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
