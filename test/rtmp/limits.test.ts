import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeAmf0 } from '../../ingest/rtmp/amf0.js';
import type { Server } from '../../server/server.js';
import { eventually, startTestServer } from '../helpers/server.js';
import { MSG, RtmpTestClient, encodeChunks } from './rtmp-client.js';

describe('RTMP limits', () => {
	let server: Server | null = null;
	const sockets: net.Socket[] = [];
	const clients: RtmpTestClient[] = [];
	afterEach(async () => {
		for (const s of sockets.splice(0)) s.destroy();
		for (const c of clients.splice(0)) c.close();
		await server?.close();
		server = null;
	});

	function rawConnect(port: number): Promise<net.Socket> {
		return new Promise((resolve, reject) => {
			const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
			s.on('error', reject);
			sockets.push(s);
		});
	}

	const closed = (s: net.Socket): Promise<void> => new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));

	it('closes connections that do not finish the handshake in time', async () => {
		server = await startTestServer({ rtmp: { handshakeTimeoutMs: 300 } });
		const silent = await rawConnect(server.rtmp!.port);
		const partial = await rawConnect(server.rtmp!.port);
		partial.write(Buffer.concat([Buffer.from([3]), Buffer.alloc(700)])); // C0 and half a C1
		await Promise.all([closed(silent), closed(partial)]);
		await eventually(() => server!.rtmp!.stats().connections === 0, 5000);
	});

	it('refuses a wrong protocol version at once with a reason (e.g. HTTP on the RTMP port)', async () => {
		server = await startTestServer();
		const s = await rawConnect(server.rtmp!.port);
		s.write('GET / HTTP/1.1\r\n\r\n');
		await closed(s);
		expect(server.rtmp!.stats().connections).toBe(0);
	});

	it('closes idle connections but keeps talking ones', async () => {
		server = await startTestServer({ rtmp: { idleTimeoutMs: 500 } });
		const idle = await RtmpTestClient.connect(server.rtmp!.port);
		const busy = await RtmpTestClient.connect(server.rtmp!.port);
		clients.push(idle, busy);
		await idle.connectAndCreateStream();
		await busy.connectAndCreateStream();
		const ping = Buffer.from([0, 6, 0, 0, 0, 1]);
		const timer = setInterval(() => busy.send(MSG.USER_CONTROL, 0, ping, { csid: 2 }), 100);
		try {
			await idle.closed;
			// Outlive the timeout twice over while talking.
			await new Promise((r) => setTimeout(r, 1000));
			expect(busy.isClosed).toBe(false);
		} finally {
			clearInterval(timer);
		}
		await busy.closed;
	});

	it('closes connections that do not publish in time, also after unpublishing', async () => {
		server = await startTestServer({ rtmp: { publishTimeoutMs: 600 } });
		const port = server.rtmp!.port;
		const lurker = await RtmpTestClient.connect(port);
		const publisher = await RtmpTestClient.connect(port);
		clients.push(lurker, publisher);
		await lurker.connectAndCreateStream();
		const sid = await publisher.connectAndCreateStream();
		expect((await publisher.publish(sid, 'timely')).code).toBe('NetStream.Publish.Start');
		// Pings keep the idle timeout away, not the publish deadline.
		const ping = Buffer.from([0, 6, 0, 0, 0, 1]);
		const timer = setInterval(() => {
			lurker.send(MSG.USER_CONTROL, 0, ping, { csid: 2 });
			publisher.send(MSG.USER_CONTROL, 0, ping, { csid: 2 });
		}, 100);
		try {
			await lurker.closed;
			await new Promise((r) => setTimeout(r, 800));
			expect(publisher.isClosed).toBe(false);
			publisher.command('FCUnpublish', 0, null, 'timely');
			await publisher.closed;
		} finally {
			clearInterval(timer);
		}
	});

	it('refuses a message announcing more than maxMessageSize before its body arrives', async () => {
		server = await startTestServer({ rtmp: { maxMessageSize: 10_000 } });
		const c = await RtmpTestClient.connect(server.rtmp!.port);
		clients.push(c);
		const sid = await c.connectAndCreateStream();
		c.send(MSG.DATA_AMF0, sid, Buffer.alloc(10_000, 5), { csid: 5 }); // at the limit: fine
		await new Promise((r) => setTimeout(r, 200));
		expect(c.isClosed).toBe(false);
		// Only the 12-byte header of a 10 001-byte message.
		c.write(encodeChunks(MSG.VIDEO, sid, Buffer.alloc(10_001), 128, { csid: 6 }).subarray(0, 12));
		await c.closed;
	});

	it('refuses connections beyond maxConnections and accepts again when one leaves', async () => {
		server = await startTestServer({ rtmp: { maxConnections: 3 } });
		const port = server.rtmp!.port;
		const first = await Promise.all([0, 1, 2].map(() => RtmpTestClient.connect(port)));
		clients.push(...first);
		await eventually(() => server!.rtmp!.stats().connections === 3, 5000);
		const extra = await rawConnect(port);
		await closed(extra);
		expect(server.rtmp!.stats().refusedConnections).toBe(1);
		for (const c of first) expect(c.isClosed).toBe(false);
		first[0]!.close();
		await eventually(() => server!.rtmp!.stats().connections === 2, 5000);
		const again = await RtmpTestClient.connect(port);
		clients.push(again);
		await again.connectAndCreateStream();
	});

	it('caps chunk streams and net streams per connection', async () => {
		server = await startTestServer();
		const c = await RtmpTestClient.connect(server.rtmp!.port);
		clients.push(c);
		await c.connectAndCreateStream();
		for (let i = 0; i < 10; i++) c.command('createStream', 100 + i, null);
		const err = await c.waitForCommand('_error', 5000);
		expect(String((err[3] as { description: string }).description)).toMatch(/at most 8 streams/);
		// Harmless data messages, each on a chunk stream of its own: the 65th new one is too many.
		for (let csid = 10; csid < 70; csid++) c.send(MSG.DATA_AMF0, 0, encodeAmf0('noop'), { csid });
		await new Promise((r) => setTimeout(r, 200));
		expect(c.isClosed).toBe(false);
		for (let csid = 70; csid < 100; csid++) c.send(MSG.DATA_AMF0, 0, encodeAmf0('noop'), { csid });
		await c.closed;
	});
});
