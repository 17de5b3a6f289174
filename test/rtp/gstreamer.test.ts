import dgram from 'node:dgram';
import { SessionDescription } from 'werift';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { VideoFrame } from '../../server/core/media.js';
import type { Server } from '../../server/server.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { postRtp, runGst, stopAllGst } from './helpers.js';

describe('RTP ingest from GStreamer', () => {
	let server: Server;
	beforeAll(async () => {
		server = await startTestServer({ rtpIngest: { listenIp: '127.0.0.1' }, streams: { keyframeRequestMinIntervalMs: 100 } });
	});
	afterEach(async () => {
		await stopAllGst();
		for (const s of server.rtpIngest!.sessions()) s.close('test cleanup');
	});
	afterAll(async () => {
		await server.close();
	});

	it('goes live from a plain udpsink pipeline built from the SDP of the answer', async () => {
		const { status, body } = await postRtp(server, 'gst1');
		expect(status).toBe(201);
		// Everything the sender needs comes out of the SDP alone.
		const sdp = SessionDescription.parse(body.sdp);
		const [v, a] = sdp.media;
		const host = sdp.host!;
		const vpt = v!.rtp.codecs[0]!.payloadType;
		const apt = a!.rtp.codecs[0]!.payloadType;
		const pipeline =
			`videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! ` +
			`x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! video/x-h264,profile=constrained-baseline ! ` +
			// SPS/PPS with every IDR, aggregated with it into STAP-A packets.
			`rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=${vpt} ssrc=${v!.ssrc[0]!.ssrc} ! udpsink host=${host} port=${v!.port} ` +
			`audiotestsrc is-live=true ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=${apt} ssrc=${a!.ssrc[0]!.ssrc} ! udpsink host=${host} port=${a!.port}`;
		const gst = runGst(pipeline);
		const pub = server.registry.get('gst1')!.publication!;
		const frames: VideoFrame[] = [];
		pub.on('video', (f) => frames.push(f));
		let audio = 0;
		pub.on('audio', () => audio++);
		try {
			await eventually(() => frames.length >= 30 && audio >= 30, 20_000);
		} catch (err) {
			throw new Error(`${(err as Error).message}\n${gst.output()}`);
		}
		const info = await (await fetch(`${baseUrl(server)}/api/streams/gst1`)).json();
		expect(info).toMatchObject({
			live: true,
			video: { codec: 'h264', width: 320, height: 240, profile: 'Constrained Baseline' },
			audio: { codec: 'opus', sampleRate: 48000, channels: 2 },
		});
		expect(frames[0]!.keyframe).toBe(true);
		for (let i = 1; i < frames.length; i++) expect(frames[i]!.dts).toBeGreaterThan(frames[i - 1]!.dts);
		const stats = server.rtpIngest!.session('gst1')!.stats();
		expect(stats.video.lost).toBe(0);
		expect(stats.video.frames.framesDropped).toBe(0);
		await gst.stop();
	});

	it('syncs on rtpbin sender reports and gets a keyframe from GStreamer on PLI', async () => {
		// Like RTSP's client_port: the sender says where it listens for RTCP (a free port of ours to hand it).
		const probe = dgram.createSocket('udp4');
		await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
		const feedbackPort = probe.address().port;
		await new Promise<void>((r) => probe.close(() => r()));
		const { body } = await postRtp(server, 'gst2', { body: { video: { rtcpPort: feedbackPort } } });
		const vp = body.video.port;
		const ap = body.audio.port;
		const pipeline =
			`rtpbin name=rb ` +
			`videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! ` +
			// A 10 s GOP: a keyframe within a second can only be the answer to our PLI.
			`x264enc tune=zerolatency speed-preset=ultrafast key-int-max=250 ! video/x-h264,profile=constrained-baseline ! ` +
			`rtph264pay config-interval=-1 pt=96 ! rb.send_rtp_sink_0 ` +
			`rb.send_rtp_src_0 ! udpsink host=127.0.0.1 port=${vp} ` +
			`rb.send_rtcp_src_0 ! udpsink host=127.0.0.1 port=${body.video.rtcpPort} sync=false async=false ` +
			`udpsrc address=127.0.0.1 port=${feedbackPort} ! rb.recv_rtcp_sink_0 ` +
			`audiotestsrc is-live=true ! audioconvert ! audioresample ! opusenc ! rtpopuspay pt=111 ! rb.send_rtp_sink_1 ` +
			`rb.send_rtp_src_1 ! udpsink host=127.0.0.1 port=${ap} ` +
			`rb.send_rtcp_src_1 ! udpsink host=127.0.0.1 port=${body.audio.rtcpPort} sync=false async=false`;
		const gst = runGst(pipeline);
		const session = server.rtpIngest!.session('gst2')!;
		const pub = session.publication;
		const keyframes: number[] = [];
		pub.on('video', (f) => {
			if (f.keyframe) keyframes.push(performance.now());
		});
		try {
			await eventually(() => {
				const s = session.summary() as { synced: { video: boolean; audio: boolean } };
				return s.synced.video && s.synced.audio && keyframes.length >= 1;
			}, 30_000);
		} catch (err) {
			throw new Error(`${(err as Error).message}\n${gst.output()}`);
		}
		expect(keyframes).toHaveLength(1);
		const askedAt = performance.now();
		// The sender may be busy or the datagram lost: ask a few times, as a viewer's decoder would.
		await eventually(() => {
			session.requestKeyFrame('test');
			return keyframes.length >= 2;
		}, 5000, 300);
		expect(keyframes[1]! - askedAt).toBeLessThan(5000);
		expect(session.stats().video.senderReports).toBeGreaterThan(0);
		await gst.stop();
	});
});
