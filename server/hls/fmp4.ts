import type { AacConfig } from '../core/codecs/audio.js';
import type { VideoConfig } from '../core/media.js';

/*
 * A hand-written fragmented MP4 (ISO/IEC 14496-12, CMAF-style) writer: one
 * init segment (ftyp + moov) per track set, then moof + mdat fragments. Only
 * what LL-HLS needs: H.264 (avc1/avcC) and AAC (mp4a/esds), one sample
 * description per track, sample tables in the fragments.
 */

export const VIDEO_TIMESCALE = 90_000;
export const VIDEO_TRACK_ID = 1;
export const AUDIO_TRACK_ID = 2;

/** Sample flags (ISO/IEC 14496-12 8.8.3.1): sync samples depend on nothing. */
export const SYNC_SAMPLE_FLAGS = 0x0200_0000;
/** sample_depends_on = 1 and sample_is_non_sync_sample = 1. */
export const NON_SYNC_SAMPLE_FLAGS = 0x0101_0000;

const UNITY_MATRIX = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/** Builds a box from its four-character type and payload parts. */
export function box(type: string, ...payload: Buffer[]): Buffer {
	let size = 8;
	for (const p of payload) size += p.length;
	const head = Buffer.allocUnsafe(8);
	head.writeUInt32BE(size, 0);
	head.write(type, 4, 4, 'latin1');
	return Buffer.concat([head, ...payload], size);
}

/** A full box: version and 24-bit flags before the payload. */
export function fullBox(type: string, version: number, flags: number, ...payload: Buffer[]): Buffer {
	const vf = Buffer.allocUnsafe(4);
	vf.writeUInt32BE(((version & 0xff) << 24) | (flags & 0xff_ffff), 0);
	return box(type, vf, ...payload);
}

function u8(n: number): Buffer {
	return Buffer.from([n & 0xff]);
}

function u16(n: number): Buffer {
	const b = Buffer.allocUnsafe(2);
	b.writeUInt16BE(n & 0xffff, 0);
	return b;
}

function u32(n: number): Buffer {
	const b = Buffer.allocUnsafe(4);
	b.writeUInt32BE(n >>> 0, 0);
	return b;
}

function u32s(values: number[]): Buffer {
	const b = Buffer.allocUnsafe(values.length * 4);
	values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
	return b;
}

function zeros(n: number): Buffer {
	return Buffer.alloc(n);
}

export interface VideoTrack {
	kind: 'video';
	config: VideoConfig;
}

export interface AudioTrack {
	kind: 'audio';
	config: AacConfig;
}

/** The tracks of an init segment: video, audio, or both (video first). */
export interface TrackSet {
	video: VideoConfig | null;
	audio: AacConfig | null;
}

/** Audio ticks per AAC frame: HE-AAC decodes two output samples per core sample. */
export function aacFrameDuration(config: AacConfig): number {
	return config.objectType === 5 || config.objectType === 29 ? config.samplesPerFrame * 2 : config.samplesPerFrame;
}

/** The RFC 6381 codec strings for an HLS CODECS attribute or MSE. */
export function codecStrings(tracks: TrackSet): string[] {
	const out: string[] = [];
	if (tracks.video) out.push(`avc1.${tracks.video.profileLevelId}`);
	if (tracks.audio) out.push(`mp4a.40.${Math.min(tracks.audio.objectType, 31)}`);
	return out;
}

function mvhd(nextTrackId: number): Buffer {
	return fullBox(
		'mvhd',
		0,
		0,
		u32(0), // creation_time
		u32(0), // modification_time
		u32(1000), // timescale
		u32(0), // duration: unknown (fragmented)
		u32(0x0001_0000), // rate 1.0
		u16(0x0100), // volume 1.0
		zeros(10), // reserved
		u32s(UNITY_MATRIX),
		zeros(24), // pre_defined
		u32(nextTrackId),
	);
}

function tkhd(trackId: number, audio: boolean, width: number, height: number): Buffer {
	return fullBox(
		'tkhd',
		0,
		0x000003, // enabled, in movie
		u32(0),
		u32(0),
		u32(trackId),
		u32(0), // reserved
		u32(0), // duration
		zeros(8), // reserved
		u16(0), // layer
		u16(0), // alternate_group
		u16(audio ? 0x0100 : 0), // volume
		u16(0), // reserved
		u32s(UNITY_MATRIX),
		u32(width << 16),
		u32(height << 16),
	);
}

function mdhd(timescale: number): Buffer {
	// language 'und' packed as three 5-bit letters offset by 0x60.
	const und = ((('u'.charCodeAt(0) - 0x60) << 10) | (('n'.charCodeAt(0) - 0x60) << 5) | ('d'.charCodeAt(0) - 0x60)) & 0x7fff;
	return fullBox('mdhd', 0, 0, u32(0), u32(0), u32(timescale), u32(0), u16(und), u16(0));
}

function hdlr(handler: 'vide' | 'soun', name: string): Buffer {
	return fullBox('hdlr', 0, 0, u32(0), Buffer.from(handler, 'latin1'), zeros(12), Buffer.from(`${name}\0`, 'latin1'));
}

function dinf(): Buffer {
	// One data reference: the media is in this file (flag 1).
	return box('dinf', fullBox('dref', 0, 0, u32(1), fullBox('url ', 0, 1)));
}

function emptySampleTables(sampleEntry: Buffer): Buffer {
	return box(
		'stbl',
		fullBox('stsd', 0, 0, u32(1), sampleEntry),
		fullBox('stts', 0, 0, u32(0)),
		fullBox('stsc', 0, 0, u32(0)),
		fullBox('stsz', 0, 0, u32(0), u32(0)),
		fullBox('stco', 0, 0, u32(0)),
	);
}

function avc1(config: VideoConfig): Buffer {
	const compressor = zeros(32);
	return box(
		'avc1',
		zeros(6), // reserved
		u16(1), // data_reference_index
		zeros(16), // pre_defined, reserved
		u16(config.width),
		u16(config.height),
		u32(0x0048_0000), // 72 dpi
		u32(0x0048_0000),
		u32(0), // reserved
		u16(1), // frame_count
		compressor,
		u16(0x0018), // depth
		u16(0xffff), // pre_defined = -1
		box('avcC', config.avcC),
	);
}

/** An MPEG-4 descriptor (ISO/IEC 14496-1 expandable size). */
function descriptor(tag: number, ...payload: Buffer[]): Buffer {
	const body = Buffer.concat(payload);
	const sizeBytes: number[] = [];
	let n = body.length;
	sizeBytes.unshift(n & 0x7f);
	n >>= 7;
	while (n > 0) {
		sizeBytes.unshift((n & 0x7f) | 0x80);
		n >>= 7;
	}
	return Buffer.concat([Buffer.from([tag, ...sizeBytes]), body]);
}

function esds(config: AacConfig): Buffer {
	const decoderSpecificInfo = descriptor(0x05, config.asc);
	const decoderConfig = descriptor(
		0x04,
		u8(0x40), // objectTypeIndication: MPEG-4 Audio
		u8((0x05 << 2) | 1), // streamType audio, upStream 0, reserved 1
		Buffer.from([0, 0, 0]), // bufferSizeDB
		u32(0), // maxBitrate
		u32(0), // avgBitrate
		decoderSpecificInfo,
	);
	const slConfig = descriptor(0x06, u8(0x02));
	const es = descriptor(0x03, u16(AUDIO_TRACK_ID), u8(0), decoderConfig, slConfig);
	return fullBox('esds', 0, 0, es);
}

function mp4a(config: AacConfig): Buffer {
	return box(
		'mp4a',
		zeros(6),
		u16(1), // data_reference_index
		zeros(8), // version, revision, vendor
		u16(config.channels),
		u16(16), // samplesize
		u16(0), // pre_defined
		u16(0), // reserved
		// 16.16 sample rate; rates above 65535 Hz do not fit and decoders read the ASC.
		u32(config.sampleRate <= 0xffff ? config.sampleRate << 16 : 0),
		esds(config),
	);
}

function videoTrak(config: VideoConfig): Buffer {
	return box(
		'trak',
		tkhd(VIDEO_TRACK_ID, false, config.width, config.height),
		box(
			'mdia',
			mdhd(VIDEO_TIMESCALE),
			hdlr('vide', 'subsecond video'),
			box('minf', fullBox('vmhd', 0, 1, zeros(8)), dinf(), emptySampleTables(avc1(config))),
		),
	);
}

function audioTrak(config: AacConfig): Buffer {
	return box(
		'trak',
		tkhd(AUDIO_TRACK_ID, true, 0, 0),
		box(
			'mdia',
			mdhd(config.sampleRate),
			hdlr('soun', 'subsecond audio'),
			box('minf', fullBox('smhd', 0, 0, zeros(4)), dinf(), emptySampleTables(mp4a(config))),
		),
	);
}

function trex(trackId: number): Buffer {
	return fullBox('trex', 0, 0, u32(trackId), u32(1), u32(0), u32(0), u32(0));
}

/** The init segment (ftyp + moov) for a set of tracks. */
export function initSegment(tracks: TrackSet): Buffer {
	if (!tracks.video && !tracks.audio) throw new RangeError('an init segment needs at least one track');
	const ftyp = box('ftyp', Buffer.from('iso6', 'latin1'), u32(0), Buffer.from('iso6cmfcisommp41', 'latin1'));
	const traks: Buffer[] = [];
	const trexes: Buffer[] = [];
	if (tracks.video) {
		traks.push(videoTrak(tracks.video));
		trexes.push(trex(VIDEO_TRACK_ID));
	}
	if (tracks.audio) {
		traks.push(audioTrak(tracks.audio));
		trexes.push(trex(AUDIO_TRACK_ID));
	}
	const moov = box('moov', mvhd(AUDIO_TRACK_ID + 1), ...traks, box('mvex', ...trexes));
	return Buffer.concat([ftyp, moov]);
}

export interface FragmentSample {
	/** Sample bytes: length-prefixed NAL units for video, a raw AAC frame for audio. */
	data: Buffer;
	/** Duration in the track's timescale. */
	duration: number;
	/** Composition time offset (pts - dts) in the track's timescale; video only. */
	cto?: number;
	/** Sync sample (video keyframe); audio samples are always sync. */
	sync?: boolean;
}

export interface FragmentTrack {
	trackId: number;
	/** Decode time of the first sample in the track's timescale. */
	baseMediaDecodeTime: number;
	samples: FragmentSample[];
	/** Video: per-sample flags and signed composition offsets (trun v1). */
	video: boolean;
}

function u64(n: number): Buffer {
	const b = Buffer.allocUnsafe(8);
	b.writeBigUInt64BE(BigInt(Math.max(0, Math.round(n))), 0);
	return b;
}

function trafBody(t: FragmentTrack, dataOffset: number): Buffer {
	// default-base-is-moof: data offsets count from the start of this moof.
	const tfhd = t.video
		? fullBox('tfhd', 0, 0x02_0000, u32(t.trackId))
		: fullBox('tfhd', 0, 0x02_0020, u32(t.trackId), u32(SYNC_SAMPLE_FLAGS));
	const tfdt = fullBox('tfdt', 1, 0, u64(t.baseMediaDecodeTime));
	const perSample = t.video ? 16 : 8;
	const table = Buffer.allocUnsafe(t.samples.length * perSample);
	let off = 0;
	for (const s of t.samples) {
		table.writeUInt32BE(Math.max(0, Math.round(s.duration)) >>> 0, off);
		table.writeUInt32BE(s.data.length, off + 4);
		if (t.video) {
			table.writeUInt32BE(s.sync ? SYNC_SAMPLE_FLAGS : NON_SYNC_SAMPLE_FLAGS, off + 8);
			table.writeInt32BE(Math.round(s.cto ?? 0), off + 12);
		}
		off += perSample;
	}
	// data-offset, sample-duration, sample-size (+ sample-flags, composition offsets for video).
	const flags = t.video ? 0x000f01 : 0x000301;
	const trun = fullBox('trun', t.video ? 1 : 0, flags, u32(t.samples.length), u32(dataOffset), table);
	return Buffer.concat([tfhd, tfdt, trun]);
}

/** traf size: tfhd + tfdt (v1) + trun, known before the data offsets are. */
function trafSize(t: FragmentTrack): number {
	const tfhd = t.video ? 16 : 20;
	const tfdt = 20;
	const trun = 20 + t.samples.length * (t.video ? 16 : 8);
	return 8 + tfhd + tfdt + trun;
}

/**
 * One moof + mdat fragment holding the given tracks' samples; the mdat keeps
 * the tracks in order, each track's samples contiguous.
 */
export function mediaFragment(sequenceNumber: number, tracks: FragmentTrack[]): Buffer {
	const present = tracks.filter((t) => t.samples.length > 0);
	if (present.length === 0) throw new RangeError('a fragment needs at least one sample');
	const mfhd = fullBox('mfhd', 0, 0, u32(sequenceNumber));
	const trafSizes = present.map(trafSize);
	const moofSize = 8 + mfhd.length + trafSizes.reduce((a, b) => a + b, 0);
	let dataOffset = moofSize + 8;
	const trafs: Buffer[] = [];
	let mdatSize = 8;
	for (const t of present) {
		trafs.push(box('traf', trafBody(t, dataOffset)));
		let bytes = 0;
		for (const s of t.samples) bytes += s.data.length;
		dataOffset += bytes;
		mdatSize += bytes;
	}
	const moof = box('moof', mfhd, ...trafs);
	const mdatHead = Buffer.allocUnsafe(8);
	mdatHead.writeUInt32BE(mdatSize, 0);
	mdatHead.write('mdat', 4, 4, 'latin1');
	const parts: Buffer[] = [moof, mdatHead];
	for (const t of present) for (const s of t.samples) parts.push(s.data);
	return Buffer.concat(parts, moofSize + mdatSize);
}
