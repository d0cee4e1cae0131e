/**
 * A real single-node Kafka broker (KRaft, combined broker+controller) started
 * from the jars that services/install.sh fetched from Maven Central into the
 * cache dir. For tests, benchmarks and `npm run stack`.
 *
 *   const kafka = await KafkaBroker.start();
 *   kafka.brokers            // "127.0.0.1:PORT"
 *   await kafka.stop();      // graceful (SIGTERM, then SIGKILL after 20s)
 *   await kafka.start();     // same ports, same data
 *   await kafka.destroy();   // stop + remove the temp data dir
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { SERVICES_DIR, cacheDir, freePorts, isAlive, readIfExists, sleep, tailFile, terminate, track, debug, ServiceProcess } from './proc.js';

const POM = join(SERVICES_DIR, 'kafka', 'pom.xml');
/** 3.x logs through log4j 1.x (reload4j), 4.x through log4j2: each line has its pom. */
const POM_3 = join(SERVICES_DIR, 'kafka', 'pom-3.xml');
const INSTALL_SH = join(SERVICES_DIR, 'install.sh');

/** `KAFKA_VERSION`, else the version pinned in services/kafka/pom.xml (the newest 4.x). */
export function kafkaVersion(): string {
  const chosen = process.env.KAFKA_VERSION?.trim();
  if (chosen) {
    if (!/^\d+\.\d+\.\d+$/.test(chosen)) throw new Error(`KAFKA_VERSION must look like 4.4.0, not "${chosen}"`);
    return chosen;
  }
  const m = /<kafka\.version>\s*([^<\s]+)\s*<\/kafka\.version>/.exec(readFileSync(POM, 'utf8'));
  if (!m?.[1]) throw new Error(`cannot read <kafka.version> from ${POM}`);
  return m[1];
}

/** The major version of the broker: KRaft's settings, the format command and logging differ from 4 on. */
export function kafkaMajor(version = kafkaVersion()): number {
  return Number(version.split('.')[0]);
}

/** `${CLICKFOLD_CACHE:-~/.cache/clickfold}/kafka-<version>` (holds libs/). */
export function kafkaHome(): string {
  return join(cacheDir(), `kafka-${kafkaVersion()}`);
}

function jarsReady(): boolean {
  const version = kafkaVersion();
  const marker = readIfExists(join(kafkaHome(), '.complete'))?.trim();
  // The same hash services/install.sh writes: the pom, then the version and a newline.
  const pom = readFileSync(kafkaMajor(version) < 4 ? POM_3 : POM);
  const pomHash = createHash('sha256').update(pom).update(`${version}\n`).digest('hex');
  return marker === pomHash;
}

let fetching: Promise<void> | undefined;
/**
 * Make sure the Kafka jars are in the cache, running
 * `services/install.sh --kafka-only` (Maven) if they are not. Idempotent; safe
 * to call from several processes at once (the script takes a lock).
 */
export function ensureKafkaJars(): Promise<void> {
  if (jarsReady()) return Promise.resolve();
  fetching ??= new Promise<void>((resolve, reject) => {
    // Progress goes to stderr so it never pollutes a caller's stdout.
    const child = spawn('bash', [INSTALL_SH, '--kafka-only'], {
      env: { ...process.env, KAFKA_VERSION: kafkaVersion() },
      stdio: ['ignore', process.stderr, process.stderr],
    });
    child.on('error', (e) => reject(new Error(`cannot run ${INSTALL_SH}: ${e.message}. Run 'npm run services:install'.`)));
    child.on('exit', (code) => {
      if (code === 0 && jarsReady()) resolve();
      else reject(new Error(`fetching the Kafka jars failed (exit ${code}); run 'npm run services:install' and read its output`));
    });
  }).finally(() => {
    fetching = undefined;
  });
  return fetching;
}

function javaBin(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (22 chars). */
export function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id; // would look like an option to StorageTool
  }
}

export interface KafkaBrokerOptions {
  /** Where config, KRaft logs and broker logs go. Default: a fresh temp dir (removed by destroy()). A given dir is kept by destroy(); if it was formatted before it is reused as is. */
  dataDir?: string;
  /** Client listener port. Default: a free port. */
  port?: number;
  /** Controller listener port. Default: a free port. */
  controllerPort?: number;
  /** num.partitions for auto-created topics. Default 3. */
  partitions?: number;
  /** Extra/overriding server.properties entries. */
  properties?: Record<string, string | number | boolean>;
  /** JVM heap flags. Default ['-Xmx512m', '-Xms256m']. */
  heap?: string[];
  /** Extra JVM flags. */
  jvmArgs?: string[];
  /** How long start() waits for the broker to answer. Default 60s. */
  startTimeoutMs?: number;
}

export class KafkaBroker extends ServiceProcess {
  /** "127.0.0.1:PORT", for kafkajs `brokers` (split on ','). */
  readonly brokers: string;
  readonly host = '127.0.0.1';
  readonly port: number;
  readonly controllerPort: number;
  /** The broker's log4j output (server.log); stdout/stderr go to stdout.log beside it. */
  readonly logFile: string;
  readonly stdoutFile: string;
  readonly clusterId: string;
  /** The broker's version (KAFKA_VERSION or the pinned one). */
  readonly version = kafkaVersion();

  private readonly opts: KafkaBrokerOptions;

  private constructor(opts: KafkaBrokerOptions, dataDir: string, ownsDataDir: boolean, port: number, controllerPort: number) {
    super(dataDir, ownsDataDir);
    this.opts = opts;
    this.port = port;
    this.controllerPort = controllerPort;
    this.brokers = `${this.host}:${port}`;
    this.logFile = join(dataDir, 'logs', 'server.log');
    this.stdoutFile = join(dataDir, 'logs', 'stdout.log');
    const meta = readIfExists(join(dataDir, 'kraft-logs', 'meta.properties'));
    this.clusterId = /^cluster\.id=(.+)$/m.exec(meta ?? '')?.[1]?.trim() ?? newClusterId();
  }

  /** Provision (if needed), configure, format and start a broker; resolves once it serves requests. */
  static async start(opts: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
    await ensureKafkaJars();
    const needed = [opts.port, opts.controllerPort].filter((p) => p === undefined).length;
    const free = await freePorts(needed);
    const port = opts.port ?? free.shift()!;
    const controllerPort = opts.controllerPort ?? free.shift()!;
    const ownsDataDir = !opts.dataDir;
    const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'clickfold-kafka-'));
    mkdirSync(dataDir, { recursive: true });
    const broker = new KafkaBroker(opts, dataDir, ownsDataDir, port, controllerPort);
    try {
      await broker.start();
    } catch (e) {
      await broker.stop().catch(() => {});
      if (ownsDataDir && !process.env.CLICKFOLD_KEEP_FAILED) rmSync(dataDir, { recursive: true, force: true });
      throw e;
    }
    return broker;
  }

  protected async doStart(): Promise<void> {
    await ensureKafkaJars();
    mkdirSync(join(this.dataDir, 'logs'), { recursive: true });
    this.writeConfig();
    if (!existsSync(join(this.dataDir, 'kraft-logs', 'meta.properties'))) await this.format();

    const out = openSync(this.stdoutFile, 'a');
    try {
      this.child = spawn(javaBin(), [...this.jvmArgs(), 'kafka.Kafka', join(this.dataDir, 'server.properties')], {
        cwd: this.dataDir,
        detached: true, // own process group: a terminal's Ctrl-C doesn't hit it; we stop it
        stdio: ['ignore', out, out],
      });
    } finally {
      closeSync(out);
    }
    const child = this.child;
    const t0 = Date.now();
    debug(`kafka ${this.brokers}: spawned pid ${child.pid}`);
    child.on('error', () => {}); // surfaces through the readiness check below
    child.unref();
    track(child);

    const timeoutMs = this.opts.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    while (Date.now() < deadline) {
      if (!isAlive(child)) {
        throw new Error(`Kafka broker exited during startup (code ${child.exitCode}, signal ${child.signalCode}).\n${this.logTail()}`);
      }
      try {
        const probe = this.probe(Math.max(1_000, deadline - Date.now()));
        probe.catch(() => {}); // may lose the race below
        // A broker that dies mid-probe is reported at once, not after the probe's timeouts.
        if ((await Promise.race([probe.then(() => 'ok' as const), exited.then(() => 'exited' as const)])) === 'exited') continue;
        debug(`kafka ${this.brokers}: ready after ${Date.now() - t0} ms`);
        return;
      } catch (e) {
        lastError = e;
        await sleep(250);
      }
    }
    await terminate(child, 10_000);
    throw new Error(
      `Kafka broker at ${this.brokers} did not answer within ${timeoutMs} ms (last error: ${
        (lastError as Error | undefined)?.message ?? lastError
      }).\n${this.logTail()}`,
    );
  }

  /** Graceful stop: SIGTERM, wait up to `graceMs` (default 20s), then SIGKILL. Data is kept. */
  async stop(graceMs = 20_000): Promise<void> {
    if (this.starting) await this.starting.catch(() => {});
    const t0 = Date.now();
    const pid = this.child?.pid;
    await terminate(this.child, graceMs);
    if (pid) debug(`kafka ${this.brokers}: pid ${pid} stopped in ${Date.now() - t0} ms`);
    this.child = undefined;
  }

  /** The last lines of the broker's logs, for error messages. */
  logTail(lines = 40): string {
    const parts: string[] = [];
    // The cause is usually an ERROR/FATAL line long before the shutdown noise at the end.
    const errors = tailFile(this.logFile, 5_000, 1024 * 1024)
      .split('\n')
      .filter((l) => /^\[[^\]]+\] (ERROR|FATAL) /.test(l))
      .slice(0, 8)
      .map((l) => (l.length > 600 ? `${l.slice(0, 600)}…` : l));
    if (errors.length) parts.push(`--- first ERROR/FATAL lines of ${this.logFile} ---\n${errors.join('\n')}`);
    const server = tailFile(this.logFile, lines);
    const stdout = tailFile(this.stdoutFile, 15);
    if (server) parts.push(`--- ${this.logFile} (tail) ---\n${server}`);
    if (stdout) parts.push(`--- ${this.stdoutFile} (tail) ---\n${stdout}`);
    return parts.join('\n') || `(no broker log yet in ${join(this.dataDir, 'logs')})`;
  }

  // -------------------------------------------------------------------------

  private jvmArgs(): string[] {
    return [
      ...(this.opts.heap ?? ['-Xmx512m', '-Xms256m']),
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-XX:InitiatingHeapOccupancyPercent=35',
      '-XX:+ExplicitGCInvokesConcurrent',
      '-XX:+ExitOnOutOfMemoryError',
      '-Djava.awt.headless=true',
      this.modern
        ? `-Dlog4j2.configurationFile=${join(this.dataDir, 'log4j2.properties')}`
        : `-Dlog4j.configuration=file:${join(this.dataDir, 'log4j.properties')}`,
      `-Dkafka.logs.dir=${join(this.dataDir, 'logs')}`,
      ...(this.opts.jvmArgs ?? []),
      '-cp',
      `${join(kafkaHome(), 'libs')}/*`,
    ];
  }

  /** Kafka 4 or later: a dynamic controller quorum, log4j2, share groups. */
  private get modern(): boolean {
    return kafkaMajor(this.version) >= 4;
  }

  private writeConfig(): void {
    const controller = `${this.host}:${this.controllerPort}`;
    const quorum: Record<string, string | number> = this.modern
      ? {
          // A dynamic quorum (KIP-853), formatted with --standalone; the controller listener is advertised.
          'controller.quorum.bootstrap.servers': controller,
          'advertised.listeners': `PLAINTEXT://${this.host}:${this.port},CONTROLLER://${controller}`,
          'share.coordinator.state.topic.replication.factor': 1,
          'share.coordinator.state.topic.min.isr': 1,
        }
      : { 'controller.quorum.voters': `1@${controller}`, 'advertised.listeners': `PLAINTEXT://${this.host}:${this.port}` };
    const props: Record<string, string | number | boolean> = {
      'process.roles': 'broker,controller',
      'node.id': 1,
      listeners: `PLAINTEXT://${this.host}:${this.port},CONTROLLER://${controller}`,
      ...quorum,
      'controller.listener.names': 'CONTROLLER',
      'inter.broker.listener.name': 'PLAINTEXT',
      'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'log.dirs': join(this.dataDir, 'kraft-logs'),
      'num.partitions': this.opts.partitions ?? 3,
      'default.replication.factor': 1,
      'min.insync.replicas': 1,
      'offsets.topic.replication.factor': 1,
      'offsets.topic.num.partitions': 10,
      'transaction.state.log.replication.factor': 1,
      'transaction.state.log.min.isr': 1,
      'transaction.state.log.num.partitions': 5,
      'group.initial.rebalance.delay.ms': 0,
      'auto.create.topics.enable': true,
      'num.network.threads': 3,
      'num.io.threads': 4,
      'log.retention.hours': 24,
      ...this.opts.properties,
    };
    const body = Object.entries(props)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join('\n');
    writeFileSync(join(this.dataDir, 'server.properties'), `# written by services/kafka.ts\n${body}\n`);

    const logs = join(this.dataDir, 'logs');
    if (this.modern) {
      writeFileSync(
        join(this.dataDir, 'log4j2.properties'),
        [
          '# written by services/kafka.ts: everything to files in the data dir, nothing to the console',
          'status = warn',
          'appender.server.type = RollingFile',
          'appender.server.name = server',
          `appender.server.fileName = ${join(logs, 'server.log')}`,
          `appender.server.filePattern = ${join(logs, 'server.log.%i')}`,
          'appender.server.layout.type = PatternLayout',
          'appender.server.layout.pattern = [%d] %p %m (%c)%n',
          'appender.server.policies.type = Policies',
          'appender.server.policies.size.type = SizeBasedTriggeringPolicy',
          'appender.server.policies.size.size = 20MB',
          'appender.server.strategy.type = DefaultRolloverStrategy',
          'appender.server.strategy.max = 2',
          'rootLogger.level = INFO',
          'rootLogger.appenderRef.server.ref = server',
          ...[
            ['request', 'kafka.request.logger', 'WARN'],
            ['authorizer', 'kafka.authorizer.logger', 'WARN'],
            ['state', 'state.change.logger', 'WARN'],
            ['controller', 'org.apache.kafka.controller', 'INFO'],
          ].flatMap(([id, name, level]) => [`logger.${id}.name = ${name}`, `logger.${id}.level = ${level}`]),
          '',
        ].join('\n'),
      );
      return;
    }
    writeFileSync(
      join(this.dataDir, 'log4j.properties'),
      [
        '# written by services/kafka.ts: everything to files in the data dir, nothing to the console',
        'log4j.rootLogger=INFO, server',
        'log4j.appender.server=org.apache.log4j.RollingFileAppender',
        `log4j.appender.server.File=${join(logs, 'server.log')}`,
        'log4j.appender.server.MaxFileSize=20MB',
        'log4j.appender.server.MaxBackupIndex=2',
        'log4j.appender.server.layout=org.apache.log4j.PatternLayout',
        'log4j.appender.server.layout.ConversionPattern=[%d] %p %m (%c)%n',
        'log4j.logger.kafka.request.logger=WARN',
        'log4j.logger.kafka.authorizer.logger=WARN',
        'log4j.logger.state.change.logger=WARN',
        'log4j.logger.org.apache.kafka.controller=INFO',
        '',
      ].join('\n'),
    );
  }

  /** kafka.tools.StorageTool format, asynchronously (a blocked event loop would starve other clients in the process). */
  private async format(): Promise<void> {
    const t0 = Date.now();
    const args = [
      ...this.jvmArgs().filter((a) => !a.startsWith('-Xm')),
      '-Xmx256m',
      'kafka.tools.StorageTool',
      'format',
      '-t',
      this.clusterId,
      '-c',
      join(this.dataDir, 'server.properties'),
      // Kafka 4's dynamic quorum: this node is the one voter.
      ...(this.modern ? ['--standalone'] : []),
    ];
    const { code, output, error } = await new Promise<{ code: number | null; output: string; error?: Error }>((resolve) => {
      const child = spawn(javaBin(), args, { cwd: this.dataDir, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ code: null, output, error: e });
      });
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, output });
      });
    });
    writeFileSync(join(this.dataDir, 'logs', 'format.log'), output);
    debug(`kafka ${this.brokers}: StorageTool format took ${Date.now() - t0} ms`);
    if (error || code !== 0) {
      throw new Error(
        `kafka.tools.StorageTool format failed (${error ? `${error.message}: is Java installed? run 'npm run services:install'` : `exit ${code}`}):\n${output.trim()}`,
      );
    }
  }

  /** Answers only when the broker really serves: metadata, a topic create/delete round trip, a group coordinator. */
  private async probe(timeoutMs: number): Promise<void> {
    const kafka = new Kafka({
      clientId: 'clickfold-services-probe',
      brokers: [this.brokers],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1_000,
      requestTimeout: Math.min(10_000, timeoutMs),
      retry: { retries: 0 },
    });
    const admin = kafka.admin({ retry: { retries: 0 } });
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (!cluster.brokers.some((b) => b.port === this.port)) throw new Error('broker not registered yet');
      const topic = `clickfold-probe-${randomBytes(4).toString('hex')}`;
      const created = await admin.createTopics({
        topics: [{ topic, numPartitions: 1, replicationFactor: 1 }],
        waitForLeaders: true,
        timeout: Math.min(10_000, timeoutMs),
      });
      if (!created) throw new Error(`probe topic ${topic} already existed`);
      // A group coordinator answers too: Kafka 4 creates and loads __consumer_offsets on the first
      // request for it, and a consumer that meets "the coordinator is loading" at its start gives up.
      await admin.fetchOffsets({ groupId: 'clickfold-probe', topics: [topic] });
      await admin.deleteTopics({ topics: [topic], timeout: Math.min(10_000, timeoutMs) });
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
}
