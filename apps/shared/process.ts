import { parseEnv, type Env } from '../../lib/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { onShutdown } from '../../lib/serve.js';

/**
 * A long-running process: parses the environment, creates its logger, runs `start`, and on
 * SIGTERM or SIGINT the stop that `start` returned (exit 0 once it resolved, 1 if it failed), also
 * for a signal that came while it was starting.
 * A start that fails prints why on stderr and exits 1.
 */
export async function runProcess(name: string, start: (env: Env, logger: Logger) => Promise<() => Promise<void>>): Promise<void> {
  try {
    const env = parseEnv();
    const logger = createLogger(name, env.LOG_LEVEL);
    // The HTTP grace period, and some time to close the backends after it.
    const deadlineMs = env.INGEST_SHUTDOWN_GRACE_MS + 5000;
    // A signal while starting (a worker joining its group takes seconds) is kept, not left to
    // Node's default (an exit with 143 and nothing closed): the stop runs as soon as there is one.
    let early: NodeJS.Signals | undefined;
    const remember = (signal: NodeJS.Signals) => {
      if (early) return;
      early = signal;
      logger.info({ signal }, 'shutting down once started');
      setTimeout(() => {
        logger.error({ deadlineMs }, 'the start did not finish in time to stop; exiting');
        process.exit(1);
      }, deadlineMs).unref();
    };
    process.on('SIGTERM', remember);
    process.on('SIGINT', remember);
    let stop: () => Promise<void>;
    try {
      stop = await start(env, logger);
    } finally {
      process.off('SIGTERM', remember);
      process.off('SIGINT', remember);
    }
    onShutdown(logger, stop, { deadlineMs });
    if (early) process.emit(early, early);
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
