import { createRequire } from 'node:module';
import { TypedEmitter } from './common/emitter.js';
import { ClosedError } from './common/errors.js';
import { checkFfmpeg } from './common/ffmpeg.js';
import type { FfmpegInfo } from './common/ffmpeg.js';
import { createLogger } from './common/logger.js';
import type { Logger } from './common/logger.js';
import { liveChildCount } from './common/process.js';
import { maskSecrets } from './config/load.js';
import type { Config } from './config/schema.js';
import { publishKeyGuard } from './auth/publish-keys.js';
import { StreamRegistry } from './core/stream.js';
import { HttpServer } from './http/http-server.js';
import { apiRoutes } from './http/api.js';
import type { ApiInfo } from './http/api.js';
import { StreamRouters } from './sfu/stream-routers.js';
import { WorkerPool } from './sfu/worker-pool.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

/** A part of the server with a lifecycle of its own; closed in reverse order of start. */
export interface Component {
	readonly name: string;
	close(): Promise<void> | void;
}

export interface ServerEvents extends Record<string, unknown[]> {
	close: [];
}

export interface ServerOptions {
	/** Use this logger instead of one built from config.log. */
	logger?: Logger;
}

/**
 * The whole subsecond server: stream core, mediasoup pool, ingest, bridge,
 * HLS, signaling and HTTP, started in dependency order and closed in reverse.
 */
export class Server extends TypedEmitter<ServerEvents> {
	readonly config: Config;
	readonly logger: Logger;
	readonly registry: StreamRegistry;
	readonly pool: WorkerPool;
	readonly routers: StreamRouters;
	readonly http: HttpServer;
	readonly ffmpeg: FfmpegInfo;
	readonly #components: Component[] = [];
	#closing: Promise<void> | null = null;

	private constructor(init: {
		config: Config;
		logger: Logger;
		registry: StreamRegistry;
		pool: WorkerPool;
		routers: StreamRouters;
		http: HttpServer;
		ffmpeg: FfmpegInfo;
	}) {
		super();
		this.config = init.config;
		this.logger = init.logger;
		this.registry = init.registry;
		this.pool = init.pool;
		this.routers = init.routers;
		this.http = init.http;
		this.ffmpeg = init.ffmpeg;
		this.setListenerErrorLogger(this.logger);
	}

	static async create(config: Config, opts: ServerOptions = {}): Promise<Server> {
		const logger = opts.logger ?? createLogger(config.log);
		logger.info({ config: maskSecrets(config) }, 'effective config');
		const ffmpeg = await checkFfmpeg(config.ffmpegPath);
		logger.debug({ ffmpeg: ffmpeg.version }, 'ffmpeg found');

		const registry = new StreamRegistry({ logger, maxStreams: config.streams.maxStreams });
		registry.addPublishGuard(
			publishKeyGuard({ keys: config.auth.publish.keys, hmacSecret: config.auth.publish.hmacSecret, logger }),
		);
		let pool: WorkerPool | null = null;
		let http: HttpServer | null = null;
		try {
			pool = await WorkerPool.create({
				numWorkers: config.rtc.workers,
				basePort: config.rtc.port,
				listenIp: config.rtc.listenIp,
				announcedIp: config.rtc.announcedIp,
				logLevel: config.rtc.logLevel,
				plainPortMin: config.rtc.plainPortMin,
				plainPortMax: config.rtc.plainPortMax,
				logger,
			});
			const routers = new StreamRouters(pool, logger);
			http = HttpServer.create({ ...config.http, logger });
			const server = new Server({ config, logger, registry, pool, routers, http, ffmpeg });
			await server.#start();
			return server;
		} catch (err) {
			registry.close();
			pool?.close();
			await http?.close();
			throw err;
		}
	}

	async #start(): Promise<void> {
		const { http } = this;
		http.app.use(apiRoutes(this.registry, () => this.info()));

		// Components register here, in dependency order.

		await http.listen();
		this.#logStartBanner();
	}

	/** Adds a component that close() will close (in reverse order). */
	addComponent(c: Component): void {
		this.#components.push(c);
	}

	info(): ApiInfo {
		return {
			name: 'subsecond',
			version: pkg.version,
			http: { port: this.http.port, secure: this.http.secure },
			rtmp: null,
			rtc: { announcedIp: this.pool.announcedIp, ports: this.pool.ports() },
			hls: this.config.hls.enabled,
			viewerTokenRequired: this.config.auth.viewer.required,
		};
	}

	#logStartBanner(): void {
		const info = this.info();
		const host = this.pool.announcedIp;
		const web = `${info.http.secure ? 'https' : 'http'}://${host}:${info.http.port}`;
		const lines = [
			`subsecond ${info.version} is running`,
			info.rtmp ? `  publish (OBS, ffmpeg): ${info.rtmp.url}  stream key: NAME` : '  RTMP ingest is off',
			`  watch:                 ${web}/watch/NAME   (all live streams: ${web}/)`,
			`  HLS:                   ${web}/hls/NAME/index.m3u8`,
			`  WebRTC ports:          ${info.rtc.ports.map((p) => `${p.udp}/udp ${p.tcp}/tcp`).join(', ')}`,
		];
		this.logger.info({ info }, lines.join('\n'));
	}

	get closed(): boolean {
		return this.#closing !== null;
	}

	/** Shuts everything down: publishers, children, workers, sockets. Idempotent. */
	close(): Promise<void> {
		if (this.#closing) return this.#closing;
		this.#closing = (async (): Promise<void> => {
			this.logger.info('shutting down');
			this.registry.close();
			for (const c of [...this.#components].reverse()) {
				try {
					await c.close();
				} catch (err) {
					this.logger.error({ err, component: c.name }, 'error while closing');
				}
			}
			this.routers.close();
			this.pool.close();
			await this.http.close();
			const children = liveChildCount();
			if (children > 0) this.logger.warn({ children }, 'child processes still alive after shutdown');
			this.logger.info('stopped');
			this.emit('close');
			this.removeAllListeners();
		})();
		return this.#closing;
	}

	/** Throws when the server is closed: for components that outlive a request. */
	assertOpen(): void {
		if (this.#closing) throw new ClosedError('server');
	}
}
