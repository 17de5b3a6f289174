import { Device } from 'mediasoup-client';
import type { types as msc } from 'mediasoup-client';
import { io } from 'socket.io-client';
import type { Socket } from 'socket.io-client';
import { Emitter } from '../../shared/emitter.js';
import { SignalingError, unwrapAck } from '../../shared/errors.js';
import type {
	ClientToServerEvents,
	CreateTransportResult,
	JoinResult,
	MediaKind,
	RequestName,
	RequestOf,
	ResultOf,
	RtpCapabilities,
	ServerToClientEvents,
} from '../../shared/protocol.js';

export interface WatchOptions {
	/** The subsecond server, e.g. `https://live.example.com`; the page's own origin if omitted. */
	server?: string;
	/** Stream name. */
	stream: string;
	/**
	 * Viewer JWT, when the server requires one. A function is called again on
	 * every (re)join, so an app can hand out a fresh token after a reconnect.
	 */
	token?: string | (() => string | Promise<string>);
	/** How long one request may wait for its answer (ms). */
	requestTimeoutMs?: number;
	/** How often `stats` is emitted while someone listens (ms); 0 turns stats off. */
	statsIntervalMs?: number;
	/** socket.io path, if a reverse proxy moved it. */
	path?: string;
	/**
	 * Jitter buffer target handed to the browser's receivers (RTCRtpReceiver
	 * jitterBufferTarget, ms). Lower trades smoothness on bad networks for
	 * delay; undefined leaves the browser's own choice.
	 */
	jitterBufferTargetMs?: number;
	/** Also play the stream's audio (default true). */
	audio?: boolean;
}

/** Receive statistics of one track, from the browser's inbound-rtp report. */
export interface TrackStats {
	packetsReceived: number;
	packetsLost: number;
	bytesReceived: number;
	jitterMs: number;
	/** Average time frames spent in the jitter buffer (ms): the receiver's share of the delay. */
	jitterBufferMs: number | null;
	framesDecoded?: number;
	framesDropped?: number;
	framesPerSecond?: number;
	frameWidth?: number;
	frameHeight?: number;
}

export interface ViewerStats {
	at: number;
	video: TrackStats | null;
	audio: TrackStats | null;
	/** Round trip time to the server's media port (ms), when known. */
	rttMs: number | null;
}

export interface ViewerEvents extends Record<string, unknown[]> {
	/** Media is (again) on its way: after joining a live stream, a restart or a takeover. */
	live: [];
	/** The publisher stopped; the viewer stays and resumes by itself when it returns. */
	offline: [reason: string];
	/** The connection to the server dropped; it reconnects and rejoins by itself. */
	reconnecting: [reason: string];
	/** The set of tracks in `viewer.media` changed (attach() follows this by itself). */
	tracks: [media: MediaStream];
	/** Something failed; when `fatal` the viewer has closed (e.g. unauthorized, unsupported codec). */
	error: [err: Error, fatal: boolean];
	stats: [stats: ViewerStats];
	close: [];
}

const DEFAULT_TIMEOUT_MS = 10_000;

function inboundStats(report: RTCStatsReport): TrackStats | null {
	for (const s of report.values() as IterableIterator<Record<string, unknown>>) {
		if (s.type !== 'inbound-rtp') continue;
		const num = (k: string): number => (typeof s[k] === 'number' ? s[k] : 0);
		const opt = (k: string): number | undefined => (typeof s[k] === 'number' ? s[k] : undefined);
		const emitted = num('jitterBufferEmittedCount');
		const out: TrackStats = {
			packetsReceived: num('packetsReceived'),
			packetsLost: num('packetsLost'),
			bytesReceived: num('bytesReceived'),
			jitterMs: num('jitter') * 1000,
			jitterBufferMs: emitted > 0 ? (num('jitterBufferDelay') / emitted) * 1000 : null,
		};
		for (const k of ['framesDecoded', 'framesDropped', 'framesPerSecond', 'frameWidth', 'frameHeight'] as const) {
			const v = opt(k);
			if (v !== undefined) out[k] = v;
		}
		return out;
	}
	return null;
}

function rttOf(report: RTCStatsReport): number | null {
	for (const s of report.values() as IterableIterator<Record<string, unknown>>) {
		if (s.type === 'candidate-pair' && s.nominated === true && typeof s.currentRoundTripTime === 'number') {
			return s.currentRoundTripTime * 1000;
		}
	}
	return null;
}

/**
 * A WebRTC viewer of one stream. Create it with watch(). It keeps itself
 * playing: it re-consumes when the publisher restarts or is taken over, and
 * reconnects and rejoins when the connection drops, without the app doing
 * anything. Show it with attach(videoElement); stop it with close().
 */
export class Viewer extends Emitter<ViewerEvents> {
	readonly stream: string;
	/** Video and audio tracks of the stream; tracks change when the stream restarts. */
	readonly media = new MediaStream();
	readonly #opts: WatchOptions;
	readonly #device: Device;
	readonly #socket: Socket<ServerToClientEvents, ClientToServerEvents>;
	#live = false;
	#closed = false;
	#transport: msc.Transport | null = null;
	readonly #consumers = new Map<string, msc.Consumer>();
	#work: Promise<void> = Promise.resolve();
	#consumePending = false;
	#retryTimer: ReturnType<typeof setTimeout> | null = null;
	#retries = 0;
	#statsTimer: ReturnType<typeof setInterval> | null = null;
	readonly #attached = new Set<HTMLMediaElement>();
	#iceServers: RTCIceServer[] = [];
	readonly #t0 = performance.now();
	#deviceLoading: Promise<void> | null = null;
	/**
	 * Milestones of the first session in ms after watch() was called: where
	 * time to first frame goes (socket, joined, transport, consumed,
	 * mediaConnected, resumed).
	 */
	readonly timeline: Record<string, number> = {};

	#mark(name: string): void {
		this.timeline[name] ??= Math.round(performance.now() - this.#t0);
	}

	/** @internal use watch() */
	constructor(opts: WatchOptions, device: Device) {
		super();
		this.#opts = opts;
		this.stream = opts.stream;
		this.#device = device;
		const url = opts.server ?? globalThis.location.origin;
		this.#socket = io(url, {
			autoConnect: false,
			// WebSocket straight away saves the long-polling handshake and upgrade
			// on every join; polling remains the fallback where WebSocket is blocked.
			transports: ['websocket', 'polling'],
			tryAllTransports: true,
			reconnectionDelay: 500,
			reconnectionDelayMax: 5000,
			timeout: opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
			...(opts.path ? { path: opts.path } : {}),
		});
	}

	get live(): boolean {
		return this.#live;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/**
	 * Events raised before watch() resolves wait here, and are delivered
	 * right after, so listeners added after `await watch()` miss nothing.
	 */
	#held: (() => void)[] | null = [];

	protected override emit<K extends keyof ViewerEvents>(event: K, ...args: ViewerEvents[K]): void {
		if (this.#held) this.#held.push(() => super.emit(event, ...args));
		else super.emit(event, ...args);
	}

	/** @internal resolves after the first join, or rejects with its error. */
	async start(): Promise<void> {
		const s = this.#socket;
		const firstJoin = new Promise<void>((resolve, reject) => {
			let first = true;
			s.on('connect', () => {
				this.#mark('socket');
				const wasFirst = first;
				first = false;
				this.#join().then(
					() => {
						if (wasFirst) resolve();
					},
					(err: unknown) => {
						if (wasFirst) reject(err instanceof Error ? err : new Error(String(err)));
						else this.#fail(err);
					},
				);
			});
			s.on('connect_error', (err) => {
				if (first) {
					first = false;
					reject(new SignalingError('connect', { code: 'unavailable', message: err.message }));
				}
			});
		});
		s.on('disconnect', (reason) => {
			this.#dropTransport();
			const wasLive = this.#live;
			this.#live = false;
			if (this.#closed) return;
			if (reason === 'io server disconnect') {
				this.#fail(new SignalingError('connection', { code: 'closed', message: 'the server ended this session' }), true);
				return;
			}
			if (wasLive) this.emit('offline', 'connection lost');
			this.emit('reconnecting', reason);
		});
		s.on('streamLive', () => {
			this.#setLive(true);
			this.#scheduleConsume();
		});
		s.on('streamOffline', ({ reason }) => {
			this.#setLive(false, reason);
		});
		s.on('consumerClosed', ({ consumerId }) => {
			const c = this.#consumers.get(consumerId);
			if (!c) return;
			this.#consumers.delete(consumerId);
			c.close();
			this.#removeTrack(c.track);
		});
		s.on('transportClosed', ({ transportId }) => {
			if (transportId !== this.#transport?.id) return;
			this.#dropTransport();
			this.#scheduleConsume();
		});
		s.on('kicked', ({ reason }) => {
			this.#fail(new SignalingError('connection', { code: 'closed', message: `disconnected by the server: ${reason}` }), true);
		});
		s.connect();
		try {
			await firstJoin;
		} catch (err) {
			this.#held = null;
			this.close();
			throw err;
		}
		setTimeout(() => {
			const held = this.#held ?? [];
			this.#held = null;
			for (const deliver of held) deliver();
		}, 0);
		const every = this.#opts.statsIntervalMs ?? 1000;
		if (every > 0) this.#statsTimer = setInterval(() => void this.#emitStats(), every);
	}

	#setLive(live: boolean, reason = ''): void {
		if (this.#live === live) return;
		this.#live = live;
		if (live) this.emit('live');
		else this.emit('offline', reason);
	}

	#fail(err: unknown, fatal = false): void {
		if (this.#closed) return;
		const e = err instanceof Error ? err : new Error(String(err));
		const isFatal = fatal || (e instanceof SignalingError && e.fatal);
		this.emit('error', e, isFatal);
		if (isFatal) this.close();
	}

	#request<K extends RequestName>(name: K, payload: RequestOf<K>): Promise<ResultOf<K>> {
		const timed = this.#socket.timeout(this.#opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS) as unknown as {
			emitWithAck(ev: string, p: unknown): Promise<unknown>;
		};
		return unwrapAck<ResultOf<K>>(name, timed.emitWithAck(name, payload));
	}

	async #join(): Promise<void> {
		const t = this.#opts.token;
		const token = typeof t === 'function' ? await t() : t;
		const res: JoinResult = await this.#request('join', { stream: this.stream, ...(token ? { token } : {}) });
		this.#mark('joined');
		if (!this.#device.loaded && !this.#deviceLoading) {
			// Loading probes the browser's codecs (tens of ms): let createTransport's
			// round trip run meanwhile instead of after it.
			this.#deviceLoading = this.#device.load({ routerRtpCapabilities: res.routerRtpCapabilities as msc.RtpCapabilities });
			this.#deviceLoading.catch(() => undefined);
		}
		this.#iceServers = res.iceServers;
		if (res.live) {
			this.#setLive(true);
			this.#scheduleConsume();
		}
	}

	/** One consume round after the current work; rounds asked for meanwhile merge into it. */
	#scheduleConsume(): void {
		if (this.#consumePending || this.#closed) return;
		this.#consumePending = true;
		this.#work = this.#work.then(async () => {
			this.#consumePending = false;
			if (!this.#live || this.#closed || !this.#socket.connected) return;
			try {
				await this.#consume();
				this.#retries = 0;
			} catch (err) {
				this.#onConsumeError(err);
			}
		});
	}

	#onConsumeError(err: unknown): void {
		const retryable =
			!(err instanceof SignalingError) || err.code === 'invalid_state' || err.code === 'timeout' || err.code === 'unavailable' || err.code === 'internal';
		if (!retryable || this.#retries >= 8) {
			this.#fail(err, err instanceof SignalingError && err.fatal);
			return;
		}
		// The stream may still be setting up (or just went away): try again a little later.
		const delay = Math.min(4000, 250 * 2 ** this.#retries++);
		if (this.#retryTimer) clearTimeout(this.#retryTimer);
		this.#retryTimer = setTimeout(() => {
			this.#retryTimer = null;
			this.#scheduleConsume();
		}, delay);
	}

	async #ensureTransport(): Promise<msc.Transport> {
		if (this.#transport && !this.#transport.closed) return this.#transport;
		const info: CreateTransportResult = await this.#request('createTransport', {});
		this.#mark('transport');
		if (this.#deviceLoading) await this.#deviceLoading;
		const transport = this.#device.createRecvTransport({
			id: info.id,
			iceParameters: info.iceParameters,
			iceCandidates: info.iceCandidates,
			dtlsParameters: info.dtlsParameters as msc.DtlsParameters,
			iceServers: this.#iceServers,
		});
		transport.on('connect', ({ dtlsParameters }, callback, errback) => {
			this.#request('connectTransport', { transportId: transport.id, dtlsParameters }).then(
				() => callback(),
				(err: unknown) => errback(err as Error),
			);
		});
		transport.on('connectionstatechange', (state) => {
			if (state === 'connected') this.#mark('mediaConnected');
			if (state === 'failed' && this.#transport === transport) {
				// ICE found no way through: start over with a fresh transport.
				this.#dropTransport();
				this.#fail(new Error('the media connection failed; retrying'));
				this.#onConsumeError(new SignalingError('consume', { code: 'unavailable', message: 'media connection failed' }));
			}
		});
		this.#transport = transport;
		return transport;
	}

	async #consume(): Promise<void> {
		const transport = await this.#ensureTransport();
		const { consumers } = await this.#request('consume', {
			transportId: transport.id,
			rtpCapabilities: this.#device.recvRtpCapabilities as RtpCapabilities,
		});
		const wanted = this.#opts.audio === false ? consumers.filter((d) => d.kind !== 'audio') : consumers;
		// Video first: its negotiation starts the media connection, and the
		// first picture should not wait for the audio's round of SDP.
		wanted.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'video' ? -1 : 1));
		const target = this.#opts.jitterBufferTargetMs;
		// Each consumer is resumed as soon as it exists, not when all do.
		await Promise.all(
			wanted.map(async (d) => {
				const c = await transport.consume({
					id: d.id,
					producerId: d.producerId,
					kind: d.kind,
					rtpParameters: d.rtpParameters as msc.RtpParameters,
					// One stream id for audio and video, so the browser keeps them in sync.
					streamId: this.stream,
					...(target !== undefined
						? {
								onRtpReceiver: (r: RTCRtpReceiver): void => {
									// Chrome 114+ and Safari have jitterBufferTarget; older Chrome, playoutDelayHint (s).
									const rr = r as unknown as { jitterBufferTarget?: number | null; playoutDelayHint?: number };
									if ('jitterBufferTarget' in r) rr.jitterBufferTarget = target;
									else rr.playoutDelayHint = target / 1000;
								},
							}
						: {}),
				});
				if (this.#transport !== transport) {
					c.close();
					return;
				}
				this.#consumers.set(c.id, c);
				this.#replaceTrack(c.kind, c.track);
				this.#mark('consumed');
				await this.#request('resume', { consumerId: c.id });
				this.#mark('resumed');
			}),
		);
	}

	#replaceTrack(kind: MediaKind, track: MediaStreamTrack): void {
		for (const old of kind === 'video' ? this.media.getVideoTracks() : this.media.getAudioTracks()) this.media.removeTrack(old);
		this.media.addTrack(track);
		this.#tracksChanged();
	}

	#removeTrack(track: MediaStreamTrack): void {
		if (!this.media.getTracks().includes(track)) return;
		this.media.removeTrack(track);
		this.#tracksChanged();
	}

	#tracksChanged(): void {
		for (const el of this.#attached) {
			if (el.srcObject !== this.media) continue;
			// Re-assigning makes every browser pick up the new tracks.
			el.srcObject = this.media;
			void el.play().catch(() => undefined);
		}
		this.emit('tracks', this.media);
	}

	#dropTransport(): void {
		for (const c of this.#consumers.values()) c.close();
		this.#consumers.clear();
		for (const t of this.media.getTracks()) this.media.removeTrack(t);
		if (this.#transport) {
			this.#transport.close();
			this.#transport = null;
			this.#tracksChanged();
		}
	}

	async #emitStats(): Promise<void> {
		if (this.#closed || this.listenerCount('stats') === 0) return;
		const stats: ViewerStats = { at: Date.now(), video: null, audio: null, rttMs: null };
		for (const c of this.#consumers.values()) {
			try {
				const report = await c.getStats();
				stats[c.kind] = inboundStats(report);
				stats.rttMs ??= rttOf(report);
			} catch {
				// a consumer closing under us
			}
		}
		this.emit('stats', stats);
	}

	/**
	 * Shows the stream in a <video> (or <audio>) element and keeps it showing
	 * across restarts. Resolves when playback starts; rejects if the browser
	 * refuses to autoplay with sound (mute the element, or call after a user gesture).
	 */
	async attach(el: HTMLMediaElement): Promise<void> {
		this.#attached.add(el);
		if (el instanceof HTMLVideoElement) el.playsInline = true;
		el.autoplay = true;
		el.srcObject = this.media;
		try {
			await el.play();
		} catch (err) {
			// A track change restarted playback meanwhile: that play() wins.
			if (!(err instanceof DOMException && err.name === 'AbortError')) throw err;
		}
	}

	detach(el: HTMLMediaElement): void {
		this.#attached.delete(el);
		if (el.srcObject === this.media) el.srcObject = null;
	}

	/** Leaves the stream and disconnects. Idempotent. */
	close(): void {
		if (this.#closed) return;
		if (this.#socket.connected) void this.#request('leave', {}).catch(() => undefined);
		this.#closed = true;
		if (this.#retryTimer) clearTimeout(this.#retryTimer);
		if (this.#statsTimer) clearInterval(this.#statsTimer);
		this.#dropTransport();
		this.#socket.disconnect();
		for (const el of this.#attached) this.detach(el);
		this.emit('close');
		this.removeAllListeners();
	}
}

/**
 * Starts watching a stream over WebRTC. Resolves once the server accepted the
 * viewer (the stream may not be live yet: listen for `live`); rejects with a
 * SignalingError (`code` says why: unauthorized, not_found, limit_exceeded,
 * unavailable...) if it cannot.
 *
 *     const viewer = await watch({ server: 'https://live.example.com', stream: 'studio' });
 *     await viewer.attach(document.querySelector('video'));
 */
export async function watch(opts: WatchOptions): Promise<Viewer> {
	if (!webrtcSupported()) {
		throw new SignalingError('watch', { code: 'unsupported', message: 'this browser has no WebRTC' });
	}
	let device: Device;
	try {
		device = await Device.factory();
	} catch (err) {
		// mediasoup-client knows no handler for this browser: a player falls back to HLS.
		throw new SignalingError('watch', { code: 'unsupported', message: `this browser cannot play WebRTC (${(err as Error).message})` });
	}
	const viewer = new Viewer(opts, device);
	await viewer.start();
	return viewer;
}

/** Whether this browser has WebRTC at all (a player shows HLS otherwise). */
export function webrtcSupported(): boolean {
	return typeof RTCPeerConnection === 'function' && typeof MediaStream === 'function';
}
