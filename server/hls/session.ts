import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../common/emitter.js';
import type { Logger } from '../common/logger.js';
import type { AudioConfig, AudioFrame, VideoConfig, VideoFrame } from '../core/media.js';
import type { Publication, VideoPath, VideoRendition } from '../core/stream.js';
import type { HlsDiskStore } from './disk-store.js';
import { Fragmenter } from './fragmenter.js';
import type { FragmenterEpoch, FragmenterPart, FragmenterStats } from './fragmenter.js';
import { initName, newSessionId, partName, segmentName } from './names.js';
import { OpusAacTranscoder } from './opus-aac.js';
import { renderPlaylist } from './playlist.js';
import type { PlaylistModel, PlaylistSegment } from './playlist.js';

export interface HlsSessionOptions {
	stream: string;
	partTargetMs: number;
	segmentTargetMs: number;
	windowSegments: number;
	ffmpegPath: string;
	store: HlsDiskStore;
	logger: Logger;
	/** Called with every Opus-to-AAC transcoder started (metrics). */
	onTranscoder?: (t: OpusAacTranscoder) => void;
}

/** A partial segment (LL-HLS part) as served. */
export interface HlsPart {
	/** Counts parts across segments: the file name's number. */
	seq: number;
	name: string;
	msn: number;
	/** Index within its segment (the _HLS_part of blocking reloads). */
	index: number;
	durationMs: number;
	independent: boolean;
	/** Null once the part has aged out of memory. */
	data: Buffer | null;
	/** performance.now() when the part became available. */
	createdAt: number;
}

export interface HlsSegment {
	msn: number;
	name: string;
	initName: string;
	discontinuity: boolean;
	/** Wall clock (ms) of the first frame. */
	programDateTime: number;
	durationMs: number;
	independent: boolean;
	parts: HlsPart[];
	complete: boolean;
	bytes: number;
	/** The parts' bytes, while the segment is served from memory; null after. */
	chunks: Buffer[] | null;
	completedAt: number | null;
}

export interface HlsSessionEvents extends Record<string, unknown[]> {
	part: [part: Readonly<HlsPart>];
	segment: [segment: Readonly<HlsSegment>];
	init: [name: string];
	end: [];
}

/** Segments, besides the one being written, whose parts are listed in the playlist. */
const PART_LIST_SEGMENTS = 2;
/** Complete segments kept in memory (parts too): a player a little behind is still served fast. */
const MEMORY_SEGMENTS = 3;
/** A program date time this far (ms) from the arrival clock is re-anchored. */
const PDT_RESYNC_MS = 1_000;

interface Waiter {
	ready: () => boolean;
	done: () => void;
}

type VideoSource = 'original' | VideoRendition;

/**
 * One continuous HLS playlist of a stream: from its first publish until it
 * ends, across publisher takeovers (each a discontinuity). Feeds the
 * publication's frames to a Fragmenter, keeps the live edge in memory,
 * writes complete segments to disk, slides the window, renders the
 * playlist and wakes blocked requests the moment what they wait for exists.
 */
export class HlsSession extends TypedEmitter<HlsSessionEvents> {
	readonly stream: string;
	readonly sid = newSessionId();
	readonly startedAt = Date.now();
	readonly #opts: HlsSessionOptions;
	readonly #logger: Logger;
	readonly #fragmenter: Fragmenter;
	readonly #segments: HlsSegment[] = [];
	readonly #parts = new Map<number, HlsPart>();
	readonly #inits = new Map<string, Buffer>();
	readonly #waiters = new Set<Waiter>();
	#open: HlsSegment | null = null;
	/** The newest segment (kept even after the window slid past it, for PDT continuity). */
	#newestSegment: HlsSegment | null = null;
	/** This run's program date time minus arrival time (see #openSegment). */
	#pdtShift = 0;
	#currentInit: string | null = null;
	#nextMsn = 0;
	#nextPartSeq = 0;
	#discontinuityNext = false;
	#discontinuitySequence = 0;
	#targetDurationS: number;
	#maxPartMs = 0;
	#ended = false;
	#closed = false;
	#publication: Publication | null = null;
	#unsubscribe: (() => void) | null = null;
	#transcoder: OpusAacTranscoder | null = null;
	readonly #closing = new Set<Promise<void>>();
	#videoSource: VideoSource = 'original';
	#pendingSource: VideoSource | null = null;
	readonly #renditions = new Map<VideoRendition, () => void>();

	constructor(opts: HlsSessionOptions) {
		super();
		this.stream = opts.stream;
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'hls', stream: opts.stream, session: this.sid });
		this.setListenerErrorLogger(this.#logger);
		this.#targetDurationS = Math.max(1, Math.ceil(opts.segmentTargetMs / 1000));
		this.#fragmenter = new Fragmenter({ partTargetMs: opts.partTargetMs, segmentTargetMs: opts.segmentTargetMs });
		this.#fragmenter.on('epoch', (e) => this.#onEpoch(e));
		this.#fragmenter.on('part', (p) => this.#onPart(p));
		this.#fragmenter.on('segmentEnd', () => this.#onSegmentEnd());
	}

	get ended(): boolean {
		return this.#ended;
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Live: publishing, or between a publisher leaving and its takeover. */
	get live(): boolean {
		return !this.#ended && !this.#closed;
	}

	get publication(): Publication | null {
		return this.#publication;
	}

	get fragmenterStats(): Readonly<FragmenterStats> {
		return this.#fragmenter.stats;
	}

	get transcoder(): OpusAacTranscoder | null {
		return this.#transcoder;
	}

	/** The segments in the window, oldest first, the one being written last. */
	get segments(): readonly HlsSegment[] {
		return this.#segments;
	}

	/** Whether there is anything to put in a playlist yet. */
	get hasMedia(): boolean {
		return this.#segments.length > 0;
	}

	get nextPartSeq(): number {
		return this.#nextPartSeq;
	}

	get waiting(): number {
		return this.#waiters.size;
	}

	// ---------------------------------------------------------------- input

	/** Packages this publication from now on (the first one, or a takeover). */
	attach(pub: Publication): void {
		if (this.#closed || this.#ended) return;
		this.#detach();
		// Whatever the last publisher left is complete; the newcomer starts a new epoch.
		this.#fragmenter.finish();
		this.#publication = pub;
		this.#videoSource = 'original';
		this.#pendingSource = null;
		this.#fragmenter.setVideoConfig(null);
		this.#fragmenter.setAudioConfig(null);
		this.#fragmenter.requestNewEpoch();
		const onVideoConfig = (c: VideoConfig): void => {
			if (this.#videoSource === 'original') this.#fragmenter.setVideoConfig(c);
		};
		const onAudioConfig = (c: AudioConfig): void => this.#setAudio(c);
		const onVideo = (f: VideoFrame): void => this.#onOriginalVideo(pub, f);
		const onAudio = (f: AudioFrame): void => this.#onAudio(f);
		const onPath = (path: VideoPath, rendition: VideoRendition | null): void => this.#onVideoPath(path, rendition);
		pub.on('videoConfig', onVideoConfig);
		pub.on('audioConfig', onAudioConfig);
		pub.on('video', onVideo);
		pub.on('audio', onAudio);
		pub.on('videoPath', onPath);
		this.#unsubscribe = () => {
			pub.off('videoConfig', onVideoConfig);
			pub.off('audioConfig', onAudioConfig);
			pub.off('video', onVideo);
			pub.off('audio', onAudio);
			pub.off('videoPath', onPath);
		};
		if (pub.video) onVideoConfig(pub.video);
		if (pub.audio) onAudioConfig(pub.audio);
		if (pub.videoPath) onPath(pub.videoPath, pub.rendition);
		this.#logger.debug({ publication: pub.id }, 'packaging publication');
	}

	/** The publication ended: package what is pending and wait for a takeover or end(). */
	publicationEnded(pub: Publication): void {
		if (pub !== this.#publication) return;
		this.#detach();
		this.#fragmenter.finish();
	}

	#detach(): void {
		this.#unsubscribe?.();
		this.#unsubscribe = null;
		this.#publication = null;
		this.#closeTranscoder();
		this.#videoSource = 'original';
		this.#pendingSource = null;
		this.#pruneRenditions();
	}

	#closeTranscoder(): void {
		const t = this.#transcoder;
		if (!t) return;
		this.#transcoder = null;
		const p = t.close().catch((err: unknown) => this.#logger.warn({ err }, 'could not close the Opus transcoder'));
		this.#closing.add(p);
		void p.finally(() => this.#closing.delete(p));
	}

	#setAudio(c: AudioConfig): void {
		this.#closeTranscoder();
		if (c.codec === 'aac') {
			this.#fragmenter.setAudioConfig(c);
			return;
		}
		// Opus: AAC is what every HLS player decodes (see docs/hls.md).
		try {
			const t = OpusAacTranscoder.create({ ffmpegPath: this.#opts.ffmpegPath, channels: c.channels, logger: this.#logger });
			t.on('frame', (f) => {
				if (this.#transcoder === t) this.#fragmenter.pushAudio(f);
			});
			this.#transcoder = t;
			this.#fragmenter.setAudioConfig(t.config);
			this.#opts.onTranscoder?.(t);
		} catch (err) {
			this.#logger.warn({ err }, 'cannot convert this Opus audio for HLS: the playlist carries video only');
			this.#fragmenter.setAudioConfig(null);
		}
	}

	#onAudio(f: AudioFrame): void {
		if (this.#transcoder) this.#transcoder.push(f);
		else if (this.#publication?.audio?.codec === 'aac') this.#fragmenter.pushAudio(f);
	}

	#onVideoPath(path: VideoPath, rendition: VideoRendition | null): void {
		if (rendition && !rendition.ended) {
			this.#watchRendition(rendition);
			this.#pendingSource = rendition;
			this.#pruneRenditions();
			this.#logger.info({ reason: path.reason }, 'HLS follows the transcoded video from its next keyframe');
		} else if (this.#videoSource !== 'original') {
			this.#pendingSource = 'original';
		} else {
			this.#pendingSource = null;
			this.#pruneRenditions();
		}
	}

	#watchRendition(r: VideoRendition): void {
		if (this.#renditions.has(r)) return;
		const onVideo = (f: VideoFrame): void => {
			if (this.#videoSource === r) this.#fragmenter.pushVideo(f);
			else if (this.#pendingSource === r && f.keyframe && r.config) this.#switchTo(r, r.config, f);
		};
		const onConfig = (c: VideoConfig): void => {
			if (this.#videoSource === r) this.#fragmenter.setVideoConfig(c);
		};
		const onEnd = (): void => {
			// The transcoder went away: back to the original at its next keyframe.
			if (this.#videoSource === r || this.#pendingSource === r) this.#pendingSource = 'original';
		};
		r.on('video', onVideo);
		r.on('videoConfig', onConfig);
		r.on('end', onEnd);
		this.#renditions.set(r, () => {
			r.off('video', onVideo);
			r.off('videoConfig', onConfig);
			r.off('end', onEnd);
		});
	}

	/** Stops listening to renditions that are neither the source nor the next one. */
	#pruneRenditions(): void {
		for (const [r, unsubscribe] of this.#renditions) {
			if (r === this.#videoSource || r === this.#pendingSource) continue;
			unsubscribe();
			this.#renditions.delete(r);
		}
	}

	#onOriginalVideo(pub: Publication, f: VideoFrame): void {
		if (this.#videoSource === 'original') this.#fragmenter.pushVideo(f);
		else if (this.#pendingSource === 'original' && f.keyframe && pub.video) this.#switchTo('original', pub.video, f);
	}

	#switchTo(source: VideoSource, config: VideoConfig, keyframe: VideoFrame): void {
		this.#videoSource = source;
		this.#pendingSource = null;
		this.#pruneRenditions();
		this.#fragmenter.setVideoConfig(config);
		this.#fragmenter.requestNewEpoch();
		this.#fragmenter.pushVideo(keyframe);
		this.#logger.info({ source: source === 'original' ? 'original' : 'transcoded' }, 'HLS video source switched');
	}

	// --------------------------------------------------------------- output

	#onEpoch(e: FragmenterEpoch): void {
		const name = initName(this.sid, e.index);
		this.#inits.set(name, e.init);
		this.#currentInit = name;
		if (e.index > 0) this.#discontinuityNext = true;
		this.#opts.store.write(this.stream, name, e.init, 'init');
		this.#logger.debug({ epoch: e.index, video: e.tracks.video?.profileLevelId ?? null, audio: e.tracks.audio?.sampleRate ?? null }, 'new init segment');
		this.emit('init', name);
	}

	#onPart(p: FragmenterPart): void {
		let seg = this.#open;
		if (!seg || p.segmentStart) {
			if (seg) this.#completeSegment(seg);
			seg = this.#openSegment(p);
		}
		const part: HlsPart = {
			seq: this.#nextPartSeq,
			name: partName(this.sid, this.#nextPartSeq),
			msn: seg.msn,
			index: seg.parts.length,
			durationMs: p.durationMs,
			independent: p.independent,
			data: p.data,
			createdAt: performance.now(),
		};
		this.#nextPartSeq++;
		seg.parts.push(part);
		seg.chunks?.push(p.data);
		seg.bytes += p.data.length;
		seg.durationMs += p.durationMs;
		this.#parts.set(part.seq, part);
		this.#maxPartMs = Math.max(this.#maxPartMs, p.durationMs);
		// Never advertise a target a segment already exceeds (longer GOP than configured).
		this.#targetDurationS = Math.max(this.#targetDurationS, Math.round(seg.durationMs / 1000));
		this.#wake();
		this.emit('part', part);
	}

	#openSegment(p: FragmenterPart): HlsSegment {
		const arrival = performance.timeOrigin + p.firstReceivedAt;
		const prev = this.#newestSegment;
		let pdt = arrival;
		if (prev) {
			// Media time keeps PDT and EXTINF consistent. A new run continues the clock unless a
			// real pause passed; its offset from the arrival clock is then kept for the run (a
			// transcoded rendition's frames carry their source frames' arrival times, and the
			// run may have been moved up in media time). Within a run, drift beyond 1 s from
			// that relation re-anchors. PDT never decreases.
			const byMedia = prev.programDateTime + prev.durationMs;
			if (this.#discontinuityNext) {
				pdt = arrival - byMedia > PDT_RESYNC_MS ? arrival : byMedia;
				this.#pdtShift = pdt - arrival;
			} else {
				const expected = arrival + this.#pdtShift;
				pdt = Math.abs(byMedia - expected) <= PDT_RESYNC_MS ? byMedia : expected;
			}
			pdt = Math.max(pdt, prev.programDateTime);
		}
		const seg: HlsSegment = {
			msn: this.#nextMsn++,
			name: segmentName(this.sid, this.#nextMsn - 1),
			initName: this.#currentInit ?? initName(this.sid, 0),
			discontinuity: this.#discontinuityNext,
			programDateTime: pdt,
			durationMs: 0,
			independent: p.independent,
			parts: [],
			complete: false,
			bytes: 0,
			chunks: [],
			completedAt: null,
		};
		this.#discontinuityNext = false;
		this.#newestSegment = seg;
		this.#open = seg;
		this.#segments.push(seg);
		return seg;
	}

	#onSegmentEnd(): void {
		const seg = this.#open;
		if (seg) this.#completeSegment(seg);
	}

	#completeSegment(seg: HlsSegment): void {
		if (seg.complete) return;
		seg.complete = true;
		seg.completedAt = performance.now();
		if (this.#open === seg) this.#open = null;
		this.#targetDurationS = Math.max(this.#targetDurationS, Math.round(seg.durationMs / 1000));
		if (seg.chunks) this.#opts.store.write(this.stream, seg.name, seg.chunks, 'segment');
		this.#slide();
		this.#wake();
		this.emit('segment', seg);
	}

	#slide(): void {
		const complete = this.#segments.filter((s) => s.complete);
		let excess = complete.length - this.#opts.windowSegments;
		while (excess-- > 0) {
			const old = this.#segments.shift();
			if (!old) break;
			if (old.discontinuity) this.#discontinuitySequence++;
			this.#opts.store.remove(this.stream, old.name);
			for (const p of old.parts) this.#parts.delete(p.seq);
		}
		// Keep the newest segments' bytes in memory; older ones are read from disk.
		const inMemory = this.#segments.filter((s) => s.complete);
		for (const s of inMemory.slice(0, Math.max(0, inMemory.length - MEMORY_SEGMENTS))) {
			if (!s.chunks) continue;
			s.chunks = null;
			for (const p of s.parts) {
				p.data = null;
				this.#parts.delete(p.seq);
			}
		}
		// Init segments nothing refers to any more.
		const used = new Set(this.#segments.map((s) => s.initName));
		if (this.#currentInit) used.add(this.#currentInit);
		for (const name of this.#inits.keys()) {
			if (used.has(name) || name === initName(this.sid, 0)) continue;
			this.#inits.delete(name);
			this.#opts.store.remove(this.stream, name);
		}
	}

	/** No more publishers: the playlist ends (EXT-X-ENDLIST) and waiters are answered. */
	end(): void {
		if (this.#ended || this.#closed) return;
		this.#detach();
		this.#fragmenter.finish();
		const open = this.#open;
		if (open) this.#completeSegment(open);
		this.#ended = true;
		this.#logger.info({ segments: this.#nextMsn, parts: this.#nextPartSeq, stats: this.#fragmenter.stats }, 'HLS playlist ended');
		this.#wake();
		this.emit('end');
	}

	// ---------------------------------------------------------------- serve

	init(name: string): Buffer | null {
		return this.#inits.get(name) ?? null;
	}

	part(seq: number): HlsPart | null {
		return this.#parts.get(seq) ?? null;
	}

	segment(msn: number): HlsSegment | null {
		return this.#segments.find((s) => s.msn === msn) ?? null;
	}

	/** Where the newest part is: its segment's msn and its index there; null before the first. */
	#newest(): { msn: number; part: number } | null {
		const last = this.#segments[this.#segments.length - 1];
		if (!last) return null;
		return { msn: last.msn, part: last.parts.length - 1 };
	}

	#lastCompleteMsn(): number {
		for (let i = this.#segments.length - 1; i >= 0; i--) {
			const s = this.#segments[i] as HlsSegment;
			if (s.complete) return s.msn;
		}
		return -1;
	}

	/**
	 * Checks an `_HLS_msn` / `_HLS_part` delivery directive: 'ready' when the
	 * playlist already holds it, 'wait' when it will soon, 'bad' when it is
	 * too far ahead to wait for (RFC 8216bis 6.2.5.2).
	 */
	directive(msn: number, part: number | null): 'ready' | 'wait' | 'bad' {
		if (this.#ended) return 'ready';
		const newest = this.#newest();
		const lastMsn = newest?.msn ?? -1;
		if (msn > Math.max(lastMsn, 0) + 2) return 'bad';
		if (part !== null && newest && msn === newest.msn && part > newest.part + 3) return 'bad';
		return this.#satisfied(msn, part) ? 'ready' : 'wait';
	}

	#satisfied(msn: number, part: number | null): boolean {
		if (this.#ended) return true;
		if (part === null) return this.#lastCompleteMsn() >= msn;
		const newest = this.#newest();
		if (!newest) return false;
		return newest.msn > msn || (newest.msn === msn && newest.part >= part);
	}

	/** Resolves true when the directive is met, false on timeout or session end without it. */
	waitFor(msn: number, part: number | null, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
		return this.#wait(() => this.#satisfied(msn, part), timeoutMs, signal);
	}

	/** Resolves true when part `seq` exists (a preload hint request), false otherwise. */
	waitForPart(seq: number, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
		return this.#wait(() => this.#nextPartSeq > seq, timeoutMs, signal).then(() => this.#parts.has(seq));
	}

	/** Resolves when there is a first part to list. */
	waitForMedia(timeoutMs: number, signal: AbortSignal): Promise<boolean> {
		return this.#wait(() => this.hasMedia, timeoutMs, signal);
	}

	#wait(ready: () => boolean, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
		if (ready()) return Promise.resolve(true);
		if (this.#ended || this.#closed || signal.aborted) return Promise.resolve(false);
		return new Promise<boolean>((resolve) => {
			const finish = (): void => {
				clearTimeout(timer);
				signal.removeEventListener('abort', finish);
				this.#waiters.delete(waiter);
				resolve(ready());
			};
			const waiter: Waiter = { ready: () => ready() || this.#ended || this.#closed, done: finish };
			const timer = setTimeout(finish, timeoutMs);
			signal.addEventListener('abort', finish, { once: true });
			this.#waiters.add(waiter);
		});
	}

	#wake(): void {
		for (const w of [...this.#waiters]) if (w.ready()) w.done();
	}

	/** The playlist now; `uri` may add a query to every URI (viewer tokens). */
	playlist(uri?: (name: string) => string): string {
		const partTargetS = Math.max(this.#opts.partTargetMs, Math.ceil(this.#maxPartMs)) / 1000;
		const listed = this.#segments;
		const partsFrom = listed.length - 1 - PART_LIST_SEGMENTS - (this.#open ? 0 : -1);
		const segments: PlaylistSegment[] = listed.map((s, i) => ({
			uri: s.name,
			durationS: s.durationMs / 1000,
			discontinuity: s.discontinuity,
			mapUri: s.initName,
			programDateTime: s.programDateTime,
			parts: i >= partsFrom && !this.#ended ? s.parts.map((p) => ({ uri: p.name, durationS: p.durationMs / 1000, independent: p.independent })) : null,
			complete: s.complete,
		}));
		const model: PlaylistModel = {
			targetDurationS: this.#targetDurationS,
			partTargetS,
			partHoldBackS: partTargetS * 3,
			holdBackS: this.#targetDurationS * 3,
			mediaSequence: listed[0]?.msn ?? this.#nextMsn,
			discontinuitySequence: this.#discontinuitySequence,
			independentSegments: listed.every((s) => s.independent),
			segments,
			preloadHintUri: this.#ended ? null : partName(this.sid, this.#nextPartSeq),
			ended: this.#ended,
		};
		return renderPlaylist(model, uri);
	}

	/** Ends everything: publication listeners, transcoder, waiters, files. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#detach();
		this.#closed = true;
		this.#wake();
		this.#fragmenter.removeAllListeners();
		this.#segments.length = 0;
		this.#parts.clear();
		this.#inits.clear();
		this.#open = null;
		await Promise.all([...this.#closing]);
		this.removeAllListeners();
	}
}
