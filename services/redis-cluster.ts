/**
 * A local Redis Cluster of three masters (no replicas), from Debian's redis-server and
 * redis-cli, for the tests that prove every component runs unchanged on a cluster.
 *
 *   const cluster = await RedisCluster.start();
 *   cluster.nodes   // "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" (REDIS_CLUSTER_NODES)
 *   await cluster.destroy();
 */
import { spawnSync } from 'node:child_process';
import { sleep } from './proc.js';
import { RedisServer } from './redis.js';

function cli(args: string[]): string {
  const r = spawnSync('redis-cli', args, { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed: ${r.error?.message ?? r.stderr ?? r.stdout}`);
  return r.stdout;
}

export class RedisCluster {
  private constructor(readonly servers: RedisServer[]) {}

  /** Comma-separated host:port of every master. */
  get nodes(): string {
    return this.servers.map((s) => `${s.host}:${s.port}`).join(',');
  }

  static async start(masters = 3): Promise<RedisCluster> {
    const servers = await Promise.all(
      Array.from({ length: masters }, () =>
        RedisServer.start({ extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'] }),
      ),
    );
    const cluster = new RedisCluster(servers);
    try {
      cli(['--cluster', 'create', ...servers.map((s) => `${s.host}:${s.port}`), '--cluster-replicas', '0', '--cluster-yes']);
      const deadline = Date.now() + 30_000;
      while (!servers.every((s) => /cluster_state:ok/.test(cli(['-p', String(s.port), 'cluster', 'info'])))) {
        if (Date.now() > deadline) throw new Error('the Redis cluster did not reach cluster_state:ok within 30 s');
        await sleep(100);
      }
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
    return cluster;
  }

  async destroy(): Promise<void> {
    await Promise.allSettled(this.servers.map((s) => s.destroy()));
  }
}
