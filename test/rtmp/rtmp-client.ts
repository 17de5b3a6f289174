/**
 * A small RTMP client for tests: handshakes (plain or digest), sends chunks
 * exactly as a test asks (chunk types, chunk stream ids, extended timestamps,
 * chunk sizes), and reads what the server answers with its own, independent
 * chunk parser so that a bug in the server's parser cannot hide itself.
 */
import { createHmac, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { decodeAmf0, encodeAmf0 } from '../../ingest/rtmp/amf0.js';
import type { AmfObject, AmfValue } from '../../ingest/rtmp/amf0.js';

export const MSG = {
	SET_CHUNK_SIZE: 1,
	ABORT: 2,
	ACK: 3,
	USER_CONTROL: 4,
	WINDOW_ACK_SIZE: 5,
	SET_PEER_BANDWIDTH: 6,
	AUDIO: 8,
	VIDEO: 9,
	DATA_AMF3: 15,
	COMMAND_AMF3: 17,
	DATA_AMF0: 18,
	COMMAND_AMF0: 20,
	AGGREGATE: 22,
} as const;

const KEY_TAIL = Buffer.from('f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae', 'hex');
const FP_KEY = Buffer.concat([Buffer.from('Genuine Adobe Flash Player 001'), KEY_TAIL]);
const FMS_KEY = Buffer.concat([Buffer.from('Genuine Adobe Flash Media Server 001'), KEY_TAIL]);

function digestPos(p: Buffer, scheme: 0 | 1): number {
	const b = scheme === 0 ? 8 : 772;
	return ((p[b]! + p[b + 1]! + p[b + 2]! + p[b + 3]!) % 728) + b + 4;
}

function hmac(key: Buffer, ...parts: Buffer[]): Buffer {
	const h = createHmac('sha256', key);
	for (const p of parts) h.update(p);
	return h.digest();
}

export interface ServerMessage {
	csid: number;
	type: number;
	streamId: number;
	timestamp: number;
	payload: Buffer;
	/** Decoded AMF0 values for command and data messages. */
	amf?: AmfValue[];
}

export interface ChunkOptions {
	csid?: number;
	/** Header type of the first chunk; the client keeps per-csid state to make 1-3 meaningful. */
	fmt?: 0 | 1 | 2 | 3;
	/** Absolute timestamp for type 0; the delta for types 1 and 2; for type 3, an extended delta to repeat. */
	timestamp?: number;
	/** Repeat the extended timestamp on type 3 continuation chunks (ffmpeg and librtmp do). */
	extendedOnContinuation?: boolean;
}

/** Encodes one message into chunks, the way a test wants it. */
export function encodeChunks(
	type: number,
	streamId: number,
	payload: Buffer,
	chunkSize: number,
	o: ChunkOptions = {},
): Buffer {
	const csid = o.csid ?? 3;
	const fmt = o.fmt ?? 0;
	const ts = o.timestamp ?? 0;
	// A type 3 chunk starting a message repeats the extended field when `timestamp` says so.
	const ext = fmt !== 3 ? ts >= 0xffffff : o.timestamp !== undefined && ts >= 0xffffff;
	const basic = (f: number): Buffer => {
		if (csid < 64) return Buffer.from([(f << 6) | csid]);
		if (csid < 320) return Buffer.from([f << 6, csid - 64]);
		return Buffer.from([(f << 6) | 1, (csid - 64) & 0xff, (csid - 64) >> 8]);
	};
	const mh = Buffer.alloc([11, 7, 3, 0][fmt]!);
	if (fmt <= 2) mh.writeUIntBE(ext ? 0xffffff : ts, 0, 3);
	if (fmt <= 1) {
		mh.writeUIntBE(payload.length, 3, 3);
		mh[6] = type;
	}
	if (fmt === 0) mh.writeUInt32LE(streamId, 7);
	const extBuf = Buffer.alloc(4);
	extBuf.writeUInt32BE(ts >>> 0);
	const parts: Buffer[] = [basic(fmt), mh];
	if (ext) parts.push(extBuf);
	for (let off = 0; off < payload.length || off === 0; off += chunkSize) {
		if (off > 0) {
			parts.push(basic(3));
			if (ext && (o.extendedOnContinuation ?? true)) parts.push(extBuf);
		}
		parts.push(payload.subarray(off, off + chunkSize));
		if (payload.length === 0) break;
	}
	return Buffer.concat(parts);
}

export interface ConnectOptions {
	host?: string;
	tls?: boolean;
	/** `digest` signs C1 like ffmpeg/Flash (scheme 0 or 1); `none` skips the handshake. */
	handshake?: 'plain' | 'digest' | 'none';
	scheme?: 0 | 1;
}

export class RtmpTestClient {
	readonly socket: net.Socket;
	readonly messages: ServerMessage[] = [];
	/** Set after a digest handshake: whether S1 and S2 were signed correctly. */
	handshakeCheck: { s1DigestValid: boolean; s2SignatureValid: boolean; s2EchoesC1: boolean } | null = null;
	chunkSize = 128;
	#inChunkSize = 128;
	#inBuf: Buffer = Buffer.alloc(0);
	readonly #inState = new Map<number, { ts: number; len: number; type: number; sid: number; delta: number; ext: boolean; parts: Buffer[]; got: number }>();
	readonly #waiters: { pred: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];
	readonly closed: Promise<void>;
	#isClosed = false;
	#txn = 1;

	private constructor(socket: net.Socket) {
		this.socket = socket;
		socket.on('error', () => undefined);
		this.closed = new Promise((resolve) =>
			socket.once('close', () => {
				this.#isClosed = true;
				resolve();
			}),
		);
	}

	get isClosed(): boolean {
		return this.#isClosed;
	}

	static async connect(port: number, o: ConnectOptions = {}): Promise<RtmpTestClient> {
		const host = o.host ?? '127.0.0.1';
		const socket = await new Promise<net.Socket>((resolve, reject) => {
			const s = o.tls
				? tls.connect({ port, host, rejectUnauthorized: false }, () => resolve(s))
				: net.connect({ port, host }, () => resolve(s));
			s.once('error', reject);
		});
		const c = new RtmpTestClient(socket);
		if ((o.handshake ?? 'plain') !== 'none') await c.#handshake(o.handshake === 'digest', o.scheme ?? 0);
		socket.on('data', (d: Buffer) => c.#onData(d));
		return c;
	}

	async #handshake(digest: boolean, scheme: 0 | 1): Promise<void> {
		const c1 = randomBytes(1536);
		c1.writeUInt32BE(0, 0);
		let clientDigest: Buffer | null = null;
		if (digest) {
			c1.set([9, 0, 124, 2], 4);
			const pos = digestPos(c1, scheme);
			clientDigest = hmac(FP_KEY.subarray(0, 30), c1.subarray(0, pos), c1.subarray(pos + 32));
			clientDigest.copy(c1, pos);
		} else {
			c1.writeUInt32BE(0, 4);
		}
		this.socket.write(Buffer.concat([Buffer.from([3]), c1]));
		const s = await this.#readExactly(1 + 1536 * 2);
		const s1 = s.subarray(1, 1537);
		const s2 = s.subarray(1537);
		if (s[0] !== 3) throw new Error(`S0 version ${s[0]}`);
		let s1DigestValid = false;
		for (const sch of [0, 1] as const) {
			const pos = digestPos(s1, sch);
			if (hmac(FMS_KEY.subarray(0, 36), s1.subarray(0, pos), s1.subarray(pos + 32)).equals(s1.subarray(pos, pos + 32))) s1DigestValid = true;
		}
		let s2SignatureValid = false;
		if (clientDigest) {
			const key = hmac(FMS_KEY, clientDigest);
			s2SignatureValid = hmac(key, s2.subarray(0, 1504)).equals(s2.subarray(1504));
		}
		this.handshakeCheck = { s1DigestValid, s2SignatureValid, s2EchoesC1: s2.equals(c1) };
		this.socket.write(s1); // C2
	}

	#readExactly(n: number): Promise<Buffer> {
		return new Promise((resolve, reject) => {
			let buf = Buffer.alloc(0);
			const onData = (d: Buffer): void => {
				buf = Buffer.concat([buf, d]);
				if (buf.length >= n) {
					this.socket.off('data', onData);
					this.socket.off('close', onClose);
					const rest = buf.subarray(n);
					if (rest.length) setImmediate(() => this.#onData(rest));
					resolve(buf.subarray(0, n));
				}
			};
			const onClose = (): void => reject(new Error('connection closed during the handshake'));
			this.socket.on('data', onData);
			this.socket.once('close', onClose);
		});
	}

	/** A deliberately simple, independent parser of what the server sends. */
	#onData(d: Buffer): void {
		this.#inBuf = Buffer.concat([this.#inBuf, d]);
		for (;;) {
			const b = this.#inBuf;
			if (b.length < 1) return;
			const fmt = b[0]! >> 6;
			let csid = b[0]! & 0x3f;
			let p = 1;
			if (csid === 0) {
				if (b.length < 2) return;
				csid = 64 + b[1]!;
				p = 2;
			} else if (csid === 1) {
				if (b.length < 3) return;
				csid = 64 + b[1]! + b[2]! * 256;
				p = 3;
			}
			const hl = [11, 7, 3, 0][fmt]!;
			if (b.length < p + hl) return;
			const st = this.#inState.get(csid) ?? { ts: 0, len: 0, type: 0, sid: 0, delta: 0, ext: false, parts: [], got: 0 };
			let field = st.ext ? -1 : 0;
			if (fmt <= 2) field = b.readUIntBE(p, 3);
			if (fmt <= 1) {
				st.len = b.readUIntBE(p + 3, 3);
				st.type = b[p + 6]!;
			}
			if (fmt === 0) st.sid = b.readUInt32LE(p + 7);
			p += hl;
			const ext = fmt <= 2 ? field === 0xffffff : st.ext;
			if (ext) {
				if (b.length < p + 4) return;
				field = b.readUInt32BE(p);
				p += 4;
			}
			const n = Math.min(this.#inChunkSize, st.len - st.got);
			if (b.length < p + n) return;
			if (st.got === 0) {
				if (fmt === 0) st.ts = field;
				else if (fmt <= 2) st.ts += field;
				if (fmt <= 2) st.ext = ext;
			}
			st.parts.push(Buffer.from(b.subarray(p, p + n)));
			st.got += n;
			this.#inBuf = b.subarray(p + n);
			this.#inState.set(csid, st);
			if (st.got >= st.len) {
				const payload = Buffer.concat(st.parts);
				st.parts = [];
				st.got = 0;
				this.#deliver({ csid, type: st.type, streamId: st.sid, timestamp: st.ts, payload });
			}
		}
	}

	#deliver(m: ServerMessage): void {
		if (m.type === MSG.SET_CHUNK_SIZE) this.#inChunkSize = m.payload.readUInt32BE(0);
		if (m.type === MSG.COMMAND_AMF0 || m.type === MSG.DATA_AMF0) m.amf = decodeAmf0(m.payload);
		this.messages.push(m);
		for (const w of [...this.#waiters]) {
			if (w.pred(m)) {
				this.#waiters.splice(this.#waiters.indexOf(w), 1);
				w.resolve(m);
			}
		}
	}

	/** Resolves with the first message (already received or coming) that matches. */
	waitFor(pred: (m: ServerMessage) => boolean, timeoutMs = 5000): Promise<ServerMessage> {
		const have = this.messages.find(pred);
		if (have) return Promise.resolve(have);
		return new Promise((resolve, reject) => {
			const t = setTimeout(() => reject(new Error('timed out waiting for a server message')), timeoutMs);
			this.#waiters.push({
				pred,
				resolve: (m) => {
					clearTimeout(t);
					resolve(m);
				},
			});
		});
	}

	/** Resolves with the first command named `name` (e.g. `_result`, `onStatus`). */
	waitForCommand(name: string, timeoutMs = 5000, pred: (amf: AmfValue[]) => boolean = () => true): Promise<AmfValue[]> {
		return this.waitFor((m) => m.type === MSG.COMMAND_AMF0 && m.amf?.[0] === name && pred(m.amf), timeoutMs).then((m) => m.amf!);
	}

	write(buf: Buffer): void {
		if (!this.socket.destroyed) this.socket.write(buf);
	}

	send(type: number, streamId: number, payload: Buffer, o: ChunkOptions = {}): void {
		this.write(encodeChunks(type, streamId, payload, this.chunkSize, o));
	}

	setChunkSize(size: number): void {
		const p = Buffer.alloc(4);
		p.writeUInt32BE(size);
		this.send(MSG.SET_CHUNK_SIZE, 0, p, { csid: 2 });
		this.chunkSize = size;
	}

	command(name: string, txn: number, ...args: AmfValue[]): void {
		this.send(MSG.COMMAND_AMF0, 0, encodeAmf0(name, txn, ...args), { csid: 3 });
	}

	streamCommand(streamId: number, name: string, ...args: AmfValue[]): void {
		this.send(MSG.COMMAND_AMF0, streamId, encodeAmf0(name, 0, ...args), { csid: 8 });
	}

	/** connect + createStream; returns the stream id. */
	async connectAndCreateStream(app = 'live', extra: AmfObject = {}): Promise<number> {
		const t1 = this.#txn++;
		this.command('connect', t1, { app, type: 'nonprivate', flashVer: 'FMLE/3.0 (compatible; test)', tcUrl: `rtmp://127.0.0.1/${app}`, ...extra });
		const res = await this.waitForCommand('_result', 5000, (a) => a[1] === t1);
		const info = res[3] as AmfObject;
		if (info.code !== 'NetConnection.Connect.Success') throw new Error(`connect failed: ${JSON.stringify(info.code)}`);
		const t2 = this.#txn++;
		this.command('createStream', t2, null);
		const cs = await this.waitForCommand('_result', 5000, (a) => a[1] === t2);
		return cs[3] as number;
	}

	/** publish; resolves with the onStatus info object. */
	async publish(streamId: number, name: string): Promise<AmfObject> {
		this.streamCommand(streamId, 'publish', null, name, 'live');
		const st = await this.waitForCommand('onStatus', 5000);
		return st[3] as AmfObject;
	}

	/** Sends an FLV tag body as a media message. */
	media(type: number, streamId: number, timestamp: number, body: Buffer, o: ChunkOptions = {}): void {
		this.send(type, streamId, body, { csid: type === MSG.AUDIO ? 4 : 6, timestamp, ...o });
	}

	close(): void {
		this.socket.destroy();
	}
}

/** FLV tags of a recorded file: type, timestamp, body. */
export interface FlvTag {
	type: number;
	timestamp: number;
	body: Buffer;
}

export function parseFlv(file: Buffer): FlvTag[] {
	const tags: FlvTag[] = [];
	let off = 13;
	while (off + 11 <= file.length) {
		const type = file[off]!;
		const size = file.readUIntBE(off + 1, 3);
		const ts = (file.readUIntBE(off + 4, 3) | (file[off + 7]! << 24)) >>> 0;
		if (off + 11 + size > file.length) break;
		tags.push({ type, timestamp: ts, body: Buffer.from(file.subarray(off + 11, off + 11 + size)) });
		off += 11 + size + 4;
	}
	return tags;
}
