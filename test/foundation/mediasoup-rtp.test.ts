import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { MEDIA_CODECS } from '../../server/sfu/codecs.js';
import { runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { eventually } from '../helpers/server.js';

/**
 * The foundation's proof that the provisioned worker forwards media: real
 * ffmpeg sends H.264 RTP into a PlainTransport, a consumer on a second
 * PlainTransport sends it on to a UDP socket of ours.
 */
describe('mediasoup worker forwards RTP', () => {
	let worker: types.Worker;
	let sock: dgram.Socket;
	const packets: Buffer[] = [];

	beforeAll(async () => {
		worker = await mediasoup.createWorker({ logLevel: 'warn' });
		sock = dgram.createSocket('udp4');
		sock.on('message', (msg) => {
			// RTCP shares the port (rtcpMux); keep RTP only (payload types below 72 or above 79 after masking).
			const pt = (msg[1] ?? 0) & 0x7f;
			if (msg.length >= 12 && (pt < 72 || pt > 79)) packets.push(msg);
		});
		await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
	});

	afterAll(async () => {
		await stopAllFfmpeg();
		worker.close();
		sock.close();
	});

	it('receives H.264 from ffmpeg on a consumer', async () => {
		const router = await worker.createRouter({ mediaCodecs: MEDIA_CODECS });
		const ingest = await router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: true });
		const ssrc = 11223344;
		const producer = await ingest.produce({
			kind: 'video',
			rtpParameters: {
				codecs: [
					{
						mimeType: 'video/H264',
						payloadType: 102,
						clockRate: 90000,
						parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
					},
				],
				encodings: [{ ssrc }],
			},
		});
		const egress = await router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: false });
		const { port } = sock.address();
		await egress.connect({ ip: '127.0.0.1', port });
		const consumer = await egress.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities });
		expect(consumer.kind).toBe('video');

		const ffmpeg = runFfmpeg([
			'-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
			'-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
			'-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-g', '25',
			'-f', 'rtp', '-payload_type', '102', '-ssrc', String(ssrc),
			`rtp://127.0.0.1:${ingest.tuple.localPort}?pkt_size=1200`,
		]);
		// The consumer rewrites SSRC and payload type to its own (mediasoup also
		// sends bandwidth probation packets on SSRC 1234: not media).
		const consumerSsrc = consumer.rtpParameters.encodings?.[0]?.ssrc;
		const media = (): Buffer[] => packets.filter((p) => p.readUInt32BE(8) === consumerSsrc);
		await eventually(() => media().length >= 50, 15_000);
		for (const p of media()) expect((p[1] ?? 0) & 0x7f).toBe(consumer.rtpParameters.codecs[0]?.payloadType);
		// Some packet of each access unit carries the marker bit.
		expect(media().some((p) => ((p[1] ?? 0) & 0x80) !== 0)).toBe(true);
		const stats = await producer.getStats();
		expect(stats[0]?.packetCount ?? 0).toBeGreaterThan(0);
		await ffmpeg.stop();
		router.close();
	});
});
