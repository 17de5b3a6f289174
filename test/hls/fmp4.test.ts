import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAudioSpecificConfig, parseAudioSpecificConfig } from '../../server/core/codecs/audio.js';
import { splitLengthPrefixed } from '../../server/core/codecs/h264.js';
import {
	AUDIO_TRACK_ID,
	NON_SYNC_SAMPLE_FLAGS,
	SYNC_SAMPLE_FLAGS,
	VIDEO_TRACK_ID,
	codecStrings,
	initSegment,
	mediaFragment,
} from '../../server/hls/fmp4.js';
import { Fragmenter } from '../../server/hls/fragmenter.js';
import type { FragmenterPart } from '../../server/hls/fragmenter.js';
import { OGG_BOS, oggCrc, oggPage, opusHead, opusPacketSamples, opusTags } from '../../server/hls/ogg.js';
import { ffprobe, runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { cleanupTmp, decodeAll, encodeClip, interleave, probePackets, tmpFile } from './helpers/frames.js';
import type { EncodedClip } from './helpers/frames.js';
import { find, findAll, fullBoxHeader, parseBoxes, readFragments, tfdt, trun } from './helpers/mp4.js';
import { OggOpusReader } from './helpers/ogg-opus.js';

const aac = parseAudioSpecificConfig(buildAudioSpecificConfig(48000, 2));

describe('fMP4 box writer', () => {
	let clip: EncodedClip;
	beforeAll(async () => {
		clip = await encodeClip({ duration: 0.5 });
	});
	afterAll(async () => {
		cleanupTmp();
		await stopAllFfmpeg();
	});

	it('writes an init segment that parses back to its tracks', () => {
		const init = initSegment({ video: clip.video, audio: aac });
		const boxes = parseBoxes(init);
		expect(boxes.map((b) => b.type)).toEqual(['ftyp', 'moov']);
		const ftyp = find(boxes, 'ftyp').body;
		expect(ftyp.toString('latin1', 0, 4)).toBe('iso6');
		expect(ftyp.toString('latin1', 8)).toContain('cmfc');
		expect(find(boxes, 'moov/mvhd').body.readUInt32BE(12)).toBe(1000);
		const traks = findAll(boxes, 'moov/trak');
		expect(traks).toHaveLength(2);
		const [video, audio] = traks as [(typeof traks)[0], (typeof traks)[0]];
		const tkhdV = find(video.children, 'tkhd');
		expect(fullBoxHeader(tkhdV).flags).toBe(3);
		expect(tkhdV.body.readUInt32BE(12)).toBe(VIDEO_TRACK_ID);
		expect(tkhdV.body.readUInt32BE(76) >>> 16).toBe(640);
		expect(tkhdV.body.readUInt32BE(80) >>> 16).toBe(360);
		expect(find(video.children, 'mdia/mdhd').body.readUInt32BE(12)).toBe(90000);
		expect(find(video.children, 'mdia/hdlr').body.toString('latin1', 8, 12)).toBe('vide');
		const avc1 = find(video.children, 'mdia/minf/stbl/stsd/avc1');
		expect(avc1.body.readUInt16BE(24)).toBe(640);
		expect(avc1.body.readUInt16BE(26)).toBe(360);
		expect(find(avc1.children, 'avcC').body.equals(clip.video.avcC)).toBe(true);
		expect(find(audio.children, 'tkhd').body.readUInt32BE(12)).toBe(AUDIO_TRACK_ID);
		expect(find(audio.children, 'mdia/mdhd').body.readUInt32BE(12)).toBe(48000);
		expect(find(audio.children, 'mdia/hdlr').body.toString('latin1', 8, 12)).toBe('soun');
		const mp4a = find(audio.children, 'mdia/minf/stbl/stsd/mp4a');
		expect(mp4a.body.readUInt16BE(16)).toBe(2);
		expect(mp4a.body.readUInt32BE(24) >>> 16).toBe(48000);
		const esds = find(mp4a.children, 'esds').body;
		// The DecoderSpecificInfo (tag 5, one length byte) carries the ASC unchanged.
		const dsi = esds.indexOf(Buffer.from([0x05, aac.asc.length, ...aac.asc]));
		expect(dsi).toBeGreaterThan(0);
		expect(findAll(boxes, 'moov/mvex/trex').map((t) => t.body.readUInt32BE(4))).toEqual([1, 2]);
		expect(codecStrings({ video: clip.video, audio: aac })).toEqual([`avc1.${clip.video.profileLevelId}`, 'mp4a.40.2']);
	});

	it('writes single-track init segments and refuses an empty one', () => {
		expect(findAll(parseBoxes(initSegment({ video: clip.video, audio: null })), 'moov/trak')).toHaveLength(1);
		const audioOnly = parseBoxes(initSegment({ video: null, audio: aac }));
		expect(find(audioOnly, 'moov/trak/mdia/hdlr').body.toString('latin1', 8, 12)).toBe('soun');
		expect(() => initSegment({ video: null, audio: null })).toThrow(RangeError);
	});

	it('writes fragments with 64-bit decode times, signed composition offsets and data offsets into the mdat', () => {
		const big = 2 ** 33 + 12345;
		const v = [Buffer.from([0, 0, 0, 2, 0x65, 1]), Buffer.from([0, 0, 0, 3, 0x41, 2, 3]), Buffer.from([0, 0, 0, 1, 0x41])];
		const a = [Buffer.from([0x21, 0x10]), Buffer.from([0x21, 0x11, 0x12])];
		const frag = mediaFragment(7, [
			{
				trackId: VIDEO_TRACK_ID,
				baseMediaDecodeTime: big,
				video: true,
				samples: [
					{ data: v[0]!, duration: 3600, cto: 7200, sync: true },
					{ data: v[1]!, duration: 3600, cto: -3600, sync: false },
					{ data: v[2]!, duration: 3000, cto: 0, sync: false },
				],
			},
			{ trackId: AUDIO_TRACK_ID, baseMediaDecodeTime: 96000, video: false, samples: a.map((data) => ({ data, duration: 1024 })) },
		]);
		const boxes = parseBoxes(frag);
		expect(boxes.map((b) => b.type)).toEqual(['moof', 'mdat']);
		expect(find(boxes, 'moof/mfhd').body.readUInt32BE(4)).toBe(7);
		const trafs = findAll(boxes, 'moof/traf');
		expect(fullBoxHeader(find(trafs[0]!.children, 'tfdt')).version).toBe(1);
		expect(tfdt(find(trafs[0]!.children, 'tfdt'))).toBe(big);
		const t = trun(find(trafs[0]!.children, 'trun'));
		expect(t.version).toBe(1);
		expect(t.samples.map((s) => s.cto)).toEqual([7200, -3600, 0]);
		expect(t.samples.map((s) => s.flags)).toEqual([SYNC_SAMPLE_FLAGS, NON_SYNC_SAMPLE_FLAGS, NON_SYNC_SAMPLE_FLAGS]);
		const [fv, fa] = readFragments(frag)[0]!.tracks;
		expect(fv!.samples.map((s) => s.data.toString('hex'))).toEqual(v.map((b) => b.toString('hex')));
		expect(fa!.samples.map((s) => s.data.toString('hex'))).toEqual(a.map((b) => b.toString('hex')));
		expect(fa!.samples.map((s) => s.flags)).toEqual([SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS]);
		expect(fa!.baseMediaDecodeTime).toBe(96000);
		expect(() => mediaFragment(1, [{ trackId: 1, baseMediaDecodeTime: 0, video: true, samples: [] }])).toThrow(RangeError);
	});

	const muxClip = (c: EncodedClip): { file: string; parts: FragmenterPart[] } => {
		const f = new Fragmenter({ partTargetMs: 250, segmentTargetMs: 1000 });
		const out: Buffer[] = [];
		const parts: FragmenterPart[] = [];
		f.on('epoch', (e) => out.push(e.init));
		f.on('part', (p) => {
			out.push(p.data);
			parts.push(p);
		});
		f.setVideoConfig(c.video);
		f.setAudioConfig(c.audio);
		for (const fr of interleave(c)) {
			if (fr.kind === 'video') f.pushVideo(fr);
			else f.pushAudio(fr);
		}
		f.finish();
		const file = tmpFile(`clip-${Math.random().toString(36).slice(2)}.mp4`);
		fs.writeFileSync(file, Buffer.concat(out));
		return { file, parts };
	};

	it('muxes real H.264 and AAC that ffprobe reads back frame for frame, at the publisher times', async () => {
		const c = await encodeClip({ duration: 3 });
		const { file } = muxClip(c);
		const probe = await ffprobe(file);
		expect(probe.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });
		expect(probe.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac', sample_rate: '48000', channels: 2 });
		const packets = await probePackets(file);
		const video = packets.filter((p) => p.codec_type === 'video');
		const audio = packets.filter((p) => p.codec_type === 'audio');
		expect(video).toHaveLength(c.videoFrames.length);
		expect(audio.length).toBeGreaterThanOrEqual(c.audioFrames.length - 2);
		video.forEach((p, i) => expect(Number(p.pts_time) * 1000).toBeCloseTo(c.videoFrames[i]!.pts, 0));
		expect(video.filter((p) => p.flags.startsWith('K')).length).toBe(c.videoFrames.filter((f) => f.keyframe).length);
		const decoded = await decodeAll(file);
		expect(decoded.video).toBe(c.videoFrames.length);
	});

	it('keeps B-frame composition offsets (High profile)', async () => {
		const c = await encodeClip({ duration: 2, profile: 'high', bframes: 2, audio: false });
		expect(c.videoFrames.some((f) => f.pts !== f.dts)).toBe(true);
		const { file } = muxClip(c);
		const packets = (await probePackets(file)).filter((p) => p.codec_type === 'video');
		expect(packets).toHaveLength(c.videoFrames.length);
		packets.forEach((p, i) => {
			expect(Number(p.dts_time) * 1000).toBeCloseTo(c.videoFrames[i]!.dts, 0);
			expect(Number(p.pts_time) * 1000).toBeCloseTo(c.videoFrames[i]!.pts, 0);
		});
		expect((await decodeAll(file)).video).toBe(c.videoFrames.length);
	});

	it('stores NAL units length-prefixed, in-band parameter sets kept', () => {
		const { parts } = muxClip(clip);
		const first = readFragments(parts[0]!.data)[0]!.tracks[0]!;
		const nalus = splitLengthPrefixed(first.samples[0]!.data, 4);
		expect(nalus.map((n) => n.length)).toEqual(clip.videoFrames[0]!.nalus.map((n) => n.length));
	});
});

describe('Ogg Opus writer', () => {
	afterAll(async () => {
		cleanupTmp();
		await stopAllFfmpeg();
	});

	it('computes the Ogg CRC of a known page', () => {
		// Header of an empty page with the CRC field zeroed: CRC computed over it alone.
		const page = oggPage(Buffer.alloc(0), { serial: 1, sequence: 0, granule: 0n });
		const zeroed = Buffer.from(page);
		zeroed.writeUInt32LE(0, 22);
		expect(page.readUInt32LE(22)).toBe(oggCrc(zeroed));
		// The catalogued CRC-32/POSIX check value is 0x765e7680; Ogg's variant skips its final inversion.
		expect(oggCrc(Buffer.from('123456789'))).toBe((0x765e7680 ^ 0xffffffff) >>> 0);
	});

	it('counts samples from the Opus TOC byte', () => {
		expect(opusPacketSamples(Buffer.from([0xfc]))).toBe(960); // CELT 20 ms, one frame
		expect(opusPacketSamples(Buffer.from([0xfd]))).toBe(1920); // two frames
		expect(opusPacketSamples(Buffer.from([0x0b, 0x03]))).toBe(2880); // SILK 20 ms, code 3 with three frames
		expect(opusPacketSamples(Buffer.from([0x1b, 0x03]))).toBe(0); // SILK 60 ms x3: over the 120 ms a packet may hold
		expect(opusPacketSamples(Buffer.from([0x70]))).toBe(480); // hybrid fullband 10 ms
		expect(opusPacketSamples(Buffer.from([0x78]))).toBe(960); // hybrid fullband 20 ms
		expect(opusPacketSamples(Buffer.alloc(0))).toBe(0);
	});

	it('writes Ogg Opus that ffmpeg decodes', async () => {
		const ff = runFfmpeg(
			['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=1', '-c:a', 'libopus', '-f', 'ogg', 'pipe:1'],
			{ stdout: 'pipe' },
		);
		const packets: Buffer[] = [];
		const reader = new OggOpusReader((f) => packets.push(f.data));
		ff.child.stdout?.on('data', (c: Buffer) => reader.push(c));
		await ff.exited;
		expect(packets.length).toBeGreaterThan(40);
		const pages = [
			oggPage(opusHead(2), { serial: 42, sequence: 0, granule: 0n, flags: OGG_BOS }),
			oggPage(opusTags(), { serial: 42, sequence: 1, granule: 0n }),
		];
		let granule = 0;
		packets.forEach((p, i) => {
			granule += opusPacketSamples(p);
			pages.push(oggPage(p, { serial: 42, sequence: i + 2, granule: BigInt(granule) }));
		});
		const file = tmpFile('ours.opus');
		fs.writeFileSync(file, Buffer.concat(pages));
		const decoded = await decodeAll(file);
		expect(decoded.audio).toBe(packets.length);
	});
});
