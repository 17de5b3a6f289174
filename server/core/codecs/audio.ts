import { BadRequest, Unsupported } from '../../common/errors.js';
import { BitReader } from './bits.js';

export const AAC_SAMPLE_RATES = [
	96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
] as const;

export interface AacConfig {
	codec: 'aac';
	/** AudioSpecificConfig as received (the `esds` payload in MP4). */
	asc: Buffer;
	/** Audio object type: 2 is AAC-LC, 5 HE-AAC (SBR), 29 HE-AACv2 (PS). */
	objectType: number;
	sampleRate: number;
	channels: number;
	/** Samples per frame at sampleRate: 1024 for AAC-LC. */
	samplesPerFrame: number;
}

export interface OpusConfig {
	codec: 'opus';
	sampleRate: 48000;
	channels: number;
}

export type AudioConfig = AacConfig | OpusConfig;

/** Parses an MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1). */
export function parseAudioSpecificConfig(asc: Buffer): AacConfig {
	if (asc.length < 2) throw new BadRequest('AudioSpecificConfig too short');
	const r = new BitReader(asc);
	const readObjectType = (): number => {
		const t = r.bits(5);
		return t === 31 ? 32 + r.bits(6) : t;
	};
	const readRate = (): number => {
		const idx = r.bits(4);
		if (idx === 15) return r.bits(24);
		const rate = AAC_SAMPLE_RATES[idx];
		if (rate === undefined) throw new BadRequest(`AudioSpecificConfig sampling index ${idx} is reserved`);
		return rate;
	};
	let objectType = readObjectType();
	let sampleRate = readRate();
	const channelConfig = r.bits(4);
	if (objectType === 5 || objectType === 29) {
		// Explicit SBR/PS signalling: the output rate follows, then the core object type.
		sampleRate = readRate();
		objectType = readObjectType();
		objectType = objectType === 2 ? 5 : objectType;
	}
	if (![1, 2, 3, 4, 5, 6, 29].includes(objectType)) {
		throw new Unsupported(`AAC audio object type ${objectType} is not supported; publish AAC-LC`);
	}
	if (channelConfig === 0 || channelConfig > 7) {
		throw new Unsupported(`AAC channel configuration ${channelConfig} is not supported; publish mono or stereo`);
	}
	if (sampleRate < 8000 || sampleRate > 96000) throw new BadRequest(`AAC sample rate ${sampleRate} out of range`);
	const channels = channelConfig === 7 ? 8 : channelConfig;
	let samplesPerFrame = 1024;
	if (objectType === 1 || objectType === 2 || objectType === 4) {
		// GASpecificConfig: frameLengthFlag selects 960-sample frames.
		try {
			if (r.bit()) samplesPerFrame = 960;
		} catch {
			// a 2-byte ASC may end right here on some encoders
		}
	}
	return { codec: 'aac', asc: Buffer.from(asc), objectType, sampleRate, channels, samplesPerFrame };
}

/** Builds a minimal AudioSpecificConfig for AAC-LC. */
export function buildAudioSpecificConfig(sampleRate: number, channels: number, objectType = 2): Buffer {
	const idx = AAC_SAMPLE_RATES.indexOf(sampleRate as (typeof AAC_SAMPLE_RATES)[number]);
	if (idx < 0) throw new BadRequest(`no AAC sampling index for ${sampleRate} Hz`);
	return Buffer.from([(objectType << 3) | (idx >> 1), ((idx & 1) << 7) | (channels << 3)]);
}

/** A 7-byte ADTS header for one raw AAC frame (for ffmpeg's adts demuxer). */
export function adtsHeader(cfg: AacConfig, payloadLength: number): Buffer {
	const idx = AAC_SAMPLE_RATES.indexOf(cfg.sampleRate as (typeof AAC_SAMPLE_RATES)[number]);
	if (idx < 0) throw new Unsupported(`ADTS cannot carry a ${cfg.sampleRate} Hz sample rate`);
	const len = payloadLength + 7;
	if (len > 0x1fff) throw new BadRequest('AAC frame too large for ADTS');
	const profile = Math.min(cfg.objectType, 4) - 1; // ADTS holds profile 0..3; HE-AAC is signalled implicitly
	const ch = cfg.channels === 8 ? 7 : cfg.channels;
	return Buffer.from([
		0xff,
		0xf1,
		((profile & 3) << 6) | (idx << 2) | ((ch >> 2) & 1),
		((ch & 3) << 6) | ((len >> 11) & 3),
		(len >> 3) & 0xff,
		((len & 7) << 5) | 0x1f,
		0xfc,
	]);
}
