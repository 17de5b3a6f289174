import { randomBytes, randomInt } from 'node:crypto';
import type dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../../server/common/emitter.js';
import { ClosedError } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import type { Config } from '../../server/config/schema.js';
import type { H264Config } from '../../server/core/codecs/h264.js';
import type { Publication, StreamRegistry } from '../../server/core/stream.js';
import { H264Depacketizer } from './h264-depacketizer.js';
import type { DepacketizedFrame, DepacketizerStats } from './h264-depacketizer.js';
import { bindSocketPair } from './ports.js';
import type { SocketPair } from './ports.js';
import { ReorderBuffer } from './reorder.js';
import type { ReorderStats } from './reorder.js';
import { buildPli, buildReceiverReport, looksLikeRtcp, ntpMiddle32, ntpToMs, parseRtcp, parseRtp } from './rtp.js';
import type { ReportBlock, RtpPacket } from './rtp.js';
import { buildSdp } from './sdp.js';
import { SessionTimeline, TimestampUnwrapper } from './timeline.js';
import type { SyncEvent, TrackKind } from './timeline.js';

export type RtpIngestConfig = Config['rtpIngest'];

export const VIDEO_CLOCK_RATE = 90_000;
export const OPUS_CLOCK_RATE = 48_000;
export const DEFAULT_VIDEO_PAYLOAD_TYPE = 96;
export const DEFAULT_AUDIO_PAYLOAD_TYPE = 111;

/** A latched sender that has been silent this long may be replaced by a new one (encoder restart). */
const SOURCE_SWITCH_MS = 1500;
/** Consecutive packets whose timestamps disagree with their arrival by more than this are suspect. */
const MAX_TIMESTAMP_JUMP_MS = 5000;
/** That many suspect packets in a row, agreeing with each other, make a real discontinuity. */
const DISCONTINUITY_RUN = 3;
/** After every sender said BYE, end this soon unless media comes back. */
const BYE_GRACE_MS = 1000;
const HOUSEKEEPING_MS = 250;
const RECEIVER_REPORT_MS = 1000;
/** One 90 kHz tick, the smallest step a synthesized dts takes. */
const VIDEO_TICK_MS = 1000 / VIDEO_CLOCK_RATE;
const PROBLEM_LOG_INTERVAL_MS = 10_000;

/** Counters for one media of a session. `dropped` sums every reason a packet was not used. */
export interface TrackStats {
	/** UDP datagrams that reached the port(s), good or bad. */
	datagrams: number;
	bytes: number;
	/** RTP packets accepted from the sender. */
	packets: number;
	lost: number;
	reordered: number;
	/** Duplicates and packets that came after their gap was given up. */
	late: number;
	outOfRange: number;
	malformed: number;
	oversize: number;
	wrongPayloadType: number;
	/** Packets from another address or SSRC than the latched sender. */
	foreign: number;
	badTimestamps: number;
	discontinuities: number;
	sourceSwitches: number;
	rtcpPackets: number;
	malformedRtcp: number;
	senderReports: number;
	dropped: number;
	/** Interarrival jitter (RFC 3550), ms. */
	jitterMs: number;
}

export interface VideoTrackStats extends TrackStats {
	frames: DepacketizerStats;
	keyframeRequestsSent: number;
}

export interface RtpSessionStats {
	video: VideoTrackStats;
	audio: TrackStats;
	timelineCorrections: number;
}

export interface RtpTrackSummary {
	packets: number;
	lost: number;
	reordered: number;
	dropped: number;
	jitterMs: number;
}

/** What GET /api/streams/NAME shows under `rtp`. */
export interface RtpSessionSummary {
	session: string;
	senders: { video: string | null; audio: string | null };
	video: RtpTrackSummary & { frames: number; framesDropped: number };
	audio: RtpTrackSummary;
	/** Whether each stream is placed by the sender's reports (true) or by arrival (false). */
	synced: { video: boolean; audio: boolean };
}

export interface RtpEndpoint {
	ip: string;
	port: number;
	rtcpPort: number;
	payloadType: number;
	ssrc: number;
}

/** The POST answer (and what a caller of RtpIngest.publish gets). */
export interface RtpAnswer {
	stream: string;
	video: RtpEndpoint & { codec: 'H264'; clockRate: 90000; packetizationMode: 1 };
	audio: RtpEndpoint & { codec: 'opus'; clockRate: 48000; channels: 2 };
	sdp: string;
	startTimeoutMs: number;
	idleTimeoutMs: number;
}

export interface RtpSessionOptions {
	stream: string;
	registry: StreamRegistry;
	/** Who asked for the session (the HTTP client), for the publication and logs. */
	remoteAddress: string;
	config: RtpIngestConfig;
	announcedIp: string;
	keyframeRequestMinIntervalMs: number;
	videoPayloadType?: number;
	audioPayloadType?: number;
	/** Ports where the sender receives RTCP; otherwise RTCP goes back to where the sender's RTCP came from. */
	videoFeedbackPort?: number;
	audioFeedbackPort?: number;
	/** Out-of-band parameter sets (sprop-parameter-sets), when the publisher gave them. */
	sprop?: { sps: Buffer; pps: Buffer; text: string } | null;
	logger: Logger;
}

export interface RtpSessionEvents extends Record<string, unknown[]> {
	close: [reason: string];
}

interface Source {
	address: string;
	port: number;
	ssrc: number;
	lastAt: number;
}

interface Arrived {
	pkt: RtpPacket;
	arrivedAt: number;
}

function emptyTrackStats(): TrackStats {
	return {
		datagrams: 0,
		bytes: 0,
		packets: 0,
		lost: 0,
		reordered: 0,
		late: 0,
		outOfRange: 0,
		malformed: 0,
		oversize: 0,
		wrongPayloadType: 0,
		foreign: 0,
		badTimestamps: 0,
		discontinuities: 0,
		sourceSwitches: 0,
		rtcpPackets: 0,
		malformedRtcp: 0,
		senderReports: 0,
		dropped: 0,
		jitterMs: 0,
	};
}

/** One media (video or audio) of a session: its ports, sender, ordering and clock. */
class Track {
	readonly kind: TrackKind;
	readonly clockRate: number;
	readonly payloadType: number;
	/** The SSRC we asked the sender to use. */
	readonly announcedSsrc: number;
	/** Our own SSRC in the RTCP we send. */
	readonly receiverSsrc = randomInt(1, 0x7fffffff);
	readonly pair: SocketPair;
	readonly stats = emptyTrackStats();
	readonly reorder: ReorderBuffer<Arrived>;
	readonly unwrapper = new TimestampUnwrapper();
	source: Source | null = null;
	/** Where the sender's RTCP comes from, and which of our sockets it reached. */
	rtcpPeer: { address: string; port: number; socket: dgram.Socket } | null = null;
	/** The port the sender said it receives RTCP on (POST body), if any. */
	readonly feedbackPort: number | null;
	/** SSRC of a sender report that came before any RTP. */
	pendingSrSsrc: number | null = null;
	lastSr: { middle: number; at: number } | null = null;
	bye = false;
	lastAccepted: { ext: number; arrivedAt: number } | null = null;
	suspect: { ts: number; arrivedAt: number; run: number } | null = null;
	jitter = 0;
	lastTransit: { ts: number; arrivedAt: number } | null = null;
	reportedExpected = 0;
	reportedLost = 0;

	constructor(init: {
		kind: TrackKind;
		clockRate: number;
		payloadType: number;
		pair: SocketPair;
		feedbackPort: number | null;
		reorder: (track: Track) => ReorderBuffer<Arrived>;
	}) {
		this.kind = init.kind;
		this.clockRate = init.clockRate;
		this.payloadType = init.payloadType;
		this.announcedSsrc = randomInt(1, 0x7fffffff);
		this.pair = init.pair;
		this.feedbackPort = init.feedbackPort;
		this.reorder = init.reorder(this);
	}

	/**
	 * Where our RTCP for this sender goes: the port it named, else where its
	 * RTCP comes from (symmetric RTCP), else (PLI only) its RTP source port.
	 */
	feedbackTarget(allowRtpSource: boolean): { address: string; port: number; socket: dgram.Socket } | null {
		const src = this.source;
		if (!src) return null;
		if (this.feedbackPort !== null) return { address: src.address, port: this.feedbackPort, socket: this.pair.rtcp };
		if (this.rtcpPeer) return this.rtcpPeer;
		return allowRtpSource ? { address: src.address, port: src.port, socket: this.pair.rtp } : null;
	}

	endpoint(ip: string): RtpEndpoint {
		return { ip, port: this.pair.port, rtcpPort: this.pair.rtcpPort, payloadType: this.payloadType, ssrc: this.announcedSsrc };
	}

	/** RFC 3550 A.8 interarrival jitter, updated per accepted packet. */
	updateJitter(ts: number, arrivedAt: number): void {
		const last = this.lastTransit;
		this.lastTransit = { ts, arrivedAt };
		if (!last) return;
		const arrivalUnits = ((arrivedAt - last.arrivedAt) * this.clockRate) / 1000;
		const tsUnits = (ts - last.ts) | 0;
		const d = Math.abs(arrivalUnits - tsUnits);
		this.jitter += (d - this.jitter) / 16;
	}

	syncStats(): void {
		const r: ReorderStats = this.reorder.stats;
		const s = this.stats;
		s.lost = r.lost;
		s.reordered = r.reordered;
		s.late = r.late;
		s.outOfRange = r.outOfRange;
		s.dropped = s.malformed + s.oversize + s.wrongPayloadType + s.foreign + s.late + s.outOfRange + s.badTimestamps + s.malformedRtcp;
		s.jitterMs = Math.round((this.jitter / this.clockRate) * 1000 * 100) / 100;
	}

	reportBlock(now: number): ReportBlock | null {
		const src = this.source;
		const highest = this.reorder.highestSeq;
		if (!src || highest < 0) return null;
		const expected = highest - this.reorder.baseSeq + 1;
		const lost = this.reorder.stats.lost;
		const expectedInterval = expected - this.reportedExpected;
		const lostInterval = lost - this.reportedLost;
		this.reportedExpected = expected;
		this.reportedLost = lost;
		const fractionLost = expectedInterval > 0 && lostInterval > 0 ? Math.floor((lostInterval * 256) / expectedInterval) : 0;
		const sr = this.lastSr;
		return {
			ssrc: src.ssrc,
			fractionLost,
			cumulativeLost: lost,
			// Our extended numbers start one cycle up (see ReorderBuffer).
			highestSeq: Math.max(0, highest - 0x10000) >>> 0,
			jitter: this.jitter,
			lastSr: sr?.middle ?? 0,
			delaySinceLastSr: sr ? Math.round(((now - sr.at) / 1000) * 65536) : 0,
		};
	}

	/** Forgets the sender's sequence and clock state (a new sender took over). */
	resetState(): void {
		this.reorder.reset();
		this.unwrapper.reset();
		this.lastAccepted = null;
		this.suspect = null;
		this.lastTransit = null;
		this.lastSr = null;
		this.rtcpPeer = null;
		this.bye = false;
		this.reportedExpected = 0;
		this.reportedLost = 0;
	}

	close(): void {
		this.reorder.close();
		for (const s of [this.pair.rtp, this.pair.rtcp]) {
			try {
				s.close();
			} catch {
				// already closed
			}
		}
	}
}

/**
 * One plain RTP publish: two UDP port pairs (H.264 and Opus), the sender
 * latched on each, packets put back in order, H.264 access units and Opus
 * packets timed on one publisher timeline and pushed into a Publication.
 * Closed by DELETE, by an idle sender, by a takeover and by shutdown.
 */
export class RtpSession extends TypedEmitter<RtpSessionEvents> {
	readonly id = randomBytes(6).toString('hex');
	readonly stream: string;
	readonly answer: RtpAnswer;
	readonly createdAt = Date.now();
	readonly #publication: Publication;
	readonly #opts: RtpSessionOptions;
	readonly #logger: Logger;
	readonly #video: Track;
	readonly #audio: Track;
	readonly #depacketizer: H264Depacketizer;
	readonly #timeline: SessionTimeline;
	/** performance.now() of the timeline's 0: the session's creation, so media times are never negative. */
	readonly #origin = performance.now();
	readonly #housekeeping: NodeJS.Timeout;
	readonly #problemsLoggedAt = new Map<string, number>();
	readonly #cname: string;
	#firstPacketAt: number | null = null;
	#lastActivity = performance.now();
	#lastReportAt = 0;
	#lastKeyframeRequestAt = -Infinity;
	#keyframeRequestsSent = 0;
	#lastDts = -Infinity;
	#audioConfigured = false;
	#closed = false;

	private constructor(opts: RtpSessionOptions, video: SocketPair, audio: SocketPair, logger: Logger) {
		super();
		this.#opts = opts;
		this.stream = opts.stream;
		this.#logger = logger;
		this.setListenerErrorLogger(logger);
		this.#cname = `subsecond-${opts.stream}`;
		const reorder = (track: Track): ReorderBuffer<Arrived> =>
			new ReorderBuffer<Arrived>(
				{
					deliver: (item) => this.#guard(track, () => this.#delivered(track, item)),
					loss: (count) => this.#guard(track, () => this.#loss(track, count)),
					resync: () => this.#guard(track, () => this.#resync(track)),
				},
				{ windowMs: opts.config.reorderWindowMs, maxPackets: opts.config.reorderMaxPackets },
			);
		this.#video = new Track({
			kind: 'video',
			clockRate: VIDEO_CLOCK_RATE,
			payloadType: opts.videoPayloadType ?? DEFAULT_VIDEO_PAYLOAD_TYPE,
			pair: video,
			feedbackPort: opts.videoFeedbackPort ?? null,
			reorder,
		});
		this.#audio = new Track({
			kind: 'audio',
			clockRate: OPUS_CLOCK_RATE,
			payloadType: opts.audioPayloadType ?? DEFAULT_AUDIO_PAYLOAD_TYPE,
			pair: audio,
			feedbackPort: opts.audioFeedbackPort ?? null,
			reorder,
		});
		this.#timeline = new SessionTimeline({
			videoClockRate: VIDEO_CLOCK_RATE,
			audioClockRate: OPUS_CLOCK_RATE,
			driftMs: opts.config.syncDriftMs,
		});
		this.#depacketizer = new H264Depacketizer(
			{
				frame: (f) => this.#videoFrame(f),
				config: (c) => this.#videoConfig(c),
				needKeyframe: () => {
					if (!this.#closed) this.requestKeyFrame('loss');
				},
				problem: (kind, message) => this.#problem(kind, message),
			},
			{ maxFrameSize: opts.config.maxFrameSize, sps: opts.sprop?.sps, pps: opts.sprop?.pps },
		);

		const ip = opts.announcedIp;
		const v = this.#video.endpoint(ip);
		const a = this.#audio.endpoint(ip);
		this.answer = {
			stream: opts.stream,
			video: { ...v, codec: 'H264', clockRate: 90000, packetizationMode: 1 },
			audio: { ...a, codec: 'opus', clockRate: 48000, channels: 2 },
			sdp: buildSdp({ stream: opts.stream, ip, sessionId: String(Date.now()), video: v, audio: a, spropParameterSets: opts.sprop?.text }),
			startTimeoutMs: opts.config.startTimeoutMs,
			idleTimeoutMs: opts.config.idleTimeoutMs,
		};

		// The publication is made last: if this throws (stream limit), the caller closes the sockets.
		this.#publication = opts.registry.publish(opts.stream, {
			protocol: 'rtp',
			remoteAddress: opts.remoteAddress,
			kick: (reason) => this.close(reason),
		});
		this.#publication.on('end', (reason) => this.close(reason));
		const config = this.#depacketizer.config;
		if (config) this.#publication.setVideoConfig(config);

		for (const track of [this.#video, this.#audio]) {
			track.pair.rtp.on('message', (msg, rinfo) => this.#datagram(track, msg, rinfo, track.pair.rtp, false));
			track.pair.rtcp.on('message', (msg, rinfo) => this.#datagram(track, msg, rinfo, track.pair.rtcp, true));
			for (const s of [track.pair.rtp, track.pair.rtcp]) {
				s.on('error', (err) => this.#logger.warn({ err, media: track.kind }, 'RTP socket error'));
			}
		}
		this.#housekeeping = setInterval(() => this.#tick(), HOUSEKEEPING_MS);
		this.#housekeeping.unref();
		this.#logger.info(
			{ session: this.id, video: this.answer.video, audio: this.answer.audio, remoteAddress: opts.remoteAddress },
			'RTP session ready',
		);
	}

	/** Binds the ports and publishes the stream (taking over a live publisher of the same name). */
	static async create(opts: RtpSessionOptions): Promise<RtpSession> {
		const logger = opts.logger.child({ stream: opts.stream, protocol: 'rtp' });
		const { listenIp, portMin, portMax } = opts.config;
		const video = await bindSocketPair(listenIp, portMin, portMax);
		let audio: SocketPair | null = null;
		try {
			audio = await bindSocketPair(listenIp, portMin, portMax);
			return new RtpSession(opts, video, audio, logger);
		} catch (err) {
			for (const s of [video.rtp, video.rtcp, audio?.rtp, audio?.rtcp]) {
				try {
					s?.close();
				} catch {
					// already closed
				}
			}
			throw err;
		}
	}

	get closed(): boolean {
		return this.#closed;
	}

	get publication(): Publication {
		return this.#publication;
	}

	/** The addresses the sender's media comes from, once latched. */
	get senders(): { video: string | null; audio: string | null } {
		const fmt = (t: Track): string | null => (t.source ? `${t.source.address}:${t.source.port}` : null);
		return { video: fmt(this.#video), audio: fmt(this.#audio) };
	}

	stats(): RtpSessionStats {
		this.#video.syncStats();
		this.#audio.syncStats();
		return {
			video: { ...this.#video.stats, frames: { ...this.#depacketizer.stats }, keyframeRequestsSent: this.#keyframeRequestsSent },
			audio: { ...this.#audio.stats },
			timelineCorrections: this.#timeline.corrections,
		};
	}

	/** A compact view for the stream's API entry. */
	summary(): RtpSessionSummary {
		const s = this.stats();
		const pick = (t: TrackStats): RtpTrackSummary => ({
			packets: t.packets,
			lost: t.lost,
			reordered: t.reordered,
			dropped: t.dropped,
			jitterMs: t.jitterMs,
		});
		return {
			session: this.id,
			senders: this.senders,
			video: { ...pick(s.video), frames: s.video.frames.frames, framesDropped: s.video.frames.framesDropped },
			audio: pick(s.audio),
			synced: { video: this.#timeline.clocks.video.synced, audio: this.#timeline.clocks.audio.synced },
		};
	}

	/**
	 * Asks the video sender for a keyframe with an RTCP PLI (GStreamer's
	 * rtpbin honours it; ffmpeg ignores it). Rate-limited; returns whether one
	 * was sent. The bridge may call it when a viewer needs a keyframe.
	 */
	requestKeyFrame(reason = 'requested'): boolean {
		if (this.#closed) throw new ClosedError(`RTP session of ${this.stream}`);
		const t = this.#video;
		const src = t.source;
		const peer = t.feedbackTarget(true);
		if (!src || !peer) return false;
		const now = performance.now();
		if (now - this.#lastKeyframeRequestAt < this.#opts.keyframeRequestMinIntervalMs) return false;
		this.#lastKeyframeRequestAt = now;
		const pli = buildPli(t.receiverSsrc, src.ssrc, this.#cname, t.reportBlock(now));
		this.#send(peer.socket, pli, peer.port, peer.address);
		this.#keyframeRequestsSent++;
		this.#logger.debug({ reason, to: `${peer.address}:${peer.port}` }, 'keyframe requested (PLI)');
		return true;
	}

	/** Ends the session: sockets closed, publication ended. Idempotent. */
	close(reason = 'closed'): void {
		if (this.#closed) return;
		this.#closed = true;
		clearInterval(this.#housekeeping);
		this.#video.close();
		this.#audio.close();
		this.#publication.end(reason);
		this.#logger.info({ session: this.id, reason, stats: this.summary() }, 'RTP session closed');
		this.emit('close', reason);
		this.removeAllListeners();
	}

	#send(socket: dgram.Socket, buf: Buffer, port: number, address: string): void {
		try {
			socket.send(buf, port, address, (err) => {
				if (err) this.#logger.debug({ err }, 'RTCP send failed');
			});
		} catch (err) {
			this.#logger.debug({ err }, 'RTCP send failed');
		}
	}

	/** Runs a packet-path step; a failure is logged, never thrown into the socket. */
	#guard(track: Track, fn: () => void): void {
		try {
			fn();
		} catch (err) {
			if (this.#closed) return;
			this.#problem(`internal-${track.kind}`, 'error while handling an RTP packet', err);
		}
	}

	#problem(kind: string, message: string, err?: unknown): void {
		const now = performance.now();
		const last = this.#problemsLoggedAt.get(kind);
		if (last !== undefined && now - last < PROBLEM_LOG_INTERVAL_MS) return;
		this.#problemsLoggedAt.set(kind, now);
		this.#logger.warn({ kind, err }, message);
	}

	#datagram(track: Track, msg: Buffer, rinfo: dgram.RemoteInfo, socket: dgram.Socket, rtcpPort: boolean): void {
		if (this.#closed) return;
		this.#guard(track, () => {
			const now = performance.now();
			const s = track.stats;
			s.datagrams++;
			s.bytes += msg.length;
			if (msg.length > this.#opts.config.maxPacketSize) {
				s.oversize++;
				return;
			}
			if (rtcpPort || looksLikeRtcp(msg)) {
				this.#rtcp(track, msg, rinfo, socket, now);
				return;
			}
			const parsed = parseRtp(msg);
			if (!parsed.ok) {
				s.malformed++;
				this.#logger.trace({ media: track.kind, reason: parsed.reason }, 'malformed RTP packet');
				return;
			}
			const pkt = parsed.value;
			if (pkt.payloadType !== track.payloadType) {
				s.wrongPayloadType++;
				this.#problem(
					`pt-${track.kind}`,
					`${track.kind} port ${track.pair.port} got RTP payload type ${pkt.payloadType}, expected ${track.payloadType}: packets dropped`,
				);
				return;
			}
			if (!this.#acceptSource(track, pkt.ssrc, rinfo, now)) return;
			s.packets++;
			if (this.#firstPacketAt === null) this.#firstPacketAt = now;
			this.#lastActivity = now;
			track.bye = false;
			track.reorder.push(pkt.sequenceNumber, { pkt, arrivedAt: now });
		});
	}

	/** Latches the first sender of a port; another may take over only after the first went quiet. */
	#acceptSource(track: Track, ssrc: number, rinfo: dgram.RemoteInfo, now: number): boolean {
		if (this.#opts.config.strictSsrc && ssrc !== track.announcedSsrc) {
			track.stats.foreign++;
			this.#problem(`ssrc-${track.kind}`, `${track.kind}: SSRC ${ssrc} is not the announced ${track.announcedSsrc} (strictSsrc): packets dropped`);
			return false;
		}
		const src = track.source;
		if (src && src.ssrc === ssrc && src.address === rinfo.address && src.port === rinfo.port) {
			src.lastAt = now;
			return true;
		}
		if (src && now - src.lastAt < SOURCE_SWITCH_MS) {
			track.stats.foreign++;
			return false;
		}
		if (src) {
			track.stats.sourceSwitches++;
			this.#logger.info(
				{ media: track.kind, from: `${src.address}:${src.port}/${src.ssrc}`, to: `${rinfo.address}:${rinfo.port}/${ssrc}` },
				'RTP sender changed',
			);
			this.#restartTrack(track);
		} else {
			this.#logger.info(
				{ media: track.kind, from: `${rinfo.address}:${rinfo.port}`, ssrc, announcedSsrc: track.announcedSsrc },
				ssrc === track.announcedSsrc ? 'RTP sender latched' : 'RTP sender latched (with its own SSRC)',
			);
		}
		if (track.pendingSrSsrc !== null && track.pendingSrSsrc !== ssrc) this.#timeline.resetTrack(track.kind);
		track.pendingSrSsrc = null;
		track.source = { address: rinfo.address, port: rinfo.port, ssrc, lastAt: now };
		return true;
	}

	/** A new sender or numbering: sequence, timestamps and partial frames start over. */
	#restartTrack(track: Track): void {
		track.resetState();
		this.#timeline.resetTrack(track.kind);
		if (track.kind === 'video') this.#depacketizer.reset();
	}

	#rtcp(track: Track, msg: Buffer, rinfo: dgram.RemoteInfo, socket: dgram.Socket, now: number): void {
		const s = track.stats;
		s.rtcpPackets++;
		const parsed = parseRtcp(msg);
		if (!parsed.ok) {
			s.malformedRtcp++;
			return;
		}
		const src = track.source;
		for (const p of parsed.value) {
			if (p.type === 'sr') {
				if (src ? p.ssrc !== src.ssrc || rinfo.address !== src.address : this.#opts.config.strictSsrc && p.ssrc !== track.announcedSsrc) {
					continue;
				}
				s.senderReports++;
				const ntpMs = ntpToMs(p.ntpSeconds, p.ntpFraction);
				if (!src) {
					// Before any RTP: kept until the stream starts (ffmpeg sends its first report first).
					track.pendingSrSsrc = p.ssrc;
					this.#timeline.senderReport(track.kind, ntpMs, p.rtpTimestamp, null);
					continue;
				}
				track.rtcpPeer = { address: rinfo.address, port: rinfo.port, socket };
				track.lastSr = { middle: ntpMiddle32(p.ntpSeconds, p.ntpFraction), at: now };
				this.#lastActivity = now;
				const ev = this.#timeline.senderReport(track.kind, ntpMs, p.rtpTimestamp, track.lastAccepted?.ext ?? null);
				this.#logSync(ev);
			} else if (p.type === 'bye') {
				if (src && p.ssrcs.includes(src.ssrc) && rinfo.address === src.address) {
					track.bye = true;
					this.#logger.info({ media: track.kind }, 'RTP sender said BYE');
				}
			}
		}
	}

	#logSync(ev: SyncEvent | null): void {
		if (!ev || ev.outcome === 'unchanged' || ev.outcome === 'pending') return;
		const level = ev.outcome === 'corrected' || ev.outcome === 'reanchored' ? 'info' : 'debug';
		this.#logger[level]({ media: ev.kind, outcome: ev.outcome, shiftMs: Math.round(ev.shiftMs * 10) / 10 }, 'A/V timeline from sender report');
	}

	#loss(track: Track, _count: number): void {
		if (track.kind === 'video') this.#depacketizer.loss();
	}

	#resync(track: Track): void {
		this.#logger.info({ media: track.kind }, 'RTP sequence restarted');
		track.stats.discontinuities++;
		this.#timeline.resetTrack(track.kind);
		track.unwrapper.reset();
		track.lastAccepted = null;
		track.suspect = null;
		if (track.kind === 'video') this.#depacketizer.reset();
	}

	/** An in-order packet: timestamp checks, then the depacketizer or the audio path. */
	#delivered(track: Track, { pkt, arrivedAt }: Arrived): void {
		if (this.#closed) return;
		const clock = this.#timeline.clocks[track.kind];
		const ext = track.unwrapper.peek(pkt.timestamp);
		const last = track.lastAccepted;
		if (!clock.started || !last) {
			track.unwrapper.commit(ext);
			this.#logSync(this.#timeline.startTrack(track.kind, ext, arrivedAt - this.#origin));
		} else {
			const mediaMs = ((ext - last.ext) * 1000) / track.clockRate;
			const wallMs = arrivedAt - last.arrivedAt;
			if (Math.abs(mediaMs - wallMs) > MAX_TIMESTAMP_JUMP_MS && !this.#confirmDiscontinuity(track, pkt.timestamp, arrivedAt)) {
				track.stats.badTimestamps++;
				if (track.kind === 'video') this.#depacketizer.loss();
				return;
			}
			if (track.suspect && track.suspect.run >= DISCONTINUITY_RUN) {
				// Time really jumped (a paused source, a clock reset): start the stream's clock again here.
				track.stats.discontinuities++;
				this.#logger.info({ media: track.kind, jumpMs: Math.round(mediaMs - wallMs) }, 'RTP timestamp discontinuity');
				track.unwrapper.reset();
				const fresh = track.unwrapper.unwrap(pkt.timestamp);
				this.#timeline.resetTrack(track.kind);
				this.#timeline.startTrack(track.kind, fresh, arrivedAt - this.#origin);
				if (track.kind === 'video') this.#depacketizer.reset();
				track.suspect = null;
				track.lastAccepted = { ext: fresh, arrivedAt };
				this.#media(track, pkt, fresh, arrivedAt);
				return;
			}
			track.suspect = null;
			track.unwrapper.commit(ext);
		}
		track.lastAccepted = { ext, arrivedAt };
		track.updateJitter(pkt.timestamp, arrivedAt);
		this.#media(track, pkt, ext, arrivedAt);
	}

	/** Counts suspect packets whose timestamps agree with one another; true once enough do. */
	#confirmDiscontinuity(track: Track, ts: number, arrivedAt: number): boolean {
		const prev = track.suspect;
		let run = 1;
		if (prev) {
			const mediaMs = (((ts - prev.ts) | 0) * 1000) / track.clockRate;
			if (Math.abs(mediaMs - (arrivedAt - prev.arrivedAt)) <= MAX_TIMESTAMP_JUMP_MS) run = prev.run + 1;
		}
		track.suspect = { ts, arrivedAt, run };
		return run >= DISCONTINUITY_RUN;
	}

	#media(track: Track, pkt: RtpPacket, ext: number, arrivedAt: number): void {
		if (track.kind === 'video') {
			this.#depacketizer.push(pkt.payload, ext, pkt.marker, arrivedAt);
			return;
		}
		if (pkt.payload.length === 0) return; // nothing to decode; keeps the sender alive
		if (!this.#audioConfigured) {
			this.#audioConfigured = true;
			this.#publication.setAudioConfig({ codec: 'opus', sampleRate: 48000, channels: 2 });
		}
		this.#publication.pushAudio({
			kind: 'audio',
			pts: this.#timeline.clocks.audio.toMs(ext),
			data: pkt.payload,
			receivedAt: arrivedAt,
		});
	}

	#videoConfig(config: H264Config): void {
		if (this.#closed) return;
		this.#logger.info({ profile: config.profile, width: config.width, height: config.height, fps: config.fps }, 'H.264 configuration');
		this.#publication.setVideoConfig(config);
	}

	#videoFrame(f: DepacketizedFrame): void {
		if (this.#closed) return;
		const pts = this.#timeline.clocks.video.toMs(f.ts);
		// RTP carries presentation times only. In order they double as decode
		// times; a frame that goes back (B-frames, a timeline correction) gets the
		// smallest decode time that keeps the sequence increasing.
		const dts = pts > this.#lastDts ? pts : this.#lastDts + VIDEO_TICK_MS;
		this.#lastDts = dts;
		this.#publication.pushVideo({ kind: 'video', dts, pts, keyframe: f.keyframe, nalus: f.nalus, receivedAt: f.receivedAt });
	}

	#tick(): void {
		if (this.#closed) return;
		const now = performance.now();
		const cfg = this.#opts.config;
		if (this.#firstPacketAt === null) {
			if (now - this.#origin > cfg.startTimeoutMs) this.close(`no RTP received within ${cfg.startTimeoutMs} ms`);
			return;
		}
		const senders = [this.#video, this.#audio].filter((t) => t.source !== null);
		const allBye = senders.length > 0 && senders.every((t) => t.bye);
		const quiet = now - this.#lastActivity;
		if (allBye && quiet > Math.min(BYE_GRACE_MS, cfg.idleTimeoutMs)) {
			this.close('the RTP sender said BYE');
			return;
		}
		if (quiet > cfg.idleTimeoutMs) {
			this.close(`no RTP for ${cfg.idleTimeoutMs} ms`);
			return;
		}
		if (cfg.receiverReports && now - this.#lastReportAt >= RECEIVER_REPORT_MS) {
			this.#lastReportAt = now;
			for (const t of [this.#video, this.#audio]) {
				// Only to senders that speak RTCP: anyone else has no use for reports.
				const peer = t.feedbackTarget(false);
				if (!peer || (t.rtcpPeer === null && t.feedbackPort === null)) continue;
				this.#send(peer.socket, buildReceiverReport(t.receiverSsrc, this.#cname, t.reportBlock(now)), peer.port, peer.address);
			}
		}
	}
}
