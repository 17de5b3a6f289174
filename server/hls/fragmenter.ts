import { TypedEmitter } from '../common/emitter.js';
import type { AacConfig } from '../core/codecs/audio.js';
import { sameH264Config, toLengthPrefixed } from '../core/codecs/h264.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../core/media.js';
import {
	AUDIO_TRACK_ID,
	VIDEO_TRACK_ID,
	aacFrameDuration,
	initSegment,
	mediaFragment,
} from './fmp4.js';
import type { FragmentSample, FragmentTrack, TrackSet } from './fmp4.js';

export interface FragmenterOptions {
	/** Parts are cut so that they last at most this long (when frame spacing allows). */
	partTargetMs: number;
	/** Segments are cut at the first keyframe at least this far into the segment. */
	segmentTargetMs: number;
	/** A segment is cut even without a keyframe past this (a broken or endless GOP). */
	maxSegmentMs?: number;
	/** Audio-only output starts after this much audio with no video configuration. */
	audioOnlyAfterMs?: number;
	/**
	 * A publication's first keyframe waits this long (video time) for an audio
	 * configuration, so that audio that starts a little after the video (RTP
	 * ingest) does not force a second init segment a GOP later.
	 */
	audioWaitMs?: number;
}

/** A run of output with one init segment: a new one starts at a keyframe. */
export interface FragmenterEpoch {
	index: number;
	tracks: TrackSet;
	init: Buffer;
	/** Media time (ms) the epoch starts at. */
	startMs: number;
}

export interface FragmenterPart {
	epoch: number;
	/** moof + mdat. */
	data: Buffer;
	/** Media time (ms) of the first sample on the clock track (video if any). */
	startMs: number;
	durationMs: number;
	/** Starts with a keyframe (or is audio only). */
	independent: boolean;
	/** The first part of a new segment. */
	segmentStart: boolean;
	/** performance.now() when the part's first frame reached the server. */
	firstReceivedAt: number;
	videoSamples: number;
	audioSamples: number;
}

export interface FragmenterEvents extends Record<string, unknown[]> {
	epoch: [epoch: FragmenterEpoch];
	part: [part: FragmenterPart];
	/** The segment the last part belongs to is complete. */
	segmentEnd: [];
}

export interface FragmenterStats {
	videoFrames: number;
	audioFrames: number;
	/** Video frames dropped while waiting for a keyframe to start an epoch. */
	droppedVideo: number;
	/** Audio frames dropped: before the epoch start, overlapping, or with no audio track. */
	droppedAudio: number;
	/** Video decode times that did not increase and were nudged forward. */
	timestampFixes: number;
	parts: number;
	segments: number;
	epochs: number;
}

interface PendingVideo {
	dtsMs: number;
	dtsT: number;
	ptsT: number;
	keyframe: boolean;
	data: Buffer;
	receivedAt: number;
}

interface PendingAudio {
	t: number;
	data: Buffer;
	receivedAt: number;
}

interface ActiveEpoch {
	index: number;
	tracks: TrackSet;
	/** Added to publisher times to get media times (ms). */
	offsetMs: number;
	startMs: number;
	audioFrameTicks: number;
	audioRate: number;
}

/** A jump in publisher time this large (ms) is a new timeline, not a pause. */
const TIMELINE_JUMP_MS = 5_000;
const AUDIO_LOOKBACK_FRAMES = 64;
const MAX_HELD_FRAMES = 120;

/**
 * Turns timestamped frames into fMP4 parts and segments for LL-HLS. Pure
 * and synchronous: the caller feeds frames from the publisher's event loop
 * turn and gets 'epoch', 'part' and 'segmentEnd' events back at once.
 *
 * Video is the clock when there is video: parts are cut so that they do not
 * exceed the part target, segments at the first keyframe past the segment
 * target. Audio rides along: each part carries the audio that arrived since
 * the previous one, on its own continuous timeline. A change of codec
 * configuration, of video source or of publisher starts a new epoch (new init
 * segment) at the next keyframe, with media time kept monotonic across it.
 */
export class Fragmenter extends TypedEmitter<FragmenterEvents> {
	readonly stats: FragmenterStats = {
		videoFrames: 0,
		audioFrames: 0,
		droppedVideo: 0,
		droppedAudio: 0,
		timestampFixes: 0,
		parts: 0,
		segments: 0,
		epochs: 0,
	};
	readonly #opts: Required<FragmenterOptions>;
	#desired: TrackSet = { video: null, audio: null };
	#epoch: ActiveEpoch | null = null;
	/** Start a new epoch at the next sync point. */
	#restart = true;
	/** The current epoch was finished: nothing more is added to it. */
	#closed = false;
	/** Video held from a publication's first keyframe while audio may still announce itself. */
	#held: VideoFrame[] = [];
	#awaitAudio = true;
	#fragmentSeq = 1;
	#pendingVideo: PendingVideo[] = [];
	#pendingAudio: PendingAudio[] = [];
	/** Audio seen while waiting for the first keyframe of an epoch. */
	#audioLookback: AudioFrame[] = [];
	#audioWaitStart: number | null = null;
	#segmentOpen = false;
	#segmentStartMs = 0;
	#lastIntervalMs = 40;
	/** Where the next audio sample of this epoch starts, in audio ticks. */
	#audioNextT: number | null = null;
	/** End of everything emitted so far, in media ms (for continuity across epochs). */
	#videoEndMs: number | null = null;
	#audioEndMs: number | null = null;

	constructor(opts: FragmenterOptions) {
		super();
		this.#opts = {
			maxSegmentMs: Math.max(20_000, opts.segmentTargetMs * 4),
			audioOnlyAfterMs: 1_500,
			audioWaitMs: 750,
			...opts,
		};
	}

	get epoch(): Readonly<ActiveEpoch> | null {
		return this.#epoch;
	}

	get tracks(): TrackSet {
		return this.#desired;
	}

	/** Sets the video configuration; a change takes effect at the next keyframe. */
	setVideoConfig(config: VideoConfig | null): void {
		const cur = this.#desired.video;
		if (cur === config || (cur && config && sameH264Config(cur, config))) return;
		// Held frames belong to the configuration they were encoded with.
		if (this.#held.length > 0) this.#releaseHeld();
		this.#desired = { ...this.#desired, video: config };
		if (this.#epoch && !sameVideo(this.#epoch.tracks.video, config)) this.#restart = true;
	}

	/** Sets the audio configuration (AAC); a change takes effect at the next keyframe. */
	setAudioConfig(config: AacConfig | null): void {
		const cur = this.#desired.audio;
		if (cur === config || (cur && config && sameAac(cur, config))) return;
		this.#desired = { ...this.#desired, audio: config };
		this.#audioLookback = [];
		this.#audioWaitStart = null;
		if (this.#epoch && !sameAudioTrack(this.#epoch.tracks.audio, config)) this.#restart = true;
		if (config && this.#held.length > 0) this.#releaseHeld();
	}

	/** Starts the epoch the held keyframe was waiting for, with whatever audio there is. */
	#releaseHeld(): void {
		const held = this.#held;
		this.#held = [];
		const first = held[0];
		if (!first || !this.#desired.video) return;
		this.#startEpoch(first.dts, first.pts);
		const epoch = this.#running();
		if (!epoch?.tracks.video) return;
		for (const f of held) this.#appendVideo(f, epoch);
	}

	/** Starts a new epoch at the next keyframe even if no configuration changed (source switch). */
	requestNewEpoch(): void {
		this.#restart = true;
	}

	/**
	 * Emits what is pending and closes the segment (publisher gone, stream
	 * end). The next frames start a new epoch.
	 */
	finish(): void {
		if (this.#held.length > 0) this.#releaseHeld();
		if (this.#epoch && !this.#closed) this.#closeSegment(null);
		this.#closed = true;
		this.#awaitAudio = true;
		this.#restart = true;
		this.#audioLookback = [];
		this.#audioWaitStart = null;
	}

	/** The epoch frames may still be added to (not finished). */
	#running(): ActiveEpoch | null {
		return this.#closed ? null : this.#epoch;
	}

	pushVideo(frame: VideoFrame): void {
		this.stats.videoFrames++;
		const desired = this.#desired.video;
		if (!desired || frame.nalus.length === 0) {
			this.stats.droppedVideo++;
			return;
		}
		if (this.#held.length > 0) {
			this.#held.push(frame);
			const first = this.#held[0] as VideoFrame;
			const waited = frame.dts - first.dts;
			// Bounded in frames too, in case the timestamps do not move.
			if (this.#desired.audio || waited >= this.#opts.audioWaitMs || this.#held.length >= MAX_HELD_FRAMES) this.#releaseHeld();
			return;
		}
		const running = this.#running();
		if (!this.#restart && running?.tracks.video) {
			this.#appendVideo(frame, running);
			return;
		}
		if (frame.keyframe && this.#awaitAudio && !this.#desired.audio && this.#opts.audioWaitMs > 0) {
			this.#held = [frame];
			return;
		}
		if (frame.keyframe) {
			this.#startEpoch(frame.dts, frame.pts);
			const started = this.#running();
			if (started?.tracks.video) this.#appendVideo(frame, started);
			return;
		}
		if (running?.tracks.video) {
			// Until the keyframe the new configuration (or source) starts with, frames
			// still decode with the running epoch's parameter sets.
			this.#appendVideo(frame, running);
			return;
		}
		this.stats.droppedVideo++;
	}

	pushAudio(frame: AudioFrame): void {
		this.stats.audioFrames++;
		const audio = this.#desired.audio;
		if (!audio || frame.data.length === 0) {
			this.stats.droppedAudio++;
			return;
		}
		let running = this.#running();
		const fits = running !== null && sameAudioTrack(running.tracks.audio, audio);
		if (this.#restart || !running || !fits) {
			if (this.#desired.video) {
				// The next epoch starts at a video keyframe; keep the audio that may
				// belong after it, and the running epoch's audio going meanwhile.
				this.#audioLookback.push(frame);
				if (this.#audioLookback.length > AUDIO_LOOKBACK_FRAMES) this.#audioLookback.shift();
				if (running && fits) {
					if (!running.tracks.video) this.#audioClock(frame, running);
					this.#appendAudio(frame, running);
				}
				return;
			}
			// No video: audio alone, once it is clear no video configuration is coming
			// (at the very start, where RTP audio often arrives before the first keyframe).
			this.#audioWaitStart ??= frame.pts;
			if (this.stats.epochs === 0 && frame.pts - this.#audioWaitStart < this.#opts.audioOnlyAfterMs) {
				this.stats.droppedAudio++;
				return;
			}
			this.#startEpoch(frame.pts, frame.pts);
			running = this.#running();
			if (!running?.tracks.audio) {
				this.stats.droppedAudio++;
				return;
			}
		}
		if (!running.tracks.video) this.#audioClock(frame, running);
		this.#appendAudio(frame, running);
	}

	#startEpoch(dts: number, pts: number): void {
		const prev = this.#epoch;
		if (prev && !this.#closed) {
			// On the same publisher timeline the new keyframe ends the last frame exactly.
			this.#closeSegment(dts + prev.offsetMs);
		}
		const tracks: TrackSet = { video: this.#desired.video, audio: this.#desired.audio };
		if (!tracks.video && !tracks.audio) return;
		const ref = this.#videoEndMs ?? this.#audioEndMs;
		let offsetMs: number;
		if (ref === null) {
			offsetMs = dts < 0 ? -dts : 0;
		} else if (prev && dts + prev.offsetMs >= ref - 0.5 && dts + prev.offsetMs - ref < TIMELINE_JUMP_MS) {
			offsetMs = prev.offsetMs;
		} else {
			// A new timeline (another publisher, a jump) or an overlap (a transcoder
			// lagging behind the original): continue right where the output ended.
			offsetMs = ref - dts;
		}
		const epoch: ActiveEpoch = {
			index: this.stats.epochs++,
			tracks,
			offsetMs,
			startMs: dts + offsetMs,
			audioFrameTicks: tracks.audio ? aacFrameDuration(tracks.audio) : 1,
			audioRate: tracks.audio?.sampleRate ?? 1,
		};
		this.#epoch = epoch;
		this.#closed = false;
		this.#restart = false;
		this.#awaitAudio = false;
		this.#pendingVideo = [];
		this.#pendingAudio = [];
		this.#audioNextT = null;
		this.#segmentOpen = false;
		this.#segmentStartMs = epoch.startMs;
		this.emit('epoch', { index: epoch.index, tracks, init: initSegment(tracks), startMs: epoch.startMs });
		const lookback = this.#audioLookback;
		this.#audioLookback = [];
		this.#audioWaitStart = null;
		if (tracks.audio && tracks.video) {
			for (const a of lookback) if (a.pts >= pts - 1) this.#appendAudio(a, epoch);
		}
	}

	#appendVideo(frame: VideoFrame, epoch: ActiveEpoch): void {
		let dtsMs = frame.dts + epoch.offsetMs;
		const last = this.#pendingVideo[this.#pendingVideo.length - 1];
		const lastDtsMs = last?.dtsMs ?? this.#videoEndMs;
		if (lastDtsMs !== null && lastDtsMs !== undefined) {
			const gap = dtsMs - lastDtsMs;
			if (gap > TIMELINE_JUMP_MS || gap < -1_000) {
				// The publisher's clock jumped: start over on a continuous timeline.
				this.finish();
				if (!frame.keyframe) {
					this.stats.droppedVideo++;
					return;
				}
				this.#startEpoch(frame.dts, frame.pts);
				const restarted = this.#running();
				if (restarted) this.#appendVideo(frame, restarted);
				return;
			}
		}
		let dtsT = Math.round(dtsMs * 90);
		if (last && dtsT <= last.dtsT) {
			this.stats.timestampFixes++;
			dtsT = last.dtsT + 1;
			dtsMs = dtsT / 90;
		}
		const ptsT = Math.round((frame.pts + epoch.offsetMs) * 90);
		if (last) {
			const interval = dtsMs - last.dtsMs;
			if (interval > 0 && interval < 1_000) this.#lastIntervalMs = interval;
			const first = this.#pendingVideo[0] as PendingVideo;
			const segElapsed = dtsMs - this.#segmentStartMs;
			const cutSegment =
				(frame.keyframe && segElapsed + this.#lastIntervalMs / 2 >= this.#opts.segmentTargetMs) ||
				segElapsed >= this.#opts.maxSegmentMs;
			const cutPart = cutSegment || dtsMs - first.dtsMs + this.#lastIntervalMs > this.#opts.partTargetMs + 0.5;
			if (cutPart) {
				this.#emitPart(dtsMs, epoch);
				if (cutSegment) this.#endSegment();
			}
		}
		if (!this.#segmentOpen && this.#pendingVideo.length === 0) this.#segmentStartMs = dtsMs;
		this.#pendingVideo.push({
			dtsMs,
			dtsT,
			ptsT,
			keyframe: frame.keyframe,
			data: toLengthPrefixed(frame.nalus),
			receivedAt: frame.receivedAt,
		});
	}

	/** Part and segment cuts for audio-only epochs: every AAC frame is a sync point. */
	#audioClock(frame: AudioFrame, epoch: ActiveEpoch): void {
		const first = this.#pendingAudio[0];
		if (!first) {
			if (!this.#segmentOpen) this.#segmentStartMs = frame.pts + epoch.offsetMs;
			return;
		}
		const tMs = frame.pts + epoch.offsetMs;
		const frameMs = (epoch.audioFrameTicks * 1000) / epoch.audioRate;
		const firstMs = (first.t * 1000) / epoch.audioRate;
		const segElapsed = tMs - this.#segmentStartMs;
		const cutSegment = segElapsed + frameMs / 2 >= this.#opts.segmentTargetMs;
		if (cutSegment || tMs - firstMs + frameMs > this.#opts.partTargetMs + 0.5) {
			this.#emitPart(null, epoch);
			if (cutSegment) {
				this.#endSegment();
				this.#segmentStartMs = tMs;
			}
		}
	}

	#appendAudio(frame: AudioFrame, epoch: ActiveEpoch): void {
		const rate = epoch.audioRate;
		const dur = epoch.audioFrameTicks;
		let t = Math.round(((frame.pts + epoch.offsetMs) * rate) / 1000);
		let floor = this.#audioNextT;
		if (floor === null) {
			const startT = Math.round((epoch.startMs * rate) / 1000);
			if (t < startT - dur / 2) {
				this.stats.droppedAudio++;
				return;
			}
			// Decode times never go below the epoch's start (nor below zero).
			t = Math.max(t, startT);
			// Never behind what an earlier epoch already covered.
			if (this.#audioEndMs !== null) floor = Math.ceil((this.#audioEndMs * rate) / 1000);
		}
		if (floor !== null) {
			const diff = t - floor;
			if (diff < -dur / 2) {
				this.stats.droppedAudio++;
				return;
			}
			// Millisecond timestamps jitter around the true sample clock: snap to it.
			if (diff <= dur / 2) t = floor;
		}
		this.#pendingAudio.push({ t, data: frame.data, receivedAt: frame.receivedAt });
		this.#audioNextT = t + dur;
	}

	/** Emits the pending samples as a part; `endMs` ends the last video sample. */
	#emitPart(endMs: number | null, epoch: ActiveEpoch): void {
		const video = this.#pendingVideo;
		const audio = this.#pendingAudio;
		if (video.length === 0 && audio.length === 0) return;
		this.#pendingVideo = [];
		this.#pendingAudio = [];
		const tracks: FragmentTrack[] = [];
		let startMs: number;
		let durationMs: number;
		let independent: boolean;
		let firstReceivedAt: number;
		const lastVideo = video[video.length - 1];
		if (lastVideo && video[0]) {
			let endT = endMs !== null ? Math.round(endMs * 90) : lastVideo.dtsT + Math.round(this.#lastIntervalMs * 90);
			if (endT <= lastVideo.dtsT) endT = lastVideo.dtsT + Math.max(1, Math.round(this.#lastIntervalMs * 90));
			const samples: FragmentSample[] = video.map((v, i) => ({
				data: v.data,
				duration: (video[i + 1]?.dtsT ?? endT) - v.dtsT,
				cto: v.ptsT - v.dtsT,
				sync: v.keyframe,
			}));
			tracks.push({ trackId: VIDEO_TRACK_ID, baseMediaDecodeTime: video[0].dtsT, samples, video: true });
			startMs = video[0].dtsT / 90;
			durationMs = (endT - video[0].dtsT) / 90;
			independent = video[0].keyframe;
			firstReceivedAt = video[0].receivedAt;
			this.#videoEndMs = endT / 90;
		} else {
			const first = audio[0] as PendingAudio;
			const lastA = audio[audio.length - 1] as PendingAudio;
			startMs = (first.t * 1000) / epoch.audioRate;
			durationMs = ((lastA.t + epoch.audioFrameTicks - first.t) * 1000) / epoch.audioRate;
			independent = true;
			firstReceivedAt = first.receivedAt;
		}
		const firstAudio = audio[0];
		if (firstAudio) {
			const samples: FragmentSample[] = audio.map((a, i) => ({
				data: a.data,
				duration: (audio[i + 1]?.t ?? a.t + epoch.audioFrameTicks) - a.t,
			}));
			tracks.push({ trackId: AUDIO_TRACK_ID, baseMediaDecodeTime: firstAudio.t, samples, video: false });
			const lastA = audio[audio.length - 1] as PendingAudio;
			this.#audioEndMs = ((lastA.t + epoch.audioFrameTicks) * 1000) / epoch.audioRate;
		}
		const segmentStart = !this.#segmentOpen;
		this.#segmentOpen = true;
		this.stats.parts++;
		this.emit('part', {
			epoch: epoch.index,
			data: mediaFragment(this.#fragmentSeq++, tracks),
			startMs,
			durationMs,
			independent,
			segmentStart,
			firstReceivedAt,
			videoSamples: video.length,
			audioSamples: audio.length,
		});
	}

	#endSegment(): void {
		if (!this.#segmentOpen) return;
		this.#segmentOpen = false;
		this.stats.segments++;
		this.emit('segmentEnd');
	}

	/** Emits what is pending and ends the segment; `endMs` ends the last video frame if known. */
	#closeSegment(endMs: number | null): void {
		const epoch = this.#epoch;
		if (!epoch) return;
		const last = this.#pendingVideo[this.#pendingVideo.length - 1];
		// Only trust the end time when it is a plausible next-frame time.
		const end = last && endMs !== null && endMs > last.dtsMs && endMs - last.dtsMs < this.#lastIntervalMs * 4 ? endMs : null;
		this.#emitPart(end, epoch);
		this.#endSegment();
	}
}

function sameVideo(a: VideoConfig | null, b: VideoConfig | null): boolean {
	if (a === null || b === null) return a === b;
	return sameH264Config(a, b);
}

function sameAac(a: AacConfig, b: AacConfig): boolean {
	return a.asc.equals(b.asc) && a.sampleRate === b.sampleRate && a.channels === b.channels;
}

function sameAudioTrack(a: AacConfig | null, b: AacConfig | null): boolean {
	if (a === null || b === null) return a === b;
	return sameAac(a, b);
}
