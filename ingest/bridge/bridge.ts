import { TypedEmitter } from '../../server/common/emitter.js';
import { ClosedError } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import type { Config } from '../../server/config/schema.js';
import type { Publication, Stream, StreamRegistry } from '../../server/core/stream.js';
import type { StreamRouters } from '../../server/sfu/stream-routers.js';
import { BridgeSession } from './session.js';
import type { BridgeMetrics, BridgeSessionStats, BridgeSettings, UpstreamKeyframeRequester } from './session.js';

export interface BridgeOptions {
	registry: StreamRegistry;
	routers: StreamRouters;
	settings: BridgeSettings;
	/** Optional metrics hooks (the server's Metrics). */
	metrics?: BridgeMetrics | null;
	/** Passes keyframe requests on passthrough streams to publishers that can take them (plain RTP). */
	requestUpstreamKeyframe?: UpstreamKeyframeRequester | null;
	logger: Logger;
}

export interface BridgeEvents extends Record<string, unknown[]> {
	/** A publication got its bridge session (producers follow once its configurations arrive). */
	session: [session: BridgeSession];
	close: [];
}

/** The bridge settings from the server configuration. */
export function bridgeSettings(config: Config): BridgeSettings {
	const s = config.streams;
	return {
		ffmpegPath: config.ffmpegPath,
		rtpMtu: s.rtpMtu,
		videoPolicy: s.videoPolicy,
		videoPolicyOverrides: s.videoPolicyOverrides,
		transcode: { ...s.transcode },
		opusBitrate: s.opusBitrate,
		keyframeRequestMinIntervalMs: s.keyframeRequestMinIntervalMs,
	};
}

/**
 * The ingest bridge: every live publication becomes an H.264 and an Opus
 * producer on its stream's origin router (see BridgeSession). Follows the
 * registry's publish/unpublish and rebuilds producers when the origin
 * router's worker dies.
 */
export class Bridge extends TypedEmitter<BridgeEvents> {
	readonly name = 'bridge';
	readonly #registry: StreamRegistry;
	readonly #routers: StreamRouters;
	readonly #settings: BridgeSettings;
	readonly #logger: Logger;
	readonly #metrics: BridgeMetrics | null;
	readonly #upstreamKeyframe: UpstreamKeyframeRequester | null;
	/** Stream name -> the session of its current publication. */
	readonly #sessions = new Map<string, BridgeSession>();
	readonly #closing = new Set<Promise<void>>();
	#closed = false;
	readonly #onPublish = (stream: Stream, pub: Publication): void => this.#publish(stream, pub);
	readonly #onUnpublish = (stream: Stream, pub: Publication, reason: string): void => this.#unpublish(stream, pub, reason);
	readonly #onRouterLost = (stream: string, _worker: number, origin: boolean): void => {
		if (!origin) return;
		const s = this.#sessions.get(stream);
		if (!s) return;
		s.logger.warn('origin router lost with its worker; rebuilding the producers');
		s.rebuild().catch((err: unknown) => s.logger.error({ err }, 'rebuilding producers failed'));
	};

	private constructor(opts: BridgeOptions) {
		super();
		this.#registry = opts.registry;
		this.#routers = opts.routers;
		this.#settings = opts.settings;
		this.#logger = opts.logger.child({ component: 'bridge' });
		this.#metrics = opts.metrics ?? null;
		this.#upstreamKeyframe = opts.requestUpstreamKeyframe ?? null;
		this.setListenerErrorLogger(this.#logger);
	}

	/** Starts following the registry; publications already live get sessions at once. */
	static create(opts: BridgeOptions): Promise<Bridge> {
		const b = new Bridge(opts);
		opts.registry.on('publish', b.#onPublish);
		opts.registry.on('unpublish', b.#onUnpublish);
		opts.routers.on('routerLost', b.#onRouterLost);
		for (const stream of opts.registry.liveStreams()) {
			if (stream.publication) b.#publish(stream, stream.publication);
		}
		b.#logger.debug({ policy: opts.settings.videoPolicy, mtu: opts.settings.rtpMtu }, 'bridge ready');
		return Promise.resolve(b);
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** The session of a stream's current publication. */
	session(stream: string): BridgeSession | undefined {
		if (this.#closed) throw new ClosedError('bridge');
		return this.#sessions.get(stream);
	}

	sessions(): BridgeSession[] {
		return [...this.#sessions.values()];
	}

	/** Per-stream counters and delays, for metrics. */
	stats(): BridgeSessionStats[] {
		return this.sessions().map((s) => s.stats());
	}

	#publish(stream: Stream, pub: Publication): void {
		if (this.#closed || pub.ended) return;
		const old = this.#sessions.get(stream.name);
		if (old) this.#closeSession(old, 'taken over by a new publisher');
		const session = new BridgeSession(stream, pub, this.#routers, this.#settings, this.#logger, this.#metrics, this.#upstreamKeyframe);
		this.#sessions.set(stream.name, session);
		stream.annotate('webrtc', () => session.info());
		session.start();
		this.emit('session', session);
	}

	#unpublish(stream: Stream, pub: Publication, reason: string): void {
		const s = this.#sessions.get(stream.name);
		if (!s || s.publication !== pub) return;
		this.#closeSession(s, reason);
	}

	#closeSession(s: BridgeSession, reason: string): void {
		if (this.#sessions.get(s.stream.name) === s) {
			this.#sessions.delete(s.stream.name);
			s.stream.unannotate('webrtc');
		}
		const p = s.close(reason).catch((err: unknown) => s.logger.error({ err }, 'error closing bridge session'));
		this.#closing.add(p);
		void p.finally(() => this.#closing.delete(p));
	}

	/** Closes every session (producers, transports, ffmpeg children) and waits for the children to be reaped. Idempotent. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		this.#registry.off('publish', this.#onPublish);
		this.#registry.off('unpublish', this.#onUnpublish);
		this.#routers.off('routerLost', this.#onRouterLost);
		for (const s of [...this.#sessions.values()]) this.#closeSession(s, 'server shutting down');
		await Promise.all([...this.#closing]);
		this.emit('close');
		this.removeAllListeners();
	}
}
