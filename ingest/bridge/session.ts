import { performance } from 'node:perf_hooks';
import type { Logger } from '../../server/common/logger.js';
import type { SupervisedProcess } from '../../server/common/process.js';
import type { AacConfig, AudioConfig } from '../../server/core/codecs/audio.js';
import { sameH264Config } from '../../server/core/codecs/h264.js';
import type { AudioFrame, VideoConfig, VideoFrame, VideoPolicy } from '../../server/core/media.js';
import { VideoRendition } from '../../server/core/stream.js';
import type { Publication, Stream } from '../../server/core/stream.js';
import type { StreamRouters } from '../../server/sfu/stream-routers.js';
import { MediaClock, wallFromPerf, wallNow } from './clock.js';
import { H264Packetizer } from './h264-packetizer.js';
import { OpusTranscoder } from './opus-transcoder.js';
import { PlainLink } from './plain-link.js';
import type { Producer, RtpParameters } from './plain-link.js';
import { decideVideoPath } from './policy.js';
import type { RtcpFeedback } from './rtcp.js';
import { buildSenderReport } from './rtcp.js';
import { IP_UDP_OVERHEAD, RtpSender, maxRtpPayload } from './rtp.js';
import { DelayStats } from './stats.js';
import type { DelaySnapshot } from './stats.js';
import { TRANSCODE_PROFILE_LEVEL_ID, VideoTranscoder } from './video-transcoder.js';
import type { TranscoderHooks, VideoTranscoderStats } from './video-transcoder.js';

export const VIDEO_PAYLOAD_TYPE = 102;
export const AUDIO_PAYLOAD_TYPE = 111;
/** Opus packets are never fragmented; this holds any sane one (120 ms at 96 kbit/s is 1.4 kB). */
const AUDIO_MAX_PACKET = 1500 - IP_UDP_OVERHEAD;

/** The metrics hooks the bridge reports to (server/metrics Metrics has them). */
export interface BridgeMetrics {
	observeBridgeDelay(kind: 'audio' | 'video', ms: number): void;
	keyframeRequest(stream: string, outcome: 'forced' | 'rate_limited' | 'ignored'): void;
	framesDropped(component: string, n?: number): void;
	trackProcess(kind: string, proc: SupervisedProcess): void;
}

/** What the bridge needs from the configuration (config.streams and config.ffmpegPath). */
export interface BridgeSettings {
	ffmpegPath: string;
	rtpMtu: number;
	videoPolicy: VideoPolicy;
	videoPolicyOverrides: Readonly<Record<string, VideoPolicy>>;
	transcode: { preset: string; videoBitrateKbps: number; keyframeIntervalMs: number };
	opusBitrate: number;
	keyframeRequestMinIntervalMs: number;
	/** How long producers wait for the other kind's configuration before going out alone. */
	announceWaitMs?: number;
	/** Sender report interval. */
	srIntervalMs?: number;
}

/**
 * Asks a stream's publisher for a keyframe, where its protocol can (plain
 * RTP: an RTCP PLI to the sender); false when it cannot or was asked too
 * recently. Wired by the server, so ingest folders need not know each other.
 */
export type UpstreamKeyframeRequester = (stream: string) => boolean;

export type VideoMode = 'passthrough' | 'transcode';
export type AudioMode = 'opus-passthrough' | 'aac-to-opus';

export interface MediaStats {
	packets: number;
	bytes: number;
	frames: number;
	/** Frames not sent because no producer was ready yet (or waiting for a keyframe on a new one). */
	framesNotSent: number;
	senderReports: number;
	nacks: number;
	retransmitted: number;
}

export interface BridgeSessionStats {
	stream: string;
	publication: string;
	videoPath: VideoMode | null;
	audioPath: AudioMode | null;
	video: MediaStats & {
		pli: number;
		fir: number;
		/** Keyframes the transcoder made on request. */
		keyframesForced: number;
		/** Requests passed on to the publisher (plain RTP senders). */
		keyframeRequestsForwarded: number;
		/** Requests nobody could honour (RTMP passthrough: the GOP bounds the wait). */
		keyframeRequestsNotHonoured: number;
	};
	audio: MediaStats;
	/** Both transcoders' restarts after crashes. */
	transcoderRestarts: number;
	/** Frames dropped by the bounded queues in front of the transcoders. */
	framesDropped: number;
	videoTranscoder: VideoTranscoderStats | null;
	opusTranscoder: OpusTranscoder['stats'] | null;
	/** From frame.receivedAt to its first RTP packet leaving the bridge, ms. */
	addedDelayMs: { video: DelaySnapshot; audio: DelaySnapshot };
}

/** The `webrtc` field of the stream info (GET /api/streams). */
export interface BridgeStreamInfo {
	videoPath: VideoMode | null;
	reason: string | null;
	audioPath: AudioMode | null;
	/** Producers are on the origin router and announced to viewers. */
	ready: boolean;
	videoProfileLevelId: string | null;
	keyframeRequests: { pli: number; fir: number; forced: number };
	addedDelayMs: { video: { p50: number | null; p99: number | null }; audio: { p50: number | null; p99: number | null } };
}

interface VideoOut {
	sender: RtpSender;
	packetizer: H264Packetizer;
	link: PlainLink | null;
	linking: Promise<void> | null;
	profileLevelId: string;
	/** A new producer's viewers need a keyframe first. */
	needKeyframe: boolean;
}

interface AudioOut {
	sender: RtpSender;
	link: PlainLink | null;
	linking: Promise<void> | null;
}

function emptyMediaStats(): MediaStats {
	return { packets: 0, bytes: 0, frames: 0, framesNotSent: 0, senderReports: 0, nacks: 0, retransmitted: 0 };
}

/**
 * The bridge for one publication: turns its frames into RTP for an H.264
 * and an Opus producer on the stream's origin router. Lives exactly as long
 * as the publication; a takeover or restart gets a new session (and new
 * producers) on the same router.
 */
export class BridgeSession {
	readonly stream: Stream;
	readonly publication: Publication;
	readonly logger: Logger;
	readonly #routers: StreamRouters;
	readonly #settings: BridgeSettings;
	readonly #policy: VideoPolicy;
	readonly #clock = new MediaClock();
	readonly #cname: string;
	readonly #delay = { video: new DelayStats(), audio: new DelayStats() };
	readonly #vstats: BridgeSessionStats['video'] = {
		...emptyMediaStats(),
		pli: 0,
		fir: 0,
		keyframesForced: 0,
		keyframeRequestsForwarded: 0,
		keyframeRequestsNotHonoured: 0,
	};
	readonly #astats: MediaStats = emptyMediaStats();
	#video: VideoOut | null = null;
	#audio: AudioOut | null = null;
	#videoMode: VideoMode | null = null;
	#videoReason: string | null = null;
	#videoFinal = false;
	#rejected = false;
	#audioMode: AudioMode | null = null;
	#transcoder: VideoTranscoder | null = null;
	readonly #oldTranscoderStats = { restarts: 0, dropped: 0, forced: 0 };
	#rendition: VideoRendition | null = null;
	#opus: OpusTranscoder | null = null;
	readonly #oldOpusStats = { restarts: 0, dropped: 0 };
	// Passthrough while B-frames are not ruled out: the current GOP, for a seamless switch.
	#gop: VideoFrame[] = [];
	#gopBytes = 0;
	#maxPtsSeen = -Infinity;
	#maxPtsSent = -Infinity;
	#announced: Producer[] = [];
	#announceTimer: NodeJS.Timeout | null = null;
	#srTimer: NodeJS.Timeout | null = null;
	#lastForcedAt = -Infinity;
	#deferredKeyframe: NodeJS.Timeout | null = null;
	#rebuilding = false;
	#closed = false;

	readonly #metrics: BridgeMetrics | null;
	readonly #hooks: TranscoderHooks;
	readonly #upstreamKeyframe: UpstreamKeyframeRequester | null;

	constructor(
		stream: Stream,
		publication: Publication,
		routers: StreamRouters,
		settings: BridgeSettings,
		logger: Logger,
		metrics: BridgeMetrics | null = null,
		upstreamKeyframe: UpstreamKeyframeRequester | null = null,
	) {
		this.stream = stream;
		this.#upstreamKeyframe = upstreamKeyframe;
		this.#metrics = metrics;
		this.#hooks = metrics
			? { process: (kind, proc) => metrics.trackProcess(kind, proc), dropped: (component, n) => metrics.framesDropped(component, n) }
			: {};
		this.publication = publication;
		this.#routers = routers;
		this.#settings = settings;
		this.logger = logger.child({ component: 'bridge', stream: stream.name, publication: publication.id });
		this.#policy = settings.videoPolicyOverrides[stream.name] ?? settings.videoPolicy;
		this.#cname = `subsecond-${publication.id.slice(0, 8)}`;
	}

	/** Starts listening to the publication. */
	start(): void {
		const pub = this.publication;
		pub.on('videoConfig', (c) => this.#onVideoConfig(c));
		pub.on('audioConfig', (c) => this.#onAudioConfig(c));
		pub.on('video', (f) => this.#onVideo(f));
		pub.on('audio', (f) => this.#onAudio(f));
		if (pub.video) this.#onVideoConfig(pub.video);
		if (pub.audio) this.#onAudioConfig(pub.audio);
		this.#srTimer = setInterval(() => this.#sendSenderReports(), this.#settings.srIntervalMs ?? 1000);
		this.#srTimer.unref();
	}

	get closed(): boolean {
		return this.#closed;
	}

	get videoPath(): VideoMode | null {
		return this.#videoMode;
	}

	get audioPath(): AudioMode | null {
		return this.#audioMode;
	}

	/** The producers announced to StreamRouters. */
	get producers(): readonly Producer[] {
		return this.#announced;
	}

	get videoTranscoder(): VideoTranscoder | null {
		return this.#transcoder;
	}

	get opusTranscoder(): OpusTranscoder | null {
		return this.#opus;
	}

	/** The RTP timestamp a publisher time gets on the wire (for benchmarks matching packets to frames). */
	rtpTimestampOf(kind: 'audio' | 'video', ms: number): number | null {
		const out = kind === 'video' ? this.#video : this.#audio;
		return out ? out.sender.timestampOf(ms) : null;
	}

	get ssrcs(): { video: number | null; audio: number | null } {
		return { video: this.#video?.sender.ssrc ?? null, audio: this.#audio?.sender.ssrc ?? null };
	}

	// ---- video -------------------------------------------------------------

	#onVideoConfig(config: VideoConfig): void {
		if (this.#closed || this.#rejected) return;
		if (this.#videoMode === null) {
			this.#decide(config, false);
		} else if (this.#videoMode === 'passthrough') {
			// Frames kept so far belong to the old parameter sets.
			this.#gop = [];
			this.#gopBytes = 0;
			const d = decideVideoPath(config, this.#policy);
			if (d.action === 'passthrough') {
				this.#videoFinal = d.final;
				this.#videoReason = d.reason;
				if (this.#video && d.profileLevelId.slice(0, 4) !== this.#video.profileLevelId.slice(0, 4)) {
					// Another profile: viewers must negotiate it again, so a new producer.
					this.#replaceVideoLink(d.profileLevelId);
				}
			} else {
				this.#decide(config, false);
			}
		} else if (this.#transcoder && !sameH264Config(this.#transcoder.input, config)) {
			// New parameter sets (e.g. another resolution): a transcoder built for them.
			this.#startTranscode(this.#videoReason ?? 'transcoding', config, this.#maxPtsSent, []);
		}
	}

	#decide(config: VideoConfig, reorderSeen: boolean): void {
		const d = decideVideoPath(config, this.#policy, { reorderSeen });
		switch (d.action) {
			case 'reject':
				this.#reject(d.reason);
				return;
			case 'passthrough':
				this.#videoMode = 'passthrough';
				this.#videoReason = d.reason;
				this.#videoFinal = d.final;
				this.logger.info({ reason: d.reason, profileLevelId: d.profileLevelId }, 'video passthrough');
				this.publication.setVideoPath({ mode: 'passthrough', reason: d.reason }, null);
				this.#ensureVideoOut(d.profileLevelId);
				return;
			case 'transcode':
				this.#startTranscode(d.reason, config, this.#maxPtsSent, this.#gop);
				return;
		}
	}

	#reject(reason: string): void {
		this.#rejected = true;
		this.logger.warn({ reason }, 'publication rejected by video policy');
		this.publication.kick(reason);
	}

	#startTranscode(reason: string, config: VideoConfig, startAfterPts: number, initialFrames: readonly VideoFrame[]): void {
		if (this.#closed || this.#rejected || this.publication.ended) return;
		const wasPassthrough = this.#videoMode === 'passthrough';
		this.#videoMode = 'transcode';
		this.#videoReason = reason;
		this.#gop = [];
		this.#gopBytes = 0;
		const old = this.#transcoder;
		if (old) {
			this.#accumulateTranscoderStats(old);
			void old.close();
		}
		const t = this.#settings.transcode;
		const transcoder = VideoTranscoder.create({
			ffmpegPath: this.#settings.ffmpegPath,
			logger: this.logger,
			input: config,
			fps: this.publication.fps ?? config.fps ?? 30,
			preset: t.preset,
			bitrateKbps: t.videoBitrateKbps,
			keyframeIntervalMs: t.keyframeIntervalMs,
			initialFrames,
			startAfterPts: Number.isFinite(startAfterPts) ? startAfterPts : null,
			hooks: this.#hooks,
		});
		this.#transcoder = transcoder;
		transcoder.on('frame', (frame, outConfig) => this.#onTranscoded(transcoder, frame, outConfig));
		if (!this.#rendition) this.#rendition = new VideoRendition(this.logger);
		this.logger.info({ reason, switchedFromPassthrough: wasPassthrough }, 'video transcode');
		if (!old) this.publication.setVideoPath({ mode: 'transcode', reason }, this.#rendition);
		// A producer announced for the passthrough profile stays: Constrained
		// Baseline decodes wherever Baseline or Main did, and viewers keep it.
		this.#ensureVideoOut(this.#video?.profileLevelId ?? TRANSCODE_PROFILE_LEVEL_ID);
	}

	#accumulateTranscoderStats(t: VideoTranscoder): void {
		const s = t.stats;
		this.#oldTranscoderStats.restarts += s.decoderRestarts + s.encoderRestarts;
		this.#oldTranscoderStats.dropped += s.framesDroppedIn + s.rawDropped;
		this.#oldTranscoderStats.forced += s.keyframesForced;
	}

	#onVideo(frame: VideoFrame): void {
		if (this.#closed || this.#rejected) return;
		this.#clock.observe(frame.dts, wallFromPerf(frame.receivedAt));
		// Half a millisecond of slack: rounded timestamps are not reordering.
		const reordered = frame.pts < this.#maxPtsSeen - 0.5;
		if (frame.pts > this.#maxPtsSeen) this.#maxPtsSeen = frame.pts;
		if (this.#videoMode === 'transcode') {
			this.#transcoder?.push(frame);
			return;
		}
		if (this.#videoMode !== 'passthrough') return;
		if (!this.#videoFinal) {
			if (frame.keyframe) {
				this.#gop = [];
				this.#gopBytes = 0;
			}
			this.#gop.push(frame);
			for (const n of frame.nalus) this.#gopBytes += n.length;
			if (this.#gop.length > 1200 || this.#gopBytes > 32 * 1024 * 1024) {
				// A GOP this long is not worth keeping; a switch then waits for the next keyframe.
				this.#gop = [];
				this.#gopBytes = 0;
			}
			if (reordered) {
				const config = this.publication.video;
				if (config) {
					this.logger.info({ pts: frame.pts }, 'B-frames detected in a passthrough stream');
					this.#decide(config, true);
					if (this.#videoMode !== 'passthrough') return;
				}
				this.#videoFinal = true;
				this.#gop = [];
				this.#gopBytes = 0;
			}
		}
		const config = this.publication.video;
		if (config) this.#sendVideo(frame, config);
	}

	#onTranscoded(transcoder: VideoTranscoder, frame: VideoFrame, config: VideoConfig): void {
		if (this.#closed || transcoder !== this.#transcoder) return;
		const r = this.#rendition;
		if (r && !r.ended) {
			r.setConfig(config);
			r.push(frame);
		}
		this.#sendVideo(frame, config);
	}

	#sendVideo(frame: VideoFrame, config: VideoConfig): void {
		const v = this.#video;
		this.#vstats.frames++;
		if (!v?.link || v.link.closed || (v.needKeyframe && !frame.keyframe)) {
			this.#vstats.framesNotSent++;
			return;
		}
		v.needKeyframe = false;
		const ts = v.sender.timestampOf(frame.pts);
		if (v.sender.stats.packets === 0) this.#sendSenderReport(v.sender, v.link);
		const now = performance.now();
		v.packetizer.send(frame.nalus, ts, frame.keyframe, config);
		this.#delay.video.record(now - frame.receivedAt);
		this.#metrics?.observeBridgeDelay('video', now - frame.receivedAt);
		if (frame.pts > this.#maxPtsSent) this.#maxPtsSent = frame.pts;
	}

	#ensureVideoOut(profileLevelId: string): void {
		if (!this.#video) {
			const mtu = this.#settings.rtpMtu;
			const sender = new RtpSender({ payloadType: VIDEO_PAYLOAD_TYPE, clockRate: 90000, maxPacketSize: mtu - IP_UDP_OVERHEAD });
			this.#video = {
				sender,
				packetizer: new H264Packetizer(sender, maxRtpPayload(mtu)),
				link: null,
				linking: null,
				profileLevelId,
				needKeyframe: true,
			};
		}
		const v = this.#video;
		if (v.link || v.linking) return;
		v.profileLevelId = profileLevelId;
		v.linking = this.#createLink('video', v).finally(() => {
			v.linking = null;
		});
	}

	#replaceVideoLink(profileLevelId: string): void {
		const v = this.#video;
		if (!v) return;
		v.link?.close();
		v.link = null;
		v.sender.setSink(null);
		if (v.linking) {
			// The link in progress is for the old profile; make another when it lands.
			void v.linking.then(() => this.#replaceVideoLink(profileLevelId));
			return;
		}
		this.#ensureVideoOut(profileLevelId);
	}

	// ---- audio -------------------------------------------------------------

	#onAudioConfig(config: AudioConfig): void {
		if (this.#closed || this.#rejected) return;
		if (config.codec === 'opus') {
			if (this.#opus) this.#retireOpus();
			this.#audioMode = 'opus-passthrough';
		} else {
			if (this.#opus) this.#retireOpus();
			this.#audioMode = 'aac-to-opus';
			this.#startOpus(config);
		}
		this.logger.info({ audioPath: this.#audioMode, codec: config.codec, sampleRate: config.sampleRate }, 'audio path');
		this.#ensureAudioOut();
	}

	#startOpus(config: AacConfig): void {
		const opus = OpusTranscoder.create({
			ffmpegPath: this.#settings.ffmpegPath,
			logger: this.logger,
			config,
			bitrate: this.#settings.opusBitrate,
			hooks: this.#hooks,
		});
		this.#opus = opus;
		opus.on('packet', (p) => {
			if (opus !== this.#opus) return;
			this.#sendAudio(p.data, p.pts, p.receivedAt);
		});
	}

	#retireOpus(): void {
		const o = this.#opus;
		if (!o) return;
		this.#oldOpusStats.restarts += o.stats.restarts;
		this.#oldOpusStats.dropped += o.stats.framesDropped;
		this.#opus = null;
		void o.close();
	}

	#onAudio(frame: AudioFrame): void {
		if (this.#closed || this.#rejected) return;
		this.#clock.observe(frame.pts, wallFromPerf(frame.receivedAt));
		if (this.#audioMode === 'aac-to-opus') this.#opus?.push(frame);
		else if (this.#audioMode === 'opus-passthrough') this.#sendAudio(frame.data, frame.pts, frame.receivedAt);
	}

	#sendAudio(data: Buffer, pts: number, receivedAt: number): void {
		const a = this.#audio;
		this.#astats.frames++;
		if (!a?.link || a.link.closed) {
			this.#astats.framesNotSent++;
			return;
		}
		if (data.length + 12 > a.sender.maxPacketSize) {
			this.#astats.framesNotSent++;
			return;
		}
		const ts = a.sender.timestampOf(pts);
		if (a.sender.stats.packets === 0) this.#sendSenderReport(a.sender, a.link);
		const now = performance.now();
		a.sender.sendPayload(data, false, ts);
		this.#delay.audio.record(now - receivedAt);
		this.#metrics?.observeBridgeDelay('audio', now - receivedAt);
	}

	#ensureAudioOut(): void {
		if (!this.#audio) {
			const sender = new RtpSender({ payloadType: AUDIO_PAYLOAD_TYPE, clockRate: 48000, maxPacketSize: AUDIO_MAX_PACKET, historySize: 256 });
			this.#audio = { sender, link: null, linking: null };
		}
		const a = this.#audio;
		if (a.link || a.linking) return;
		a.linking = this.#createLink('audio', a).finally(() => {
			a.linking = null;
		});
	}

	// ---- producers ---------------------------------------------------------

	#rtpParameters(kind: 'audio' | 'video', ssrc: number): RtpParameters {
		const rtcp = { cname: this.#cname, reducedSize: true, mux: true };
		if (kind === 'video') {
			return {
				codecs: [
					{
						mimeType: 'video/H264',
						payloadType: VIDEO_PAYLOAD_TYPE,
						clockRate: 90000,
						parameters: {
							'packetization-mode': 1,
							'profile-level-id': this.#video?.profileLevelId ?? TRANSCODE_PROFILE_LEVEL_ID,
							'level-asymmetry-allowed': 1,
						},
						rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
					},
				],
				encodings: [{ ssrc }],
				rtcp,
			};
		}
		return {
			codecs: [
				{
					mimeType: 'audio/opus',
					payloadType: AUDIO_PAYLOAD_TYPE,
					clockRate: 48000,
					channels: 2,
					parameters: { useinbandfec: 1, 'sprop-stereo': 1 },
					rtcpFeedback: [],
				},
			],
			encodings: [{ ssrc }],
			rtcp,
		};
	}

	async #createLink(kind: 'audio' | 'video', out: VideoOut | AudioOut): Promise<void> {
		let link: PlainLink;
		try {
			const { router } = await this.#routers.origin(this.stream.name);
			if (this.#closed) return;
			link = await PlainLink.create({
				router,
				kind,
				rtpParameters: this.#rtpParameters(kind, out.sender.ssrc),
				logger: this.logger,
				onRtcp: (fb) => this.#onRtcp(kind, fb),
				appData: { stream: this.stream.name, publication: this.publication.id },
			});
		} catch (err) {
			if (this.#closed) return;
			this.logger.error({ err, kind }, 'cannot create the bridge producer');
			if (kind === 'video' && this.#videoMode === 'passthrough') {
				// E.g. a profile the router cannot take after all: transcoding always can.
				const config = this.publication.video;
				if (config && (this.#video?.profileLevelId ?? '') !== TRANSCODE_PROFILE_LEVEL_ID) {
					if (this.#video) this.#video.profileLevelId = TRANSCODE_PROFILE_LEVEL_ID;
					queueMicrotask(() => this.#startTranscode('the router refused the published profile', config, this.#maxPtsSent, []));
				}
			}
			return;
		}
		if (this.#closed || this.#rejected) {
			link.close();
			return;
		}
		out.link = link;
		out.sender.setSink(link.send);
		// A rebuilt producer gets the timing at once, not at the next report.
		if (out.sender.stats.packets > 0) this.#sendSenderReport(out.sender, link);
		if ('needKeyframe' in out) {
			out.needKeyframe = true;
			this.#transcoder?.requestKeyframe();
		}
		this.logger.debug({ kind, producer: link.producer.id, ssrc: out.sender.ssrc }, 'bridge producer ready');
		this.#maybeAnnounce();
	}

	/** Announces the producers once every kind with a configuration has one (or after a short wait for a late kind). */
	#maybeAnnounce(): void {
		if (this.#closed) return;
		const vReady = !!this.#video?.link && !this.#video.link.closed;
		const aReady = !!this.#audio?.link && !this.#audio.link.closed;
		const vPending = this.#videoMode !== null && !vReady;
		const aPending = this.#audioMode !== null && !aReady;
		if (vPending || aPending) return;
		if (!vReady && !aReady) return;
		if ((!vReady || !aReady) && this.#announced.length === 0 && !this.#announceTimer) {
			this.#announceTimer = setTimeout(() => {
				this.#announceTimer = null;
				this.#announce();
			}, this.#settings.announceWaitMs ?? 1000);
			return;
		}
		if (this.#announceTimer && vReady && aReady) {
			clearTimeout(this.#announceTimer);
			this.#announceTimer = null;
		}
		if (!this.#announceTimer) this.#announce();
	}

	#announce(): void {
		if (this.#closed) return;
		const producers = [this.#video?.link, this.#audio?.link]
			.filter((l): l is PlainLink => !!l && !l.closed)
			.map((l) => l.producer);
		if (producers.length === 0) return;
		if (producers.length === this.#announced.length && producers.every((p, i) => p === this.#announced[i])) return;
		this.#announced = producers;
		this.logger.info({ producers: producers.map((p) => ({ id: p.id, kind: p.kind })) }, 'stream producers ready');
		this.#routers.setProducers(this.stream.name, producers).catch((err: unknown) => {
			this.logger.error({ err }, 'announcing producers failed');
		});
	}

	// ---- RTCP --------------------------------------------------------------

	#sendSenderReport(sender: RtpSender, link: PlainLink): void {
		const now = wallNow();
		const t = this.#clock.mediaTimeAt(now);
		if (t === null) return;
		link.send(
			buildSenderReport({
				ssrc: sender.ssrc,
				ntpMs: now,
				rtpTimestamp: sender.timestampOf(t),
				packetCount: sender.stats.packets,
				octetCount: sender.stats.payloadBytes,
				cname: this.#cname,
			}),
		);
		if (sender === this.#video?.sender) this.#vstats.senderReports++;
		else this.#astats.senderReports++;
	}

	#sendSenderReports(): void {
		if (this.#closed) return;
		for (const out of [this.#video, this.#audio]) {
			if (out?.link && !out.link.closed && out.sender.stats.packets > 0) this.#sendSenderReport(out.sender, out.link);
		}
	}

	#onRtcp(kind: 'audio' | 'video', feedback: RtcpFeedback[]): void {
		if (this.#closed) return;
		const out = kind === 'video' ? this.#video : this.#audio;
		const stats = kind === 'video' ? this.#vstats : this.#astats;
		if (!out) return;
		for (const fb of feedback) {
			switch (fb.type) {
				case 'pli':
				case 'fir':
					if (kind !== 'video' || fb.mediaSsrc !== out.sender.ssrc) break;
					if (fb.type === 'pli') this.#vstats.pli++;
					else this.#vstats.fir++;
					this.#onKeyframeRequest();
					break;
				case 'nack':
					if (fb.mediaSsrc !== out.sender.ssrc) break;
					stats.nacks++;
					for (const seq of fb.seqs) if (out.sender.retransmit(seq)) stats.retransmitted++;
					break;
				case 'sr':
				case 'rr':
				case 'other':
					break;
			}
		}
	}

	/**
	 * A viewer needs a keyframe. The transcoder can make one (rate-limited;
	 * a request inside the interval is served at its end, not dropped). A
	 * passthrough stream can only ask its publisher: a plain RTP sender gets
	 * a PLI; RTMP has no way back to the encoder, so there the request is
	 * counted and the viewer waits for the next keyframe of the GOP.
	 */
	#onKeyframeRequest(): void {
		if (this.#videoMode !== 'transcode' || !this.#transcoder) {
			const forwarded = this.publication.protocol === 'rtp' && (this.#upstreamKeyframe?.(this.stream.name) ?? false);
			if (forwarded) {
				this.#vstats.keyframeRequestsForwarded++;
				this.#metrics?.keyframeRequest(this.stream.name, 'forced');
			} else {
				this.#vstats.keyframeRequestsNotHonoured++;
				this.#metrics?.keyframeRequest(this.stream.name, this.publication.protocol === 'rtp' ? 'rate_limited' : 'ignored');
			}
			return;
		}
		const min = this.#settings.keyframeRequestMinIntervalMs;
		const wait = this.#lastForcedAt + min - performance.now();
		if (wait <= 0 && !this.#deferredKeyframe) {
			this.#metrics?.keyframeRequest(this.stream.name, 'forced');
			this.#forceKeyframe();
			return;
		}
		this.#metrics?.keyframeRequest(this.stream.name, 'rate_limited');
		if (this.#deferredKeyframe) return;
		this.#deferredKeyframe = setTimeout(() => {
			this.#deferredKeyframe = null;
			this.#forceKeyframe();
		}, wait);
	}

	#forceKeyframe(): void {
		if (this.#closed || !this.#transcoder) return;
		this.#lastForcedAt = performance.now();
		this.#vstats.keyframesForced++;
		this.#transcoder.requestKeyframe();
	}

	// ---- lifecycle ---------------------------------------------------------

	/**
	 * The origin router died with its worker: its transports and producers
	 * are gone. Builds new ones on a new origin router, with the same SSRCs
	 * and continuing sequence numbers, and announces them again.
	 */
	async rebuild(): Promise<void> {
		if (this.#closed || this.#rebuilding) return;
		this.#rebuilding = true;
		try {
			for (const out of [this.#video, this.#audio]) {
				out?.link?.close();
				if (out) {
					out.link = null;
					out.sender.setSink(null);
				}
			}
			this.#announced = [];
			for (let attempt = 0; attempt < 40 && !this.#closed; attempt++) {
				try {
					await this.#routers.origin(this.stream.name);
					break;
				} catch (err) {
					if (attempt === 0) this.logger.warn({ err }, 'no origin router yet; retrying');
					await new Promise((r) => setTimeout(r, 250));
				}
			}
			if (this.#closed) return;
			await Promise.all([this.#video?.linking, this.#audio?.linking]);
			if (this.#video) this.#ensureVideoOut(this.#video.profileLevelId);
			if (this.#audio) this.#ensureAudioOut();
			await Promise.all([this.#video?.linking, this.#audio?.linking]);
			this.logger.info('bridge producers rebuilt on a new origin router');
		} finally {
			this.#rebuilding = false;
		}
	}

	stats(): BridgeSessionStats {
		const vt = this.#transcoder?.stats ?? null;
		const ot = this.#opus?.stats ?? null;
		const vs = this.#video?.sender.stats;
		const as = this.#audio?.sender.stats;
		return {
			stream: this.stream.name,
			publication: this.publication.id,
			videoPath: this.#videoMode,
			audioPath: this.#audioMode,
			video: {
				...this.#vstats,
				packets: vs?.packets ?? 0,
				bytes: vs?.bytes ?? 0,
				keyframesForced: this.#vstats.keyframesForced,
			},
			audio: { ...this.#astats, packets: as?.packets ?? 0, bytes: as?.bytes ?? 0 },
			transcoderRestarts:
				this.#oldTranscoderStats.restarts +
				this.#oldOpusStats.restarts +
				(vt ? vt.decoderRestarts + vt.encoderRestarts : 0) +
				(ot?.restarts ?? 0),
			framesDropped:
				this.#oldTranscoderStats.dropped +
				this.#oldOpusStats.dropped +
				(vt ? vt.framesDroppedIn + vt.rawDropped : 0) +
				(ot?.framesDropped ?? 0),
			videoTranscoder: vt ? { ...vt } : null,
			opusTranscoder: ot ? { ...ot } : null,
			addedDelayMs: { video: this.#delay.video.snapshot(), audio: this.#delay.audio.snapshot() },
		};
	}

	info(): BridgeStreamInfo {
		const v = this.#delay.video.snapshot();
		const a = this.#delay.audio.snapshot();
		return {
			videoPath: this.#videoMode,
			reason: this.#videoReason,
			audioPath: this.#audioMode,
			ready: this.#announced.length > 0,
			videoProfileLevelId: this.#video?.profileLevelId ?? null,
			keyframeRequests: { pli: this.#vstats.pli, fir: this.#vstats.fir, forced: this.#vstats.keyframesForced },
			addedDelayMs: { video: { p50: v.p50, p99: v.p99 }, audio: { p50: a.p50, p99: a.p99 } },
		};
	}

	/** Closes producers, transports, sockets and children. Idempotent. */
	async close(reason: string): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		for (const t of [this.#srTimer, this.#announceTimer, this.#deferredKeyframe]) if (t) clearTimeout(t);
		this.#srTimer = null;
		this.#announceTimer = null;
		this.#deferredKeyframe = null;
		// Only clear the stream's producers if they are still ours: a new
		// publisher may already have announced its own.
		const current = this.#routers.producers(this.stream.name);
		if (current.length > 0 && current.every((p) => this.#announced.includes(p))) {
			this.#routers.clearProducers(this.stream.name, reason);
		}
		for (const out of [this.#video, this.#audio]) {
			out?.link?.close();
			out?.sender.setSink(null);
		}
		this.#gop = [];
		this.#rendition?.end();
		await Promise.all([this.#transcoder?.close(), this.#opus?.close()]);
		this.logger.debug({ reason }, 'bridge session closed');
	}
}
