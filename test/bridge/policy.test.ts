import { describe, expect, it } from 'vitest';
import { decideVideoPath, negotiableProfileLevelId } from '../../ingest/bridge/policy.js';
import { opusPacketSamples } from '../../ingest/bridge/opus.js';
import { FlvReader, aacFrameTag, aacSequenceHeaderTag, avcFrameTag, avcSequenceHeaderTag, flvHeader } from '../../ingest/bridge/flv.js';
import { autoBitrateKbps } from '../../ingest/bridge/video-transcoder.js';
import { FlvDemuxer } from '../../ingest/rtmp/flv.js';
import { buildAudioSpecificConfig } from '../../server/core/codecs/audio.js';
import { profileName } from '../../server/core/codecs/h264.js';
import type { VideoConfig } from '../../server/core/media.js';
import { BadRequest } from '../../server/common/errors.js';

function cfg(profileIdc: number, constraintFlags: number, maxReorderFrames: number | null, levelIdc = 31): VideoConfig {
	const id = [profileIdc, constraintFlags, levelIdc].map((b) => b.toString(16).padStart(2, '0')).join('');
	return { profileIdc, constraintFlags, levelIdc, maxReorderFrames, profile: profileName(profileIdc, constraintFlags), profileLevelId: id } as VideoConfig;
}

describe('video policy', () => {
	it('maps SPS profiles to profile-level-ids the routers offer', () => {
		expect(negotiableProfileLevelId(66, 0xc0, 31)).toBe('42e01f');
		expect(negotiableProfileLevelId(66, 0x00, 30)).toBe('42001e');
		expect(negotiableProfileLevelId(77, 0x40, 40)).toBe('4d0028');
		expect(negotiableProfileLevelId(77, 0x80, 40)).toBe('42e028');
		expect(negotiableProfileLevelId(100, 0, 50)).toBe('640032');
		expect(negotiableProfileLevelId(100, 0x0c, 50)).toBeNull(); // Constrained High: no router codec
		expect(negotiableProfileLevelId(88, 0, 30)).toBeNull();
	});

	it('auto: passes Constrained Baseline and Baseline through for good', () => {
		const d = decideVideoPath(cfg(66, 0xc0, 0), 'auto');
		expect(d).toMatchObject({ action: 'passthrough', final: true, profileLevelId: '42e01f' });
		expect(decideVideoPath(cfg(66, 0, 0), 'auto')).toMatchObject({ action: 'passthrough', profileLevelId: '42001f' });
	});

	it('auto: passes Main through, watching for B-frames unless the SPS rules them out', () => {
		expect(decideVideoPath(cfg(77, 0x40, null), 'auto')).toMatchObject({ action: 'passthrough', final: false });
		expect(decideVideoPath(cfg(77, 0x40, 0), 'auto')).toMatchObject({ action: 'passthrough', final: true });
		const late = decideVideoPath(cfg(77, 0x40, null), 'auto', { reorderSeen: true });
		expect(late).toMatchObject({ action: 'transcode' });
		expect(late.reason).toMatch(/out of presentation order/);
	});

	it('auto: transcodes High profile and B-frames, saying why', () => {
		const high = decideVideoPath(cfg(100, 0, 0, 50), 'auto');
		expect(high.action).toBe('transcode');
		expect(high.reason).toMatch(/High profile/);
		const b = decideVideoPath(cfg(77, 0, 2), 'auto');
		expect(b.action).toBe('transcode');
		expect(b.reason).toMatch(/max_num_reorder_frames=2/);
	});

	it('reject refuses what auto would transcode, with advice', () => {
		const r = decideVideoPath(cfg(100, 0, 2, 50), 'reject');
		expect(r.action).toBe('reject');
		expect(r.reason).toMatch(/reject/);
		expect(r.reason).toMatch(/without B-frames/);
		expect(decideVideoPath(cfg(66, 0xc0, 0), 'reject').action).toBe('passthrough');
	});

	it('passthrough forwards High with B-frames, but transcodes what cannot be announced', () => {
		expect(decideVideoPath(cfg(100, 0, 2, 50), 'passthrough')).toMatchObject({ action: 'passthrough', final: true, profileLevelId: '640032' });
		expect(decideVideoPath(cfg(100, 0x0c, 0, 50), 'passthrough').action).toBe('transcode');
	});

	it('chooses a bitrate from the resolution', () => {
		expect(autoBitrateKbps(1280, 720, 30)).toBeGreaterThan(autoBitrateKbps(640, 360, 30));
		expect(autoBitrateKbps(160, 90, 10)).toBe(300);
		expect(autoBitrateKbps(3840, 2160, 60)).toBe(8000);
	});
});

describe('Opus TOC', () => {
	it('gives packet durations at 48 kHz', () => {
		expect(opusPacketSamples(Buffer.from([(31 << 3) | 0]))).toBe(960); // CELT FB 20 ms
		expect(opusPacketSamples(Buffer.from([(30 << 3) | 0]))).toBe(480); // CELT FB 10 ms
		expect(opusPacketSamples(Buffer.from([(1 << 3) | 1, 0]))).toBe(1920); // SILK 20 ms x2
		expect(opusPacketSamples(Buffer.from([(3 << 3) | 3, 2]))).toBe(5760); // SILK 60 ms x2
		expect(opusPacketSamples(Buffer.from([(13 << 3) | 0]))).toBe(960); // Hybrid 20 ms
		expect(() => opusPacketSamples(Buffer.alloc(0))).toThrow(BadRequest);
		expect(() => opusPacketSamples(Buffer.from([(3 << 3) | 3, 3]))).toThrow(BadRequest); // 180 ms
	});
});

describe('FLV writer and reader', () => {
	it('round-trips through FlvReader and FlvDemuxer, chunk by chunk', () => {
		const sps = Buffer.from('6742c01fda0280bfe5840000030004000003008a3c60ca80', 'hex');
		const pps = Buffer.from('68ce3c80', 'hex');
		const avcC = Buffer.concat([Buffer.from([1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, sps.length]), sps, Buffer.from([1, 0, pps.length]), pps]);
		const asc = buildAudioSpecificConfig(48000, 2);
		const idr = Buffer.from([0x65, 1, 2, 3, 4]);
		const stream = Buffer.concat([
			flvHeader(true, true),
			avcSequenceHeaderTag(0, avcC),
			aacSequenceHeaderTag(0, asc),
			avcFrameTag(100_000, 80, true, [idr, Buffer.from([0x06, 9])]),
			aacFrameTag(100_005, Buffer.from([0x21, 0x10, 5])),
			avcFrameTag(2 ** 24 + 5, -3, false, [Buffer.from([0x41, 7])]),
		]);
		const demux = new FlvDemuxer();
		const events: string[] = [];
		const reader = new FlvReader((tag) => {
			const ev = tag.type === 9 ? demux.video(tag.timestamp, tag.body, 0) : demux.audio(tag.timestamp, tag.body, 0);
			if (ev.type === 'video') events.push(`v ${ev.frame.dts} ${ev.frame.pts} ${ev.frame.keyframe} ${ev.frame.nalus.length}`);
			else if (ev.type === 'audio') events.push(`a ${ev.frame.pts} ${ev.frame.data.toString('hex')}`);
			else events.push(ev.type);
		});
		for (let i = 0; i < stream.length; i += 7) reader.push(stream.subarray(i, i + 7));
		expect(events).toEqual(['videoConfig', 'audioConfig', 'v 100000 100080 true 2', 'a 100005 211005', `v ${2 ** 24 + 5} ${2 ** 24 + 2} false 1`]);
		expect(demux.videoConfig?.width).toBe(640);
	});
});
