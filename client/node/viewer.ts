import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import type { Socket } from 'socket.io-client';
import { RTCDtlsTransport, RTCPeerConnection, RTCRtpCodecParameters } from 'werift';
import type { MediaStreamTrack, RTCRtpTransceiver, RtpPacket } from 'werift';
import { Emitter } from '../shared/emitter.js';
import { SignalingError, unwrapAck } from '../shared/errors.js';
import type {
	ClientToServerEvents,
	ConsumerDescription,
	CreateTransportResult,
	IceServer,
	JoinResult,
	MediaKind,
	RequestName,
	RequestOf,
	ResultOf,
	RtpCapabilities,
	ServerToClientEvents,
} from '../shared/protocol.js';
import { MediaDecoder } from './decoder.js';
import type { DecodeStats } from './decoder.js';
import { startsH264Keyframe } from './h264.js';
import { buildRemoteOffer, dtlsParametersFromAnswer } from './sdp.js';
import type { OfferSection } from './sdp.js';

/** H.264 profiles the server's routers offer: werift only forwards RTP, so it takes them all. */
const H264_PROFILES = ['42e01f', '42001f', '4d001f', '640032'];
function h264Feedback(nack: boolean): { type: string; parameter?: string }[] {
	return [...(nack ? [{ type: 'nack' }] : []), { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }];
}

/** What the Node viewer tells the server it can receive (no RTX, no header extensions). */
export function nodeRtpCapabilities(opts: { nack?: boolean } = {}): RtpCapabilities {
	return {
		codecs: [
			{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2, preferredPayloadType: 100, rtcpFeedback: [] },
			...H264_PROFILES.map((plid, i) => ({
				kind: 'video' as const,
				mimeType: 'video/H264',
				clockRate: 90000,
				preferredPayloadType: 102 + i,
				parameters: { 'packetization-mode': 1, 'profile-level-id': plid, 'level-asymmetry-allowed': 1 },
				rtcpFeedback: h264Feedback(opts.nack ?? true),
			})),
		],
		headerExtensions: [],
	};
}

export const NODE_RTP_CAPABILITIES: RtpCapabilities = nodeRtpCapabilities();

function weriftCodecs(nack: boolean): { audio: RTCRtpCodecParameters[]; video: RTCRtpCodecParameters[] } {
	return {
		audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, rtcpFeedback: [] })],
		video: H264_PROFILES.map(
			(plid) =>
				new RTCRtpCodecParameters({
					mimeType: 'video/H264',
					clockRate: 90000,
					rtcpFeedback: h264Feedback(nack),
					parameters: `packetization-mode=1;profile-level-id=${plid};level-asymmetry-allowed=1`,
				}),
		),
	};
}

export interface NodeViewerOptions {
	/** The subsecond server, e.g. `http://127.0.0.1:8080`. */
	server: string;
	stream: string;
	token?: string;
	/** Decode what arrives with ffmpeg (pictures, sound, time to first frame). Off for load tests. */
	decode?: boolean;
	ffmpegPath?: string;
	/** How long a request may wait for its answer. */
	requestTimeoutMs?: number;
	/** Local address ICE uses (e.g. 127.0.0.1 against a local server); all interfaces if unset. */
	iceAddress?: string;
	/** socket.io transports; websocket only by default (no long-polling upgrade dance). */
	transports?: ('websocket' | 'polling')[];
	/**
	 * Ask for retransmission of lost video packets (default true). Load tests
	 * turn it off: a starved load generator that NACKs makes the server resend
	 * and starves itself further.
	 */
	nack?: boolean;
}

/** Counters of one kind of media, over the viewer's life. */
export interface TrackCounters {
	packets: number;
	bytes: number;
	/** Video: access units completed (RTP marker bit). Audio: packets. */
	frames: number;
	keyframes: number;
	ssrc: number | null;
	firstPacketAt: number | null;
	lastPacketAt: number | null;
}

export interface NodeViewerEvents extends Record<string, unknown[]> {
	live: [];
	offline: [reason: string];
	/** New consumers are flowing (after the first consume and after every re-consume). */
	consumed: [consumers: ConsumerDescription[]];
	/** A complete keyframe arrived. */
	keyframe: [];
	/**
	 * Every media RTP packet as it arrives (emitted only while someone listens):
	 * for tools that decode on their own, such as the latency probe.
	 */
	rtp: [packet: { kind: MediaKind; payload: Buffer; sequenceNumber: number; timestamp: number; marker: boolean; receivedAt: number }];
	reconnecting: [reason: string];
	error: [err: Error];
	close: [];
}

function counters(): TrackCounters {
	return { packets: 0, bytes: 0, frames: 0, keyframes: 0, ssrc: null, firstPacketAt: null, lastPacketAt: null };
}

/**
 * A WebRTC viewer for Node that speaks the signaling contract through werift:
 * it receives the RTP of a stream, counts it cheaply (a hundred of these fit
 * on one machine), and optionally decodes it with ffmpeg. Like the browser
 * library, it re-consumes on its own when the stream comes back and rejoins
 * after a reconnect.
 */
export class NodeViewer extends Emitter<NodeViewerEvents> {
	readonly stream: string;
	readonly video: TrackCounters = counters();
	readonly audio: TrackCounters = counters();
	/** performance.now() when the first join was sent. */
	joinStartedAt = 0;
	firstKeyframeAt: number | null = null;
	/** Successful consume rounds (1 after the first, +1 per re-consume). */
	consumeRounds = 0;
	joinResult: JoinResult | null = null;
	/** Milestones of the first session, in ms after joinStartedAt: where time to first frame goes. */
	readonly timeline: Partial<Record<'joined' | 'transport' | 'consumed' | 'negotiated' | 'connected' | 'resumed' | 'firstPacket' | 'keyframe', number>> = {};

	readonly #opts: NodeViewerOptions;
	readonly #socket: Socket<ServerToClientEvents, ClientToServerEvents>;
	#live = false;
	#closed = false;
	#pc: RTCPeerConnection | null = null;
	#transport: CreateTransportResult | null = null;
	#connectSent = false;
	#sections: OfferSection[] = [];
	#sdpVersion = 1;
	readonly #consumers = new Map<string, ConsumerDescription>();
	#work: Promise<void> = Promise.resolve();
	#consumePending = false;
	readonly #decoder: MediaDecoder | null;
	#keyframeTs: number | null = null;
	readonly #hooked = new WeakSet<object>();

	private constructor(opts: NodeViewerOptions, socket: Socket<ServerToClientEvents, ClientToServerEvents>) {
		super();
		this.#opts = opts;
		this.stream = opts.stream;
		this.#socket = socket;
		this.#decoder = opts.decode ? new MediaDecoder(opts.ffmpegPath ? { ffmpegPath: opts.ffmpegPath } : {}) : null;
	}

	/** Connects and joins; media follows in the background once the stream is live. */
	static async create(opts: NodeViewerOptions): Promise<NodeViewer> {
		const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(opts.server, {
			transports: opts.transports ?? ['websocket'],
			reconnectionDelay: 500,
			reconnectionDelayMax: 5000,
			timeout: opts.requestTimeoutMs ?? 10_000,
			autoConnect: false,
		});
		// werift makes one DTLS certificate per process, on first use: make it
		// now, so it is not part of this (or any) viewer's time to first frame.
		await RTCDtlsTransport.SetupCertificate();
		const viewer = new NodeViewer(opts, socket);
		viewer.#decoder?.start();
		try {
			await viewer.#start();
		} catch (err) {
			await viewer.close();
			throw err;
		}
		return viewer;
	}

	/** Decoded media, with `decode: true`. */
	get decoded(): DecodeStats | null {
		return this.#decoder?.stats ?? null;
	}

	get live(): boolean {
		return this.#live;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** The socket.io id the server knows this viewer by. */
	get id(): string | undefined {
		return this.#socket.id;
	}

	get transportId(): string | null {
		return this.#transport?.id ?? null;
	}

	get consumers(): ConsumerDescription[] {
		return [...this.#consumers.values()];
	}

	/** Join to first complete keyframe received, in ms. */
	get timeToFirstKeyframeMs(): number | null {
		return this.firstKeyframeAt === null ? null : this.firstKeyframeAt - this.joinStartedAt;
	}

	/** Join to first decoded picture, in ms (with `decode: true`). */
	get timeToFirstFrameMs(): number | null {
		const at = this.decoded?.firstVideoFrameAt ?? null;
		return at === null ? null : at - this.joinStartedAt;
	}

	async #start(): Promise<void> {
		const s = this.#socket;
		const firstJoin = new Promise<void>((resolve, reject) => {
			let first = true;
			s.on('connect', () => {
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
				if (first) reject(new SignalingError('connect', { code: 'unavailable', message: err.message }));
			});
		});
		s.on('disconnect', (reason) => {
			this.#resetTransport();
			this.#live = false;
			if (this.#closed) return;
			if (reason === 'io server disconnect') {
				this.#fail(new SignalingError('connection', { code: 'closed', message: 'the server ended the session' }));
				return;
			}
			this.emit('reconnecting', reason);
		});
		s.on('streamLive', () => {
			this.#live = true;
			this.emit('live');
			this.#scheduleConsume();
		});
		s.on('streamOffline', ({ reason }) => {
			this.#live = false;
			this.emit('offline', reason);
		});
		s.on('consumerClosed', ({ consumerId }) => {
			this.#consumers.delete(consumerId);
			for (const sec of this.#sections) if (sec.consumer?.id === consumerId) sec.consumer = null;
		});
		s.on('transportClosed', ({ transportId }) => {
			if (transportId !== this.#transport?.id) return;
			this.#resetTransport();
			this.#scheduleConsume();
		});
		s.on('kicked', ({ reason }) => {
			this.#fail(new SignalingError('connection', { code: 'closed', message: `kicked: ${reason}` }));
		});
		s.connect();
		await firstJoin;
	}

	#fail(err: unknown): void {
		if (this.#closed) return;
		this.emit('error', err instanceof Error ? err : new Error(String(err)));
		if (err instanceof SignalingError && err.fatal) void this.close();
	}

	#request<K extends RequestName>(name: K, payload: RequestOf<K>): Promise<ResultOf<K>> {
		const pending = (this.#socket.timeout(this.#opts.requestTimeoutMs ?? 10_000) as unknown as {
			emitWithAck(ev: string, p: unknown): Promise<unknown>;
		}).emitWithAck(name, payload);
		return unwrapAck<ResultOf<K>>(name, pending);
	}

	async #join(): Promise<void> {
		if (this.joinStartedAt === 0) this.joinStartedAt = performance.now();
		const res = await this.#request('join', {
			stream: this.#opts.stream,
			...(this.#opts.token !== undefined ? { token: this.#opts.token } : {}),
		});
		this.joinResult = res;
		this.#mark('joined');
		this.#live = res.live;
		if (res.live) {
			this.emit('live');
			this.#scheduleConsume();
		}
	}

	#mark(what: keyof NodeViewer['timeline']): void {
		this.timeline[what] ??= Math.round(performance.now() - this.joinStartedAt);
	}

	/** Runs one consume round after the current work; rounds asked for meanwhile merge. */
	#scheduleConsume(): void {
		if (this.#consumePending || this.#closed) return;
		this.#consumePending = true;
		this.#work = this.#work.then(async () => {
			this.#consumePending = false;
			if (!this.#live || this.#closed || !this.#socket.connected) return;
			try {
				await this.#consume();
			} catch (err) {
				// Races with the stream or the connection going away: the next
				// streamLive, transportClosed or reconnect starts a new round.
				if (err instanceof SignalingError && (err.code === 'invalid_state' || err.code === 'not_found')) return;
				if (!this.#socket.connected) return;
				this.#fail(err);
				if (err instanceof SignalingError && !err.fatal) {
					setTimeout(() => this.#scheduleConsume(), 1000).unref();
				}
			}
		});
	}

	#newPeerConnection(iceServers: IceServer[]): RTCPeerConnection {
		const pc = new RTCPeerConnection({
			codecs: weriftCodecs(this.#opts.nack ?? true),
			headerExtensions: { audio: [], video: [] },
			iceServers,
			iceUseIpv6: false,
			...(this.#opts.iceAddress ? { iceInterfaceAddresses: { udp4: this.#opts.iceAddress }, iceAdditionalHostAddresses: [this.#opts.iceAddress] } : {}),
		});
		const hook = (t: RTCRtpTransceiver): void => {
			if (this.#hooked.has(t)) return;
			this.#hooked.add(t);
			t.onTrack.subscribe((track) => this.#hookTrack(track, t.kind));
			for (const track of t.receiver.tracks) this.#hookTrack(track, t.kind);
		};
		pc.onTransceiverAdded.subscribe(hook);
		pc.onRemoteTransceiverAdded.subscribe(hook);
		return pc;
	}

	#hookTrack(track: MediaStreamTrack, kind: string): void {
		if (this.#hooked.has(track)) return;
		this.#hooked.add(track);
		const k: MediaKind = kind === 'audio' ? 'audio' : 'video';
		track.onReceiveRtp.subscribe((rtp) => this.#onRtp(k, rtp));
	}

	#onRtp(kind: MediaKind, rtp: RtpPacket): void {
		const c = kind === 'video' ? this.video : this.audio;
		const now = performance.now();
		c.packets++;
		c.bytes += rtp.payload.length;
		c.ssrc = rtp.header.ssrc;
		if (c.firstPacketAt === null) {
			c.firstPacketAt = now;
			this.#mark('firstPacket');
		}
		c.lastPacketAt = now;
		if (kind === 'audio') {
			c.frames++;
		} else {
			if (startsH264Keyframe(rtp.payload)) this.#keyframeTs = rtp.header.timestamp;
			if (rtp.header.marker) {
				c.frames++;
				if (this.#keyframeTs === rtp.header.timestamp) {
					c.keyframes++;
					this.#keyframeTs = null;
					this.firstKeyframeAt ??= now;
					this.#mark('keyframe');
					this.emit('keyframe');
				}
			}
		}
		this.#decoder?.push(kind, rtp.payload, rtp.header.sequenceNumber, rtp.header.marker);
		if (this.listenerCount('rtp') > 0) {
			const h = rtp.header;
			this.emit('rtp', { kind, payload: rtp.payload, sequenceNumber: h.sequenceNumber, timestamp: h.timestamp, marker: h.marker, receivedAt: now });
		}
	}

	async #ensureTransport(): Promise<{ pc: RTCPeerConnection; transport: CreateTransportResult }> {
		if (this.#pc && this.#transport) return { pc: this.#pc, transport: this.#transport };
		const transport = await this.#request('createTransport', {});
		this.#mark('transport');
		this.#transport = transport;
		this.#connectSent = false;
		this.#sections = [];
		this.#pc = this.#newPeerConnection(this.joinResult?.iceServers ?? []);
		return { pc: this.#pc, transport };
	}

	async #consume(): Promise<void> {
		const { pc, transport } = await this.#ensureTransport();
		const rtpCapabilities = this.#opts.nack === false ? nodeRtpCapabilities({ nack: false }) : NODE_RTP_CAPABILITIES;
		const { consumers } = await this.#request('consume', { transportId: transport.id, rtpCapabilities });
		if (consumers.length === 0 || this.#pc !== pc) return;
		this.#mark('consumed');
		for (const c of consumers) {
			this.#consumers.set(c.id, c);
			const codec = c.rtpParameters.codecs[0];
			if (!codec) continue;
			const section = this.#sections.find((s) => s.kind === c.kind);
			if (section) {
				section.consumer = c;
				section.codec = codec;
			} else {
				this.#sections.push({ mid: String(this.#sections.length), kind: c.kind, consumer: c, codec });
			}
		}
		// werift gathers over UDP; mediasoup's TCP candidates are for browsers behind UDP-blocking firewalls.
		const udpOnly = { ...transport, iceCandidates: transport.iceCandidates.filter((c) => c.protocol === 'udp') };
		await pc.setRemoteDescription({ type: 'offer', sdp: buildRemoteOffer(udpOnly, this.#sections, this.#sdpVersion++) });
		await pc.setLocalDescription(await pc.createAnswer());
		this.#mark('negotiated');
		const local = pc.localDescription?.sdp;
		if (!local) throw new Error('werift produced no local description');
		if (!this.#connectSent) {
			this.#connectSent = true;
			await this.#request('connectTransport', { transportId: transport.id, dtlsParameters: dtlsParametersFromAnswer(local) });
			this.#mark('connected');
		}
		await Promise.all(consumers.map((c) => this.#request('resume', { consumerId: c.id })));
		this.#mark('resumed');
		this.consumeRounds++;
		this.emit('consumed', consumers);
	}

	#resetTransport(): void {
		const pc = this.#pc;
		this.#pc = null;
		this.#transport = null;
		this.#connectSent = false;
		this.#sections = [];
		this.#consumers.clear();
		if (pc) void pc.close().catch(() => undefined);
	}

	/** Resolves once `predicate` holds (checked on every media event), or rejects after `timeoutMs`. */
	async until(predicate: (v: NodeViewer) => boolean, timeoutMs: number): Promise<void> {
		const deadline = Date.now() + timeoutMs;
		while (!predicate(this)) {
			if (this.#closed) throw new Error('viewer closed');
			if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
			await new Promise((r) => setTimeout(r, 20));
		}
	}

	/** Leaves, disconnects, and stops the peer connection and decoder. Idempotent. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		if (this.#socket.connected) {
			await this.#request('leave', {}).catch(() => undefined);
		}
		this.#socket.disconnect();
		this.#socket.removeAllListeners();
		const pc = this.#pc;
		this.#pc = null;
		await pc?.close().catch(() => undefined);
		await this.#decoder?.close();
		this.emit('close');
		this.removeAllListeners();
	}
}
