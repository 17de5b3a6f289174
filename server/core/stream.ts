import { randomUUID } from 'node:crypto';
import { TypedEmitter } from '../common/emitter.js';
import { BadRequest, ClosedError, InvalidState, LimitExceeded } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { sameH264Config } from './codecs/h264.js';
import type { AudioConfig, AudioFrame, PublisherProtocol, VideoConfig, VideoFrame } from './media.js';

const STREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Stream names are used in URLs and folder names: a strict, safe alphabet. */
export function isValidStreamName(name: string): boolean {
	return STREAM_NAME.test(name) && !name.includes('..');
}

export function assertStreamName(name: unknown): string {
	if (typeof name !== 'string' || !isValidStreamName(name)) {
		throw new BadRequest(
			`invalid stream name ${JSON.stringify(name)}: use 1 to 64 of A-Z a-z 0-9 _ . - starting with a letter or digit`,
		);
	}
	return name;
}

export interface VideoRenditionEvents extends Record<string, unknown[]> {
	videoConfig: [config: VideoConfig];
	video: [frame: VideoFrame];
	end: [];
}

/**
 * Video derived from a publication's video, e.g. the bridge's transcoded
 * output for streams WebRTC players cannot take as is. Other outputs (HLS)
 * follow it so every path shows the same pictures.
 */
export class VideoRendition extends TypedEmitter<VideoRenditionEvents> {
	#config: VideoConfig | null = null;
	#ended = false;

	constructor(logger: Logger) {
		super();
		this.setListenerErrorLogger(logger);
	}

	get config(): VideoConfig | null {
		return this.#config;
	}

	get ended(): boolean {
		return this.#ended;
	}

	setConfig(config: VideoConfig): void {
		if (this.#ended) return;
		if (this.#config && sameH264Config(this.#config, config)) return;
		this.#config = config;
		this.emit('videoConfig', config);
	}

	push(frame: VideoFrame): void {
		if (this.#ended) return;
		if (!this.#config) throw new InvalidState('rendition frame before its configuration');
		this.emit('video', frame);
	}

	end(): void {
		if (this.#ended) return;
		this.#ended = true;
		this.emit('end');
		this.removeAllListeners();
	}
}

/** How a publication's video reaches WebRTC viewers, and why (shown in the API). */
export interface VideoPath {
	mode: 'passthrough' | 'transcode';
	reason: string;
}

export interface PublicationEvents extends Record<string, unknown[]> {
	videoConfig: [config: VideoConfig];
	audioConfig: [config: AudioConfig];
	video: [frame: VideoFrame];
	audio: [frame: AudioFrame];
	/** Free-form metadata from the publisher (RTMP onMetaData). */
	metadata: [data: Record<string, unknown>];
	/** The bridge decided the video path; `rendition` is set when transcoding. */
	videoPath: [path: VideoPath, rendition: VideoRendition | null];
	end: [reason: string];
}

export interface PublisherInfo {
	protocol: PublisherProtocol;
	remoteAddress: string;
	/** Ends the publisher's connection; called on takeover, kick and shutdown. */
	kick: (reason: string) => void;
}

/** Counters a publication keeps about its media. */
export interface PublicationStats {
	videoFrames: number;
	audioFrames: number;
	keyframes: number;
	videoBytes: number;
	audioBytes: number;
	/** Frames seen with pts != dts: the stream uses B-frames. */
	reorderedFrames: number;
}

/**
 * One publisher session's media on a stream: codec configs and timestamped
 * frames, fanned out synchronously to listeners (bridge, HLS, stats). Listeners
 * must not block; those that do I/O queue with a bound.
 */
export class Publication extends TypedEmitter<PublicationEvents> {
	readonly id = randomUUID();
	readonly streamName: string;
	readonly protocol: PublisherProtocol;
	readonly remoteAddress: string;
	readonly startedAt = Date.now();
	readonly stats: PublicationStats = {
		videoFrames: 0,
		audioFrames: 0,
		keyframes: 0,
		videoBytes: 0,
		audioBytes: 0,
		reorderedFrames: 0,
	};
	readonly #kick: (reason: string) => void;
	#video: VideoConfig | null = null;
	#audio: AudioConfig | null = null;
	#metadata: Record<string, unknown> = {};
	#videoPath: VideoPath | null = null;
	#rendition: VideoRendition | null = null;
	#ended = false;
	#lastDts: number | null = null;
	// Recent frame intervals, to measure the frame rate when the SPS has none.
	readonly #dtsDeltas: number[] = [];

	constructor(streamName: string, info: PublisherInfo, logger: Logger) {
		super();
		this.streamName = streamName;
		this.protocol = info.protocol;
		this.remoteAddress = info.remoteAddress;
		this.#kick = info.kick;
		this.setListenerErrorLogger(logger);
	}

	get ended(): boolean {
		return this.#ended;
	}

	get video(): VideoConfig | null {
		return this.#video;
	}

	get audio(): AudioConfig | null {
		return this.#audio;
	}

	get metadata(): Readonly<Record<string, unknown>> {
		return this.#metadata;
	}

	get videoPath(): VideoPath | null {
		return this.#videoPath;
	}

	/** The transcoded video, when the video path is `transcode`. */
	get rendition(): VideoRendition | null {
		return this.#rendition;
	}

	/** Records the bridge's decision; a previous rendition is ended. */
	setVideoPath(path: VideoPath, rendition: VideoRendition | null = null): void {
		this.#assertLive();
		if (this.#rendition && this.#rendition !== rendition) this.#rendition.end();
		this.#videoPath = path;
		this.#rendition = rendition;
		this.emit('videoPath', path, rendition);
	}

	get hasBFrames(): boolean {
		return this.stats.reorderedFrames > 0;
	}

	/** Best frame rate known: SPS timing, then publisher metadata, then measured. */
	get fps(): number | null {
		if (this.#video?.fps) return this.#video.fps;
		const meta = this.#metadata.framerate ?? this.#metadata.fps;
		if (typeof meta === 'number' && meta > 0 && meta <= 1000) return meta;
		if (this.#dtsDeltas.length < 10) return null;
		const sorted = [...this.#dtsDeltas].sort((a, b) => a - b);
		const median = sorted[sorted.length >> 1] ?? 0;
		return median > 0 ? Math.round((1000 / median) * 100) / 100 : null;
	}

	#assertLive(): void {
		if (this.#ended) throw new ClosedError(`publication ${this.id} of ${this.streamName}`);
	}

	setVideoConfig(config: VideoConfig): void {
		this.#assertLive();
		if (this.#video && sameH264Config(this.#video, config)) return;
		this.#video = config;
		this.emit('videoConfig', config);
	}

	setAudioConfig(config: AudioConfig): void {
		this.#assertLive();
		const cur = this.#audio;
		if (
			cur &&
			cur.codec === config.codec &&
			cur.sampleRate === config.sampleRate &&
			cur.channels === config.channels &&
			(cur.codec !== 'aac' || config.codec !== 'aac' || cur.asc.equals(config.asc))
		) {
			return;
		}
		this.#audio = config;
		this.emit('audioConfig', config);
	}

	setMetadata(data: Record<string, unknown>): void {
		this.#assertLive();
		this.#metadata = data;
		this.emit('metadata', data);
	}

	pushVideo(frame: VideoFrame): void {
		this.#assertLive();
		if (!this.#video) throw new InvalidState('video frame before the video configuration');
		const s = this.stats;
		s.videoFrames++;
		if (frame.keyframe) s.keyframes++;
		if (frame.pts !== frame.dts) s.reorderedFrames++;
		for (const n of frame.nalus) s.videoBytes += n.length;
		if (this.#lastDts !== null) {
			const d = frame.dts - this.#lastDts;
			if (d > 0 && d < 1000) {
				this.#dtsDeltas.push(d);
				if (this.#dtsDeltas.length > 60) this.#dtsDeltas.shift();
			}
		}
		this.#lastDts = frame.dts;
		this.emit('video', frame);
	}

	pushAudio(frame: AudioFrame): void {
		this.#assertLive();
		if (!this.#audio) throw new InvalidState('audio frame before the audio configuration');
		this.stats.audioFrames++;
		this.stats.audioBytes += frame.data.length;
		this.emit('audio', frame);
	}

	/** Ends the publication without touching the publisher's connection. */
	end(reason: string): void {
		if (this.#ended) return;
		this.#ended = true;
		this.#rendition?.end();
		this.emit('end', reason);
		this.removeAllListeners();
	}

	/** Ends the publication and closes the publisher's connection. */
	kick(reason: string): void {
		if (this.#ended) return;
		try {
			this.#kick(reason);
		} finally {
			this.end(reason);
		}
	}
}

export type ViewerPath = 'webrtc' | 'hls';

/** One viewer as the core knows it: enough for admin, webhooks and metrics. */
export interface ViewerInfo {
	/** Unique among live viewers (e.g. the socket id, or an HLS client key). */
	id: string;
	path: ViewerPath;
	remoteAddress: string;
	/** Ends the viewer's session (admin "disconnect a viewer"); absent for HLS. */
	disconnect?: (reason: string) => void;
	/** Set by the stream. */
	joinedAt?: number;
}

export interface StreamEvents extends Record<string, unknown[]> {
	publish: [publication: Publication];
	unpublish: [publication: Publication, reason: string];
	viewers: [counts: Record<ViewerPath, number>];
	viewerJoin: [viewer: Readonly<ViewerInfo>];
	viewerLeave: [viewer: Readonly<ViewerInfo>];
}

/** The contract's stream description (GET /api/streams). */
export interface StreamInfo {
	name: string;
	live: boolean;
	startedAt: string | null;
	viewers: number;
	video: { codec: 'h264'; profile: string; width: number; height: number; fps: number | null } | null;
	audio: { codec: 'aac' | 'opus'; sampleRate: number; channels: number } | null;
	hls: string | null;
	[extra: string]: unknown;
}

/**
 * A named stream: lives across publisher sessions, so viewers stay attached
 * while a publisher reconnects or another takes over.
 */
export class Stream extends TypedEmitter<StreamEvents> {
	readonly name: string;
	readonly createdAt = Date.now();
	#publication: Publication | null = null;
	readonly #viewers: Record<ViewerPath, number> = { webrtc: 0, hls: 0 };
	readonly #viewerList = new Map<string, ViewerInfo>();
	readonly #annotations = new Map<string, () => unknown>();
	lastActivity = Date.now();

	constructor(name: string, logger: Logger) {
		super();
		this.name = name;
		this.setListenerErrorLogger(logger);
	}

	get publication(): Publication | null {
		return this.#publication;
	}

	get live(): boolean {
		return this.#publication !== null && !this.#publication.ended;
	}

	get viewerCounts(): Readonly<Record<ViewerPath, number>> {
		return this.#viewers;
	}

	get viewers(): number {
		return this.#viewers.webrtc + this.#viewers.hls;
	}

	/**
	 * Counts a viewer; call the returned function (once) when it leaves. With
	 * `info`, the viewer is also listed (admin API) and announced (webhooks).
	 */
	addViewer(path: ViewerPath, info?: Omit<ViewerInfo, 'path' | 'joinedAt'>): () => void {
		this.#viewers[path]++;
		this.lastActivity = Date.now();
		const viewer: ViewerInfo | null = info ? { ...info, path, joinedAt: Date.now() } : null;
		if (viewer) this.#viewerList.set(viewer.id, viewer);
		this.emit('viewers', { ...this.#viewers });
		if (viewer) this.emit('viewerJoin', viewer);
		let released = false;
		return () => {
			if (released) return;
			released = true;
			this.#viewers[path]--;
			this.lastActivity = Date.now();
			if (viewer) this.#viewerList.delete(viewer.id);
			this.emit('viewers', { ...this.#viewers });
			if (viewer) this.emit('viewerLeave', viewer);
		};
	}

	/** Viewers registered with details, for the admin API. */
	viewerList(): Readonly<ViewerInfo>[] {
		return [...this.#viewerList.values()];
	}

	/**
	 * Adds a field to this stream's info, computed when the info is read
	 * (e.g. `webrtc` from the bridge, `hls` from the HLS service).
	 */
	annotate(key: string, value: () => unknown): void {
		this.#annotations.set(key, value);
	}

	unannotate(key: string): void {
		this.#annotations.delete(key);
	}

	/** @internal used by StreamRegistry. */
	attach(publication: Publication): void {
		this.#publication = publication;
		this.lastActivity = Date.now();
		publication.on('end', (reason) => {
			if (this.#publication === publication) this.#publication = null;
			this.lastActivity = Date.now();
			this.emit('unpublish', publication, reason);
		});
		this.emit('publish', publication);
	}

	info(): StreamInfo {
		const pub = this.#publication;
		const v = pub?.video ?? null;
		const a = pub?.audio ?? null;
		const info: StreamInfo = {
			name: this.name,
			live: this.live,
			startedAt: pub ? new Date(pub.startedAt).toISOString() : null,
			viewers: this.viewers,
			video: v ? { codec: 'h264', profile: v.profile, width: v.width, height: v.height, fps: pub?.fps ?? null } : null,
			audio: a ? { codec: a.codec, sampleRate: a.sampleRate, channels: a.channels } : null,
			hls: null,
		};
		for (const [key, fn] of this.#annotations) {
			try {
				info[key] = fn();
			} catch {
				// an annotation must never break the listing
			}
		}
		return info;
	}
}

export interface PublishRequest {
	stream: string;
	/** The key the publisher presented (`?key=` or a bearer token); null if none. */
	key: string | null;
	protocol: PublisherProtocol;
	remoteAddress: string;
}

/** Decides whether a publish may go ahead; throws Unauthorized or Forbidden if not. */
export type PublishGuard = (req: PublishRequest) => Promise<void> | void;

export interface StreamRegistryEvents extends Record<string, unknown[]> {
	/** A stream object came into being (first publish or first viewer). */
	stream: [stream: Stream];
	publish: [stream: Stream, publication: Publication];
	unpublish: [stream: Stream, publication: Publication, reason: string];
	viewerJoin: [stream: Stream, viewer: Readonly<ViewerInfo>];
	viewerLeave: [stream: Stream, viewer: Readonly<ViewerInfo>];
	/** A stream with no publisher and no viewers was forgotten. */
	streamRemoved: [stream: Stream];
}

export interface StreamRegistryOptions {
	logger: Logger;
	maxStreams: number;
	/** How long an idle, offline stream is kept before it is forgotten. */
	idleStreamTtlMs?: number;
}

/**
 * The protocol-neutral stream core: names to streams, publish guards, and
 * takeover. Ingest protocols publish into it; the bridge, HLS and signaling
 * listen to it. Nothing here knows RTMP, RTP or WebRTC.
 */
export class StreamRegistry extends TypedEmitter<StreamRegistryEvents> {
	readonly #streams = new Map<string, Stream>();
	readonly #guards: PublishGuard[] = [];
	readonly #logger: Logger;
	readonly #maxStreams: number;
	readonly #idleTtlMs: number;
	readonly #sweepTimer: NodeJS.Timeout;
	#closed = false;

	constructor(opts: StreamRegistryOptions) {
		super();
		this.#logger = opts.logger.child({ component: 'streams' });
		this.#maxStreams = opts.maxStreams;
		this.#idleTtlMs = opts.idleStreamTtlMs ?? 60_000;
		this.setListenerErrorLogger(this.#logger);
		this.#sweepTimer = setInterval(() => this.#sweep(), Math.min(this.#idleTtlMs, 10_000));
		this.#sweepTimer.unref();
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Adds a guard every publish must pass (keys, webhooks), in order of adding. */
	addPublishGuard(guard: PublishGuard): void {
		this.#guards.push(guard);
	}

	async authorizePublish(req: PublishRequest): Promise<void> {
		if (this.#closed) throw new ClosedError('stream registry');
		assertStreamName(req.stream);
		for (const guard of this.#guards) await guard(req);
	}

	get(name: string): Stream | undefined {
		return this.#streams.get(name);
	}

	/** The stream of that name, created offline if needed (viewers may wait for it). */
	getOrCreate(name: string): Stream {
		if (this.#closed) throw new ClosedError('stream registry');
		const existing = this.#streams.get(name);
		if (existing) return existing;
		assertStreamName(name);
		if (this.#streams.size >= this.#maxStreams * 4) {
			// Offline streams cost little, but not nothing: bound them too.
			this.#sweep(true);
			if (this.#streams.size >= this.#maxStreams * 4) throw new LimitExceeded('too many streams');
		}
		const stream = new Stream(name, this.#logger.child({ stream: name }));
		this.#streams.set(name, stream);
		stream.on('unpublish', (pub, reason) => this.emit('unpublish', stream, pub, reason));
		stream.on('viewerJoin', (v) => this.emit('viewerJoin', stream, v));
		stream.on('viewerLeave', (v) => this.emit('viewerLeave', stream, v));
		this.emit('stream', stream);
		return stream;
	}

	/** Finds a listed viewer by id across streams. */
	findViewer(id: string): { stream: Stream; viewer: Readonly<ViewerInfo> } | undefined {
		for (const stream of this.#streams.values()) {
			const viewer = stream.viewerList().find((v) => v.id === id);
			if (viewer) return { stream, viewer };
		}
		return undefined;
	}

	list(): Stream[] {
		return [...this.#streams.values()];
	}

	liveStreams(): Stream[] {
		return this.list().filter((s) => s.live);
	}

	/**
	 * Starts a publication. A live publisher on the same name is kicked: the
	 * newcomer takes over (an encoder reconnecting after a network drop must
	 * not be refused as "already publishing"). Call authorizePublish first.
	 */
	publish(name: string, info: PublisherInfo): Publication {
		if (this.#closed) throw new ClosedError('stream registry');
		const stream = this.getOrCreate(name);
		if (!stream.live && this.liveStreams().length >= this.#maxStreams) {
			throw new LimitExceeded(`the server already carries ${this.#maxStreams} live streams`);
		}
		const logger = this.#logger.child({ stream: name });
		const old = stream.publication;
		if (old && !old.ended) {
			logger.info({ old: old.remoteAddress, new: info.remoteAddress }, 'publisher takeover');
			old.kick('taken over by a new publisher');
		}
		const pub = new Publication(name, info, logger);
		stream.attach(pub);
		logger.info({ protocol: info.protocol, remoteAddress: info.remoteAddress, publication: pub.id }, 'stream live');
		this.emit('publish', stream, pub);
		return pub;
	}

	#sweep(force = false): void {
		const now = Date.now();
		for (const [name, s] of this.#streams) {
			if (s.live || s.viewers > 0) continue;
			if (!force && now - s.lastActivity < this.#idleTtlMs) continue;
			this.#streams.delete(name);
			this.emit('streamRemoved', s);
			s.removeAllListeners();
		}
	}

	/** Kicks every publisher and forgets every stream. Idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		clearInterval(this.#sweepTimer);
		for (const s of this.#streams.values()) s.publication?.kick('server shutting down');
		for (const s of this.#streams.values()) {
			this.emit('streamRemoved', s);
			s.removeAllListeners();
		}
		this.#streams.clear();
		this.removeAllListeners();
	}
}
