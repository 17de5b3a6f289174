import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EcmaArray, encodeAmf0 } from '../../ingest/rtmp/amf0.js';
import { waitFor } from '../../server/common/emitter.js';
import type { VideoFrame } from '../../server/core/media.js';
import type { Publication } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { eventually, startTestServer } from '../helpers/server.js';
import { encodeFlvTags } from './media.js';
import { MSG, RtmpTestClient } from './rtmp-client.js';
import type { FlvTag } from './rtmp-client.js';

describe('RTMP protocol details (crafted client)', () => {
	let server: Server;
	let tags: FlvTag[];
	let seqHeader: FlvTag;
	let frames: FlvTag[];
	const clients: RtmpTestClient[] = [];
	const client = async (o: Parameters<typeof RtmpTestClient.connect>[1] = {}): Promise<RtmpTestClient> => {
		const c = await RtmpTestClient.connect(server.rtmp!.port, o);
		clients.push(c);
		return c;
	};

	beforeAll(async () => {
		[server, tags] = await Promise.all([
			startTestServer({ rtmp: { outChunkSize: 128 } }),
			encodeFlvTags({ width: 320, height: 240, fps: 25, gop: 25, duration: 2, audio: true }),
		]);
		seqHeader = tags.find((t) => t.type === MSG.VIDEO && t.body[1] === 0)!;
		frames = tags.filter((t) => t.type === MSG.VIDEO && t.body[1] === 1);
	});
	afterEach(async () => {
		for (const c of clients.splice(0)) c.close();
		await stopAllFfmpeg();
		await eventually(() => server.rtmp!.stats().connections === 0, 5000);
	});
	afterAll(async () => {
		await server.close();
	});

	async function publisher(name: string, o: Parameters<typeof RtmpTestClient.connect>[1] = {}): Promise<{ c: RtmpTestClient; sid: number; pub: Publication }> {
		const c = await client(o);
		const sid = await c.connectAndCreateStream();
		const pubP = waitFor(server.registry, 'publish', 5000, (s) => s.name === name);
		const status = await c.publish(sid, name);
		expect(status).toMatchObject({ level: 'status', code: 'NetStream.Publish.Start' });
		const [, pub] = await pubP;
		return { c, sid, pub };
	}

	function collect(pub: Publication): VideoFrame[] {
		const out: VideoFrame[] = [];
		pub.on('video', (f) => out.push(f));
		return out;
	}

	it('signs S1 and S2 for digest clients (both schemes) and echoes C1 for plain ones', async () => {
		for (const scheme of [0, 1] as const) {
			const c = await client({ handshake: 'digest', scheme });
			expect(c.handshakeCheck).toMatchObject({ s1DigestValid: true, s2SignatureValid: true });
			await c.connectAndCreateStream();
		}
		const plain = await client({ handshake: 'plain' });
		expect(plain.handshakeCheck?.s2EchoesC1).toBe(true);
		await plain.connectAndCreateStream();
	});

	it('passes ffmpeg\'s own check of the server digest (as a player), then refuses play', async () => {
		const ff = runFfmpeg(['-hide_banner', '-loglevel', 'error', '-i', `rtmp://127.0.0.1:${server.rtmp!.port}/live/x`, '-f', 'null', '-']);
		expect(await ff.exited).not.toBe(0);
		expect(ff.stderr()).not.toMatch(/validating failed|Signature mismatch/i);
		expect(ff.stderr()).toMatch(/only ingests/);
	});

	it('answers connect with window, bandwidth and chunk size, and chunks replies at that size', async () => {
		const c = await client();
		await c.connectAndCreateStream();
		const types = c.messages.map((m) => m.type);
		expect(types.slice(0, 3)).toEqual([MSG.WINDOW_ACK_SIZE, MSG.SET_PEER_BANDWIDTH, MSG.SET_CHUNK_SIZE]);
		expect(c.messages[2]!.payload.readUInt32BE(0)).toBe(128);
		const result = c.messages.find((m) => m.amf?.[0] === '_result')!;
		// Longer than 128 bytes: it came in two chunks and read back whole.
		expect(result.payload.length).toBeGreaterThan(128);
		expect(result.amf![3]).toMatchObject({ code: 'NetConnection.Connect.Success', objectEncoding: 0 });
	});

	it('accepts connect as an AMF3 command message', async () => {
		const c = await client();
		c.send(MSG.COMMAND_AMF3, 0, Buffer.concat([Buffer.from([0]), encodeAmf0('connect', 1, { app: 'live' })]));
		const res = await c.waitForCommand('_result');
		expect(res[3]).toMatchObject({ code: 'NetConnection.Connect.Success' });
	});

	it('answers other commands: _result, _error for unknown ones with a transaction id, nothing otherwise', async () => {
		const c = await client();
		const sid = await c.connectAndCreateStream();
		c.command('getStreamLength', 7, null, 'x');
		expect((await c.waitForCommand('_result', 5000, (a) => a[1] === 7))[3]).toBe(0);
		c.command('_checkbw', 8, null);
		await c.waitForCommand('_result', 5000, (a) => a[1] === 8);
		c.command('releaseStream', 9, null, 'x');
		await c.waitForCommand('_result', 5000, (a) => a[1] === 9);
		c.command('FCPublish', 10, null, 'x');
		await c.waitForCommand('onFCPublish');
		c.command('noSuchThing', 0, null);
		c.command('frobnicate', 11, null);
		const err = await c.waitForCommand('_error', 5000, (a) => a[1] === 11);
		expect(err[3]).toMatchObject({ level: 'error', code: 'NetConnection.Call.Failed', description: "unknown command 'frobnicate'" });
		expect(c.isClosed).toBe(false);
		const status = await c.publish(sid, 'cmds');
		expect(status.code).toBe('NetStream.Publish.Start');
	});

	it('answers a ping request and acknowledges at the window size the client set', async () => {
		const c = await client();
		await c.connectAndCreateStream();
		const ping = Buffer.alloc(6);
		ping.writeUInt16BE(6, 0);
		ping.writeUInt32BE(123456, 2);
		c.send(MSG.USER_CONTROL, 0, ping, { csid: 2 });
		const pong = await c.waitFor((m) => m.type === MSG.USER_CONTROL && m.payload.readUInt16BE(0) === 7);
		expect(pong.payload.readUInt32BE(2)).toBe(123456);
		const win = Buffer.alloc(4);
		win.writeUInt32BE(5000);
		c.send(MSG.WINDOW_ACK_SIZE, 0, win, { csid: 2 });
		for (let i = 0; i < 10; i++) c.command('noop', 0, 'x'.repeat(1000));
		const ack = await c.waitFor((m) => m.type === MSG.ACK);
		expect(ack.payload.readUInt32BE(0)).toBeGreaterThanOrEqual(5000);
	});

	it('refuses play with a clear status and hangs up', async () => {
		const c = await client();
		const sid = await c.connectAndCreateStream();
		c.streamCommand(sid, 'play', null, 'cam');
		const st = await c.waitForCommand('onStatus');
		expect(st[3]).toMatchObject({ level: 'error', code: 'NetStream.Play.Failed' });
		await c.closed;
	});

	it('refuses a bad stream name with NetStream.Publish.BadName', async () => {
		const c = await client();
		const sid = await c.connectAndCreateStream();
		const st = await c.publish(sid, '../etc');
		expect(st).toMatchObject({ level: 'error', code: 'NetStream.Publish.BadName' });
		expect(st.description as string).toMatch(/invalid stream name/);
		await c.closed;
	});

	it('closes a connection that sends commands before connect', async () => {
		const c = await client();
		c.command('createStream', 2, null);
		await c.closed;
	});

	it('carries metadata, and media at chunk size 1 and at a huge chunk size', async () => {
		const { c, sid, pub } = await publisher('sizes');
		const got = collect(pub);
		c.send(MSG.DATA_AMF0, sid, encodeAmf0('@setDataFrame', 'onMetaData', new EcmaArray({ width: 320, height: 240, framerate: 25, encoder: 'test' })), { csid: 5 });
		c.setChunkSize(1);
		c.media(MSG.VIDEO, sid, 0, seqHeader.body);
		for (const f of frames.slice(0, 10)) c.media(MSG.VIDEO, sid, f.timestamp, f.body);
		c.setChunkSize(0x7fffffff);
		for (const f of frames.slice(10, 20)) c.media(MSG.VIDEO, sid, f.timestamp, f.body);
		await eventually(() => got.length === 20, 10_000);
		expect(got.map((f) => f.dts)).toEqual(frames.slice(0, 20).map((f) => f.timestamp));
		expect(got[0]!.keyframe).toBe(true);
		expect(pub.metadata).toMatchObject({ width: 320, framerate: 25, encoder: 'test' });
		expect(pub.video).toMatchObject({ width: 320, height: 240 });
	});

	it('unwraps timestamps across the 32-bit wrap, with extended timestamps and type 1/3 headers', async () => {
		const { c, sid, pub } = await publisher('wrap');
		const got = collect(pub);
		const start = 0xffffffff - 200;
		c.media(MSG.VIDEO, sid, start, seqHeader.body, { csid: 6, fmt: 0 });
		let ts = start;
		c.media(MSG.VIDEO, sid, ts, frames[0]!.body, { csid: 6, fmt: 0 });
		for (const [i, f] of frames.slice(1, 20).entries()) {
			ts = (ts + 40) >>> 0;
			// Type 1 headers with 40 ms deltas; some without the repeated extended field.
			c.media(MSG.VIDEO, sid, 40, f.body, { csid: 6, fmt: 1, extendedOnContinuation: i % 2 === 0 });
		}
		await eventually(() => got.length === 20, 10_000);
		for (let i = 1; i < got.length; i++) expect(got[i]!.dts - got[i - 1]!.dts).toBe(40);
		expect(got[0]!.dts).toBe(start);
		expect(got.at(-1)!.dts).toBe(start + 19 * 40);
		expect(got.at(-1)!.dts).toBeGreaterThan(0xffffffff);
	});

	it('drops an aborted partial message and goes on; uses 3-byte chunk stream ids', async () => {
		const { c, sid, pub } = await publisher('abort');
		const got = collect(pub);
		c.setChunkSize(100);
		c.media(MSG.VIDEO, sid, 0, seqHeader.body, { csid: 1000 });
		const big = frames[0]!.body;
		expect(big.length).toBeGreaterThan(200);
		const whole = (await import('./rtmp-client.js')).encodeChunks(MSG.VIDEO, sid, big, 100, { csid: 1000, timestamp: 0 });
		// The first chunk only (3-byte basic header + 11 + 100 bytes), then Abort for csid 1000.
		c.write(whole.subarray(0, 3 + 11 + 100));
		const abort = Buffer.alloc(4);
		abort.writeUInt32BE(1000);
		c.send(MSG.ABORT, 0, abort, { csid: 2 });
		for (const f of frames.slice(0, 5)) c.media(MSG.VIDEO, sid, f.timestamp, f.body, { csid: 1000 });
		await eventually(() => got.length === 5, 10_000);
		expect(server.rtmp!.connections().find((x) => x.stream === 'abort')?.counters.malformedMessages).toBe(0);
	});

	it('accepts H.264 signalled the enhanced RTMP way (FourCC avc1)', async () => {
		const { c, sid, pub } = await publisher('ertmp-avc');
		const got = collect(pub);
		const ex = (frameType: number, packetType: number, rest: Buffer): Buffer =>
			Buffer.concat([Buffer.from([0x80 | (frameType << 4) | packetType]), Buffer.from('avc1'), rest]);
		// SequenceStart carries the avcC; CodedFrames a 24-bit composition time, then the NAL units.
		c.media(MSG.VIDEO, sid, 0, ex(1, 0, seqHeader.body.subarray(5)));
		for (const f of frames.slice(0, 5)) {
			const key = f.body[0]! >> 4 === 1;
			c.media(MSG.VIDEO, sid, f.timestamp, ex(key ? 1 : 2, 1, f.body.subarray(2)));
		}
		await eventually(() => got.length === 5, 10_000);
		expect(got[0]!.keyframe).toBe(true);
		expect(pub.video).toMatchObject({ width: 320, height: 240 });
	});

	it('unpacks aggregate messages', async () => {
		const { c, sid, pub } = await publisher('aggr');
		const got = collect(pub);
		c.media(MSG.VIDEO, sid, 0, seqHeader.body);
		const sub = frames.slice(0, 3).map((f) => {
			const h = Buffer.alloc(11);
			h[0] = MSG.VIDEO;
			h.writeUIntBE(f.body.length, 1, 3);
			h.writeUIntBE(f.timestamp + 5000, 4, 3);
			const back = Buffer.alloc(4);
			back.writeUInt32BE(11 + f.body.length);
			return Buffer.concat([h, f.body, back]);
		});
		c.send(MSG.AGGREGATE, sid, Buffer.concat(sub), { csid: 6, timestamp: 100 });
		await eventually(() => got.length === 3, 10_000);
		expect(got.map((f) => f.dts)).toEqual(frames.slice(0, 3).map((f) => 100 + f.timestamp - frames[0]!.timestamp));
	});

	it('drops media sent before publish', async () => {
		const c = await client();
		const sid = await c.connectAndCreateStream();
		c.media(MSG.VIDEO, sid, 0, seqHeader.body);
		await eventually(() => (server.rtmp!.connections()[0]?.counters.droppedMessages ?? 0) >= 1, 5000);
		expect(c.isClosed).toBe(false);
	});

	for (const [what, body, reason] of [
		['enhanced RTMP HEVC', Buffer.concat([Buffer.from([0x90]), Buffer.from('hvc1'), Buffer.alloc(30, 1)]), /HEVC is not supported; publish H\.264/],
		['enhanced RTMP AV1', Buffer.concat([Buffer.from([0x90]), Buffer.from('av01'), Buffer.alloc(30, 1)]), /AV1 is not supported/],
		['enhanced RTMP VP9', Buffer.concat([Buffer.from([0x90]), Buffer.from('vp09'), Buffer.alloc(30, 1)]), /VP9 is not supported/],
		['FLV codec id 12 (HEVC)', Buffer.from([0x1c, 0, 0, 0, 0, 1, 2, 3]), /HEVC/],
		['Sorenson H.263', Buffer.from([0x12, 0, 0, 0, 0]), /H\.263 is not supported/],
	] as const) {
		it(`refuses ${what} with NetStream.Publish.Rejected and the reason, then hangs up`, async () => {
			const name = `codec${what.length}`;
			const { c, sid, pub } = await publisher(name);
			const ended = waitFor(pub, 'end', 5000);
			c.media(MSG.VIDEO, sid, 0, body);
			const st = await c.waitForCommand('onStatus', 5000, (a) => (a[3] as { level?: string }).level === 'error');
			expect(st[3]).toMatchObject({ code: 'NetStream.Publish.Rejected' });
			expect(String((st[3] as { description: string }).description)).toMatch(reason);
			const [endReason] = await ended;
			expect(endReason).toMatch(reason);
			await c.closed;
			expect(server.registry.get(name)?.live).toBe(false);
		});
	}

	it('refuses MP3 audio with the reason', async () => {
		const { c, sid } = await publisher('mp3');
		c.media(MSG.AUDIO, sid, 0, Buffer.from([0x2f, 0xff, 0xfb, 0x90, 0x00]));
		const st = await c.waitForCommand('onStatus', 5000, (a) => (a[3] as { level?: string }).level === 'error');
		expect((st[3] as { description: string }).description).toMatch(/audio codec MP3 is not supported; publish AAC/);
		await c.closed;
	});

	it('drops a malformed media message and keeps the stream; closes on repeated garbage without disturbing others', async () => {
		const { c, sid, pub } = await publisher('garbage');
		const other = await publisher('bystander');
		const otherFrames = collect(other.pub);
		other.c.media(MSG.VIDEO, other.sid, 0, seqHeader.body);
		const got = collect(pub);
		c.media(MSG.VIDEO, sid, 0, seqHeader.body);
		c.media(MSG.VIDEO, sid, 0, frames[0]!.body);
		// A NAL unit length running past the end of the message.
		const bad = Buffer.from(frames[1]!.body);
		bad.writeUInt32BE(0x7fffffff, 5);
		c.media(MSG.VIDEO, sid, 40, bad);
		c.media(MSG.VIDEO, sid, 80, frames[2]!.body);
		await eventually(() => got.length === 2, 5000);
		const conn = server.rtmp!.connections().find((x) => x.stream === 'garbage')!;
		expect(conn.counters.malformedMessages).toBe(1);
		expect(pub.ended).toBe(false);

		const ended = waitFor(pub, 'end', 5000);
		for (let i = 0; i < 30; i++) c.media(MSG.VIDEO, sid, 120 + i, bad);
		const [reason] = await ended;
		expect(reason).toMatch(/malformed messages/);
		await c.closed;
		for (const f of frames.slice(0, 5)) other.c.media(MSG.VIDEO, other.sid, f.timestamp, f.body);
		await eventually(() => otherFrames.length === 5, 5000);
		expect(other.pub.ended).toBe(false);
	});
});
