import type { Request, Router } from 'express';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError, Unauthorized } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Config } from '../config/schema.js';
import type { SupervisedProcess } from '../common/process.js';
import type { Publication, Stream, StreamRegistry } from '../core/stream.js';
import { HlsDiskStore } from './disk-store.js';
import { hlsRouter } from './http.js';
import { HlsSession } from './session.js';
import type { HlsPart, HlsSegment } from './session.js';
import { HlsViewerTracker } from './viewers.js';

/** Checks a viewer token for a stream; throws Unauthorized (server/auth/viewer-jwt.ts provides one). */
export type ViewerAuthorizer = (stream: string, token: string) => Promise<void>;

export type HlsConfig = Config['hls'];

/** The metrics hooks HLS reports to (server/metrics implements them). */
export interface HlsMetrics {
	bytesOut(path: 'hls', stream: string, n: number): void;
	trackQueue(component: string, queue: { readonly dropped: number }): () => void;
	trackProcess(kind: string, proc: SupervisedProcess): void;
}

export interface HlsServiceOptions {
	config: HlsConfig;
	registry: StreamRegistry;
	logger: Logger;
	ffmpegPath: string;
	/** config.auth.viewer.required: every request needs `?token=`. */
	viewerTokenRequired?: boolean;
	authorizeViewer?: ViewerAuthorizer | null;
	maxViewersPerStream?: number;
	metrics?: HlsMetrics | null;
}

export interface HlsServiceEvents extends Record<string, unknown[]> {
	/** A stream's playlist started (first publish after being offline). */
	start: [stream: string, session: HlsSession];
	part: [stream: string, part: Readonly<HlsPart>];
	segment: [stream: string, segment: Readonly<HlsSegment>];
	/** The playlist got EXT-X-ENDLIST. */
	end: [stream: string];
	/** The stream's files and memory are gone (cleanupGraceMs after the end). */
	cleanup: [stream: string];
	close: [];
}

/** Verified tokens are trusted this long, so a player's part requests do not each verify a JWT. */
const TOKEN_CACHE_MS = 10_000;
const TOKEN_CACHE_MAX = 10_000;

/**
 * HLS and LL-HLS for every live stream: one HlsSession per stream, fed from
 * the registry's publications, its files under config.hls.dir/<stream>/,
 * served at /hls/<stream>/index.m3u8.
 */
export class HlsService extends TypedEmitter<HlsServiceEvents> {
	readonly name = 'hls';
	readonly config: HlsConfig;
	readonly store: HlsDiskStore;
	readonly #opts: HlsServiceOptions;
	readonly #logger: Logger;
	readonly #registry: StreamRegistry;
	readonly #sessions = new Map<string, HlsSession>();
	readonly #cleanupTimers = new Map<string, NodeJS.Timeout>();
	readonly #disposing = new Set<Promise<void>>();
	readonly #viewers: HlsViewerTracker;
	readonly #tokenCache = new Map<string, number>();
	readonly #onPublish: (stream: Stream, pub: Publication) => void;
	readonly #onUnpublish: (stream: Stream, pub: Publication, reason: string) => void;
	readonly #untrackQueue: () => void;
	#closed = false;

	private constructor(opts: HlsServiceOptions, store: HlsDiskStore) {
		super();
		this.#opts = opts;
		this.config = opts.config;
		this.store = store;
		this.#registry = opts.registry;
		this.#logger = opts.logger.child({ component: 'hls' });
		this.setListenerErrorLogger(this.#logger);
		this.#viewers = new HlsViewerTracker({
			registry: opts.registry,
			ttlMs: Math.max(10_000, opts.config.segmentTargetMs * 6),
			maxViewersPerStream: opts.maxViewersPerStream ?? Number.MAX_SAFE_INTEGER,
		});
		this.#untrackQueue = opts.metrics?.trackQueue('hls-disk', store) ?? ((): void => undefined);
		this.#onPublish = (stream, pub) => this.#publish(stream, pub);
		this.#onUnpublish = (stream, pub, reason) => this.#unpublish(stream, pub, reason);
		this.#registry.on('publish', this.#onPublish);
		this.#registry.on('unpublish', this.#onUnpublish);
		for (const s of this.#registry.liveStreams()) if (s.publication) this.#publish(s, s.publication);
	}

	/** Prepares the HLS folder (removing an earlier run's files) and starts following the registry. */
	static async create(opts: HlsServiceOptions): Promise<HlsService> {
		const store = await HlsDiskStore.create({ dir: opts.config.dir, maxBytes: opts.config.maxDiskBytes, logger: opts.logger });
		return new HlsService(opts, store);
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** The stream's current playlist session (live or within its cleanup grace). */
	session(stream: string): HlsSession | undefined {
		return this.#sessions.get(stream);
	}

	/** The playlist URL path of a live stream, or null. */
	playlistPath(stream: string): string | null {
		return this.#sessions.get(stream)?.live ? `/hls/${stream}/index.m3u8` : null;
	}

	/** HLS viewers of a stream counted right now. */
	viewerCount(stream: string): number {
		return this.#viewers.count(stream);
	}

	/** The routes to mount on the shared express app (before it listens). */
	router(): Router {
		this.assertOpen();
		return hlsRouter({
			session: (stream) => this.#sessions.get(stream),
			authorize: (stream, token) => this.#authorize(stream, token),
			touchViewer: (stream, req, token) => this.#touchViewer(stream, req, token),
			blockingTimeoutMs: this.config.blockingTimeoutMs,
			diskPath: (stream, name) => this.store.pathOf(stream, name),
			bytesOut: (stream, n) => this.#opts.metrics?.bytesOut('hls', stream, n),
		});
	}

	#publish(stream: Stream, pub: Publication): void {
		if (this.#closed) return;
		const name = stream.name;
		let session = this.#sessions.get(name);
		if (session?.live) {
			session.attach(pub);
		} else {
			if (session) this.#dispose(name, session);
			session = this.#newSession(name);
			session.attach(pub);
			this.emit('start', name, session);
		}
		stream.annotate('hls', () => this.playlistPath(name));
	}

	#newSession(name: string): HlsSession {
		const c = this.config;
		const session = new HlsSession({
			stream: name,
			partTargetMs: c.partTargetMs,
			segmentTargetMs: c.segmentTargetMs,
			windowSegments: c.windowSegments,
			ffmpegPath: this.#opts.ffmpegPath,
			store: this.store,
			logger: this.#logger,
			onTranscoder: (t) => this.#opts.metrics?.trackProcess('hls-opus-aac', t.process),
		});
		session.on('part', (p) => this.emit('part', name, p));
		session.on('segment', (s) => this.emit('segment', name, s));
		this.#sessions.set(name, session);
		this.#logger.info({ stream: name, session: session.sid }, 'HLS playlist started');
		return session;
	}

	#unpublish(stream: Stream, pub: Publication, reason: string): void {
		const session = this.#sessions.get(stream.name);
		if (!session) return;
		session.publicationEnded(pub);
		// A takeover publishes right after this in the same turn: keep the playlist going then.
		setImmediate(() => {
			if (this.#closed || this.#sessions.get(stream.name) !== session || session.publication || !session.live) return;
			session.end();
			this.#logger.debug({ stream: stream.name, reason }, 'HLS playlist ended');
			this.emit('end', stream.name);
			this.#scheduleCleanup(stream.name, session);
		});
	}

	#scheduleCleanup(name: string, session: HlsSession): void {
		const timer = setTimeout(() => {
			this.#cleanupTimers.delete(name);
			if (this.#sessions.get(name) === session) this.#dispose(name, session);
		}, this.config.cleanupGraceMs);
		timer.unref();
		this.#cleanupTimers.set(name, timer);
	}

	/** Drops a session: memory, files, viewers. */
	#dispose(name: string, session: HlsSession): void {
		const timer = this.#cleanupTimers.get(name);
		if (timer) clearTimeout(timer);
		this.#cleanupTimers.delete(name);
		if (this.#sessions.get(name) === session) this.#sessions.delete(name);
		this.#viewers.releaseStream(name);
		// Both start synchronously: the files forgotten are this session's, not a successor's.
		const closing = session.close();
		const removing = this.store.removeStream(name);
		const p = Promise.all([closing, removing])
			.then(() => {
				this.emit('cleanup', name);
			})
			.catch((err: unknown) => this.#logger.warn({ err, stream: name }, 'HLS cleanup failed'));
		this.#disposing.add(p);
		void p.finally(() => this.#disposing.delete(p));
	}

	async #authorize(stream: string, token: string | null): Promise<void> {
		if (!this.#opts.viewerTokenRequired) return;
		if (token === null || token === '') throw new Unauthorized(`watching ${stream} needs a viewer token (?token=)`);
		const key = `${stream}\n${token}`;
		const now = Date.now();
		const until = this.#tokenCache.get(key);
		if (until !== undefined && until > now) return;
		const verify = this.#opts.authorizeViewer;
		if (!verify) throw new Unauthorized('viewer tokens are required but no verifier is configured');
		await verify(stream, token);
		if (this.#tokenCache.size >= TOKEN_CACHE_MAX) this.#tokenCache.clear();
		this.#tokenCache.set(key, now + TOKEN_CACHE_MS);
	}

	#touchViewer(stream: string, req: Request, token: string | null): void {
		const address = req.ip ?? req.socket.remoteAddress ?? 'unknown';
		const key = HlsViewerTracker.clientKey(address, req.get('user-agent') ?? '', token);
		this.#viewers.touch(stream, key, address);
	}

	assertOpen(): void {
		if (this.#closed) throw new ClosedError('HLS service');
	}

	/** Stops following the registry, answers blocked requests, deletes every stream's files. Idempotent. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		this.#registry.off('publish', this.#onPublish);
		this.#registry.off('unpublish', this.#onUnpublish);
		for (const [name, session] of [...this.#sessions]) {
			this.#dispose(name, session);
			this.#registry.get(name)?.unannotate('hls');
		}
		this.#viewers.close();
		await Promise.all([...this.#disposing]);
		await this.store.close();
		this.#untrackQueue();
		this.emit('close');
		this.removeAllListeners();
	}
}
