import { BadRequest, Unsupported } from '../../server/common/errors.js';
import { parseAudioSpecificConfig } from '../../server/core/codecs/audio.js';
import type { AacConfig } from '../../server/core/codecs/audio.js';
import { NAL, h264ConfigFromAvcC, nalType, splitLengthPrefixed } from '../../server/core/codecs/h264.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../../server/core/media.js';

/** FLV tag types, also the RTMP message type ids of media messages. */
export const FLV_TAG = { AUDIO: 8, VIDEO: 9, SCRIPT: 18 } as const;

const LEGACY_VIDEO_CODECS: Record<number, string> = {
	2: 'Sorenson H.263',
	3: 'Screen Video',
	4: 'On2 VP6',
	5: 'On2 VP6 with alpha',
	6: 'Screen Video 2',
	12: 'HEVC (non-standard FLV codec id 12)',
	13: 'AV1 (non-standard FLV codec id 13)',
};

const FOURCC_NAMES: Record<string, string> = {
	hvc1: 'HEVC',
	av01: 'AV1',
	vp09: 'VP9',
	vp08: 'VP8',
	avc1: 'H.264',
	Opus: 'Opus',
	'fLaC': 'FLAC',
	'ac-3': 'AC-3',
	'ec-3': 'E-AC-3',
	'.mp3': 'MP3',
	mp4a: 'AAC',
};

const SOUND_FORMATS: Record<number, string> = {
	0: 'PCM',
	1: 'ADPCM',
	2: 'MP3',
	3: 'PCM (little endian)',
	4: 'Nellymoser 16 kHz',
	5: 'Nellymoser 8 kHz',
	6: 'Nellymoser',
	7: 'G.711 A-law',
	8: 'G.711 mu-law',
	11: 'Speex',
	14: 'MP3 8 kHz',
	15: 'device-specific sound',
};

/** What one FLV video or audio tag turned out to be. */
export type FlvEvent =
	| { type: 'videoConfig'; config: VideoConfig }
	| { type: 'video'; frame: VideoFrame }
	| { type: 'audioConfig'; config: AacConfig }
	| { type: 'audio'; frame: AudioFrame }
	| { type: 'none' };

const NONE: FlvEvent = { type: 'none' };

function readSI24(buf: Buffer, off: number): number {
	const v = ((buf[off] ?? 0) << 16) | ((buf[off + 1] ?? 0) << 8) | (buf[off + 2] ?? 0);
	return v & 0x800000 ? v - 0x1000000 : v;
}

/**
 * Turns FLV video and audio tag bodies (the payload of RTMP media messages)
 * into codec configs and timestamped frames. H.264 and AAC only; every other
 * codec, including enhanced-RTMP FourCC video, is recognised and refused with
 * an Unsupported error that names it. Malformed tags throw BadRequest.
 */
export class FlvDemuxer {
	#nalLengthSize = 4;
	#video: VideoConfig | null = null;
	#audio: AacConfig | null = null;

	get videoConfig(): VideoConfig | null {
		return this.#video;
	}

	get audioConfig(): AacConfig | null {
		return this.#audio;
	}

	/** `timestamp` is the tag's (decode) time in ms. */
	video(timestamp: number, body: Buffer, receivedAt: number): FlvEvent {
		if (body.length < 1) throw new BadRequest('empty video tag');
		const b0 = body[0] ?? 0;
		if (b0 & 0x80) return this.#enhancedVideo(timestamp, body, receivedAt);
		const frameType = b0 >> 4;
		const codecId = b0 & 0x0f;
		if (frameType === 5) return NONE; // video info / command frame: carries no picture
		if (codecId !== 7) {
			const name = LEGACY_VIDEO_CODECS[codecId] ?? `codec id ${codecId}`;
			throw new Unsupported(`video codec ${name} is not supported; publish H.264`);
		}
		if (body.length < 5) throw new BadRequest('AVC video tag shorter than its header');
		const packetType = body[1] ?? 0;
		const cts = readSI24(body, 2);
		const payload = body.subarray(5);
		switch (packetType) {
			case 0:
				return this.#sequenceHeader(payload);
			case 1:
				return this.#codedFrame(timestamp, cts, frameType === 1, payload, receivedAt);
			case 2:
				return NONE; // end of sequence
			default:
				throw new BadRequest(`unknown AVC packet type ${packetType}`);
		}
	}

	#enhancedVideo(timestamp: number, body: Buffer, receivedAt: number): FlvEvent {
		if (body.length < 5) throw new BadRequest('enhanced RTMP video tag shorter than its header');
		const b0 = body[0] ?? 0;
		const frameType = (b0 >> 4) & 0x07;
		const packetType = b0 & 0x0f;
		const fourcc = body.toString('latin1', 1, 5);
		if (fourcc !== 'avc1') {
			const name = FOURCC_NAMES[fourcc] ?? `FourCC '${fourcc}'`;
			throw new Unsupported(`enhanced RTMP video ${name} is not supported; publish H.264 (set the encoder to x264 or another H.264 encoder)`);
		}
		if (frameType === 5) return NONE;
		switch (packetType) {
			case 0: // SequenceStart
				return this.#sequenceHeader(body.subarray(5));
			case 1: // CodedFrames, with a composition time
				if (body.length < 8) throw new BadRequest('enhanced RTMP coded frame shorter than its header');
				return this.#codedFrame(timestamp, readSI24(body, 5), frameType === 1, body.subarray(8), receivedAt);
			case 3: // CodedFramesX: composition time 0
				return this.#codedFrame(timestamp, 0, frameType === 1, body.subarray(5), receivedAt);
			case 2: // SequenceEnd
			case 4: // Metadata
				return NONE;
			default:
				throw new Unsupported(`enhanced RTMP video packet type ${packetType} is not supported`);
		}
	}

	#sequenceHeader(avcC: Buffer): FlvEvent {
		const { config, nalLengthSize } = h264ConfigFromAvcC(avcC);
		this.#nalLengthSize = nalLengthSize;
		this.#video = config;
		return { type: 'videoConfig', config };
	}

	#codedFrame(dts: number, cts: number, keyframeFlag: boolean, payload: Buffer, receivedAt: number): FlvEvent {
		if (!this.#video) throw new BadRequest('H.264 frame before the AVC sequence header');
		// Copy out of the chunk reassembly buffer (it is reused; listeners may keep
		// frames) in one piece: one allocation per frame, NAL units are views of it.
		const all = splitLengthPrefixed(Buffer.from(payload), this.#nalLengthSize);
		// Access unit delimiters are dropped: each output format adds what it
		// needs. In-band parameter sets stay; consumers may skip them.
		const nalus = all.filter((n) => {
			const t = nalType(n);
			return t !== NAL.AUD && t !== 0;
		});
		if (nalus.length === 0) return NONE;
		const keyframe = keyframeFlag || nalus.some((n) => nalType(n) === NAL.IDR);
		const frame: VideoFrame = {
			kind: 'video',
			dts,
			pts: dts + cts,
			keyframe,
			nalus,
			receivedAt,
		};
		return { type: 'video', frame };
	}

	audio(timestamp: number, body: Buffer, receivedAt: number): FlvEvent {
		if (body.length < 1) throw new BadRequest('empty audio tag');
		const b0 = body[0] ?? 0;
		const format = b0 >> 4;
		if (format === 9) {
			const fourcc = body.length >= 5 ? body.toString('latin1', 1, 5) : '?';
			const name = FOURCC_NAMES[fourcc] ?? `FourCC '${fourcc}'`;
			throw new Unsupported(`enhanced RTMP audio ${name} is not supported; publish AAC`);
		}
		if (format !== 10) {
			const name = SOUND_FORMATS[format] ?? `sound format ${format}`;
			throw new Unsupported(`audio codec ${name} is not supported; publish AAC`);
		}
		if (body.length < 2) throw new BadRequest('AAC audio tag shorter than its header');
		const packetType = body[1] ?? 0;
		const payload = body.subarray(2);
		if (packetType === 0) {
			const config = parseAudioSpecificConfig(payload);
			this.#audio = config;
			return { type: 'audioConfig', config };
		}
		if (packetType !== 1) throw new BadRequest(`unknown AAC packet type ${packetType}`);
		if (!this.#audio) throw new BadRequest('AAC frame before the AudioSpecificConfig');
		if (payload.length === 0) return NONE;
		return { type: 'audio', frame: { kind: 'audio', pts: timestamp, data: Buffer.from(payload), receivedAt } };
	}
}
