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
import { ensurePlayerBundle, playerRoutes } from './http/player.js';
import { adminRoutes } from './http/admin.js';
import { Metrics, metricsRoutes } from './metrics/index.js';
import { Webhooks } from './webhooks/index.js';
import type { ApiInfo } from './http/api.js';
import { StreamRouters } from './sfu/stream-routers.js';
import { WorkerPool } from './sfu/worker-pool.js';
import { RtmpServer } from '../ingest/rtmp/index.js';
import { RtpIngest, reportRtpIngestMetrics } from '../ingest/rtp/index.js';
import { viewerJwtVerifier } from './auth/viewer-jwt.js';
import { SignalingService } from '../signaling/index.js';
import { Bridge, bridgeSettings } from '../ingest/bridge/index.js';
import { HlsService } from './hls/index.js';

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
	/** Prometheus metrics; components report through its hooks (see docs/deploy.md). */
	readonly metrics: Metrics;
	/** socket.io signaling for WebRTC viewers (set once started). */
	signaling: SignalingService | null = null;
	readonly #components: Component[] = [];
	#closing: Promise<void> | null = null;
	#rtmp: RtmpServer | null = null;
	#rtpIngest: RtpIngest | null = null;
	#bridge: Bridge | null = null;
	#hls: HlsService | null = null;

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
		this.metrics = new Metrics({
			registry: init.registry,
			pool: init.pool,
			logger: init.logger,
			sfuStatsBudgetMs: init.config.metrics.sfuStatsBudgetMs,
			sfuStatsMaxAgeMs: init.config.metrics.sfuStatsMaxAgeMs,
		});
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
			try {
				await server.#start();
			} catch (err) {
				// Components started before the failure hold ports and children.
				await server.close();
				throw err;
			}
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
		http.app.use(playerRoutes(await ensurePlayerBundle(this.logger)));
		// Operations first: metrics so later components can report to it, webhooks so
		// they close late and still send the unpublish notifications of a shutdown.
		const { auth, metrics: metricsConfig } = this.config;
		this.addComponent(this.metrics);
		if (metricsConfig.enabled) {
			const opts = { adminToken: auth.adminToken, requireAdminToken: metricsConfig.requireAdminToken };
			http.app.use(metricsRoutes(this.metrics, opts));
		}
		const onAction = (a: string): void => this.metrics.adminAction(a);
		http.app.use('/api/admin', adminRoutes({ registry: this.registry, token: auth.adminToken, logger: this.logger, onAction }));
		const webhooks = new Webhooks({
			config: this.config.webhooks,
			registry: this.registry,
			logger: this.logger,
			metrics: this.metrics,
			userAgent: `subsecond/${pkg.version}`,
		});
		this.addComponent(webhooks);

		// Components register here, in dependency order.
		// One viewer-token verifier for WebRTC and HLS, so they share a JWKS cache.
		const verifyViewer = viewerJwtVerifier({ ...this.config.auth.viewer, logger: this.logger });
		if (this.config.rtmp.enabled) {
			const rtmp = await RtmpServer.create({
				...this.config.rtmp,
				registry: this.registry,
				logger: this.logger,
				onError: (protocol, reason) => this.metrics.ingestError(protocol, reason),
			});
			this.#rtmp = rtmp;
			this.addComponent(rtmp);
			this.metrics.trackConnections('rtmp', () => rtmp.connectionCount('rtmp'));
			this.metrics.trackConnections('rtmps', () => rtmp.connectionCount('rtmps'));
		}
		if (this.config.rtpIngest.enabled) {
			const rtp = await RtpIngest.create({
				config: this.config.rtpIngest,
				registry: this.registry,
				announcedIp: ['0.0.0.0', '::'].includes(this.config.rtpIngest.listenIp) ? this.pool.announcedIp : this.config.rtpIngest.listenIp,
				keyframeRequestMinIntervalMs: this.config.streams.keyframeRequestMinIntervalMs,
				logger: this.logger,
			});
			http.app.use(rtp.routes());
			this.#rtpIngest = rtp;
			this.addComponent(rtp);
			reportRtpIngestMetrics(rtp, this.metrics);
		}
		// Every publication becomes producers on its origin router.
		const bridge = await Bridge.create({
			registry: this.registry,
			routers: this.routers,
			settings: bridgeSettings(this.config),
			metrics: this.metrics,
			requestUpstreamKeyframe: (stream) => this.#rtpIngest?.requestKeyFrame(stream) ?? false,
			logger: this.logger,
		});
		this.#bridge = bridge;
		this.addComponent(bridge);
		if (this.config.hls.enabled) {
			const hls = await HlsService.create({
				config: this.config.hls,
				registry: this.registry,
				logger: this.logger,
				ffmpegPath: this.config.ffmpegPath,
				viewerTokenRequired: this.config.auth.viewer.required,
				authorizeViewer: verifyViewer,
				maxViewersPerStream: this.config.streams.maxViewersPerStream,
				metrics: this.metrics,
			});
			http.app.use(hls.router());
			this.#hls = hls;
			this.addComponent(hls);
		}
		this.signaling = await SignalingService.create({
			httpServer: http.server,
			registry: this.registry,
			routers: this.routers,
			config: this.config,
			verifyViewer,
			logger: this.logger,
		});
		this.addComponent(this.signaling);

		await http.listen();
		this.#logStartBanner();
	}

	/** The RTMP/RTMPS ingest, or null when config.rtmp.enabled is false. */
	get rtmp(): RtmpServer | null {
		return this.#rtmp;
	}

	/** The ingest bridge (publications to mediasoup producers); set once started. */
	get bridge(): Bridge | null {
		return this.#bridge;
	}

	/** HLS output (/hls/NAME/index.m3u8), or null when config.hls.enabled is false. */
	get hls(): HlsService | null {
		return this.#hls;
	}

	/** Plain RTP ingest (POST /api/streams/NAME/rtp), or null when config.rtpIngest.enabled is false. */
	get rtpIngest(): RtpIngest | null {
		return this.#rtpIngest;
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
			rtmp: this.#rtmpInfo(),
			rtc: { announcedIp: this.pool.announcedIp, ports: this.pool.ports() },
			hls: this.config.hls.enabled,
			viewerTokenRequired: this.config.auth.viewer.required,
		};
	}

	#rtmpInfo(): ApiInfo['rtmp'] {
		const rtmp = this.#rtmp;
		if (!rtmp) return null;
		const { host } = this.config.rtmp;
		const wildcard = host === '0.0.0.0' || host === '::' || host === '';
		const urlHost = this.config.rtc.announcedIp ?? (wildcard ? this.pool.announcedIp : host);
		const hostPart = urlHost.includes(':') ? `[${urlHost}]` : urlHost;
		return { port: rtmp.port, url: `rtmp://${hostPart}:${rtmp.port}/${rtmp.app}`, rtmpsPort: rtmp.rtmpsPort };
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
