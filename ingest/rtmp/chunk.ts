import { BadRequest, LimitExceeded } from '../../server/common/errors.js';
import { MAX_CHUNK_SIZE } from './protocol.js';

/** One reassembled RTMP message. */
export interface RtmpMessage {
	csid: number;
	type: number;
	streamId: number;
	/** Message timestamp as sent: milliseconds, 32 bits, wrapping. */
	timestamp: number;
	/**
	 * A view into receive or reassembly buffers that are reused: valid during
	 * the onMessage callback only. Copy what you keep.
	 */
	payload: Buffer;
}

export interface ChunkReaderOptions {
	/** Largest message accepted; a header announcing more is refused before any buffering. */
	maxMessageSize: number;
	/** Distinct chunk stream ids a peer may use (each keeps header state). */
	maxChunkStreams: number;
	/** Total size of messages being reassembled at once, across chunk streams. */
	maxPendingBytes: number;
}

export interface ChunkReaderStats {
	chunks: number;
	messages: number;
	/** Partial messages thrown away by Abort or by a new header in the middle of a message. */
	abortedMessages: number;
}

interface ChunkStreamState {
	timestamp: number;
	/** The timestamp field of the last header: a delta, or the absolute time after type 0. */
	tsField: number;
	/** Whether the last header used the 4-byte extended timestamp, and its value. */
	extended: boolean;
	extendedValue: number;
	length: number;
	type: number;
	streamId: number;
	/** Whether a message is being reassembled on this chunk stream. */
	inMessage: boolean;
	received: number;
	/** Reassembly buffer; null while the message's bytes came as one view. */
	buffer: Buffer | null;
	view: Buffer | null;
	/** Kept between messages so a steady stream of frames does not allocate one buffer each. */
	scratch: Buffer | null;
}

/** Reassembly buffers kept for reuse per connection, in bytes; larger messages get one-off buffers. */
const MAX_SCRATCH_BYTES = 2 * 1024 * 1024;

const HEADER_SIZES = [11, 7, 3, 0] as const;

/**
 * The receive side of the RTMP chunk stream: turns bytes into messages.
 *
 * Handles chunk types 0-3, 1-, 2- and 3-byte basic headers (chunk stream ids
 * 2..65599), extended timestamps, including on type 3 continuation chunks
 * where ffmpeg and librtmp repeat them and some encoders do not, Set Chunk
 * Size (via setChunkSize, applied from the next chunk) and Abort. Chunk
 * bodies are consumed as they arrive, so a huge chunk size costs no buffering
 * beyond the message itself; only a partial header (at most 18 bytes) is
 * ever carried over between reads.
 *
 * Protocol violations throw BadRequest, limits LimitExceeded; the reader is
 * then unusable and the connection should be closed.
 */
export class ChunkReader {
	readonly stats: ChunkReaderStats = { chunks: 0, messages: 0, abortedMessages: 0 };
	readonly #opts: ChunkReaderOptions;
	readonly #onMessage: (msg: RtmpMessage) => void;
	readonly #streams = new Map<number, ChunkStreamState>();
	#chunkSize = 128;
	#leftover: Buffer | null = null;
	/** The chunk stream whose chunk body is being read, and how much of it is left. */
	#body: ChunkStreamState | null = null;
	#bodyCsid = 0;
	#bodyLeft = 0;
	#pending = 0;
	#scratchBytes = 0;
	#stopped = false;

	constructor(opts: ChunkReaderOptions, onMessage: (msg: RtmpMessage) => void) {
		this.#opts = opts;
		this.#onMessage = onMessage;
	}

	get chunkSize(): number {
		return this.#chunkSize;
	}

	/** Bytes announced by messages still being reassembled. */
	get pendingBytes(): number {
		return this.#pending;
	}

	/** The peer's Set Chunk Size. */
	setChunkSize(size: number): void {
		if (!Number.isInteger(size) || size < 1 || size > MAX_CHUNK_SIZE) {
			throw new BadRequest(`invalid chunk size ${size}: must be 1 to ${MAX_CHUNK_SIZE}`);
		}
		this.#chunkSize = size;
	}

	/** The peer's Abort Message: drops the partial message of that chunk stream. */
	abort(csid: number): void {
		const st = this.#streams.get(csid);
		if (!st?.inMessage) return;
		if (this.#body === st) {
			// Abort arrives as its own message, so no chunk of `st` is mid-body.
			this.#body = null;
			this.#bodyLeft = 0;
		}
		this.#dropPartial(st);
	}

	/** Stops parsing, also in the middle of a push (from inside onMessage). */
	stop(): void {
		this.#stopped = true;
		this.#leftover = null;
		this.#streams.clear();
		this.#pending = 0;
		this.#scratchBytes = 0;
	}

	push(data: Buffer): void {
		if (this.#stopped) return;
		let buf = data;
		if (this.#leftover) {
			buf = Buffer.concat([this.#leftover, data]);
			this.#leftover = null;
		}
		let pos = 0;
		while (pos < buf.length && !this.#stopped) {
			if (this.#body) {
				pos = this.#readBody(buf, pos);
				continue;
			}
			const next = this.#readHeader(buf, pos);
			if (next < 0) {
				this.#leftover = Buffer.from(buf.subarray(pos));
				return;
			}
			pos = next;
		}
	}

	#dropPartial(st: ChunkStreamState): void {
		this.#pending -= st.length;
		st.inMessage = false;
		st.received = 0;
		st.buffer = null;
		st.view = null;
		this.stats.abortedMessages++;
	}

	/** Parses one chunk header at `pos`; returns the position after it, or -1 if it is incomplete. */
	#readHeader(buf: Buffer, pos: number): number {
		const avail = buf.length - pos;
		const b0 = buf[pos] ?? 0;
		const fmt = b0 >> 6;
		let csid = b0 & 0x3f;
		let p = pos + 1;
		if (csid === 0) {
			if (avail < 2) return -1;
			csid = 64 + (buf[p] ?? 0);
			p += 1;
		} else if (csid === 1) {
			if (avail < 3) return -1;
			csid = 64 + (buf[p] ?? 0) + (buf[p + 1] ?? 0) * 256;
			p += 2;
		}
		const headerSize = HEADER_SIZES[fmt as 0 | 1 | 2 | 3];
		if (p + headerSize > buf.length) return -1;

		let st = this.#streams.get(csid);
		if (!st) {
			if (fmt >= 2) throw new BadRequest(`chunk stream ${csid} starts with a type ${fmt} chunk, which has no message length`);
			if (this.#streams.size >= this.#opts.maxChunkStreams) {
				throw new LimitExceeded(`more than ${this.#opts.maxChunkStreams} chunk streams on one connection`);
			}
			st = {
				timestamp: 0,
				tsField: 0,
				extended: false,
				extendedValue: 0,
				length: 0,
				type: 0,
				streamId: 0,
				inMessage: false,
				received: 0,
				buffer: null,
				view: null,
				scratch: null,
			};
			this.#streams.set(csid, st);
		}

		let tsField = 0;
		let length = st.length;
		let type = st.type;
		let streamId = st.streamId;
		if (fmt <= 2) {
			tsField = buf.readUIntBE(p, 3);
			if (fmt <= 1) {
				length = buf.readUIntBE(p + 3, 3);
				type = buf[p + 6] ?? 0;
				if (fmt === 0) streamId = buf.readUInt32LE(p + 7);
			}
		}
		p += headerSize;

		let extended = false;
		let extendedValue = 0;
		if (fmt <= 2) {
			if (tsField === 0xffffff) {
				if (p + 4 > buf.length) return -1;
				extended = true;
				extendedValue = buf.readUInt32BE(p);
				tsField = extendedValue;
				p += 4;
			}
		} else if (st.extended) {
			if (!st.inMessage) {
				// A new message with the previous header's extended timestamp repeats it (spec 5.3.1.3).
				if (p + 4 > buf.length) return -1;
				extended = true;
				extendedValue = buf.readUInt32BE(p);
				p += 4;
			} else {
				// Continuation chunks: ffmpeg and librtmp repeat the extended timestamp,
				// some encoders do not. Take it only if it is the same value.
				if (p + 4 > buf.length) return -1;
				if (buf.readUInt32BE(p) === st.extendedValue) p += 4;
				extended = true;
				extendedValue = st.extendedValue;
			}
		}

		if (fmt !== 3 || !st.inMessage) {
			// A header that starts a message. One arriving mid-message abandons the
			// partial one (peers do this after a Set Chunk Size mismatch recovery).
			if (st.inMessage) this.#dropPartial(st);
			if (fmt === 0) {
				st.timestamp = tsField;
				st.tsField = tsField;
			} else if (fmt === 3) {
				// Same delta as before; after a type 0 that is its timestamp (spec 5.3.1.2.4).
				st.timestamp = (st.timestamp + (extended ? extendedValue : st.tsField)) >>> 0;
			} else {
				st.timestamp = (st.timestamp + tsField) >>> 0;
				st.tsField = tsField;
			}
			if (fmt !== 3) {
				st.extended = extended;
				st.extendedValue = extendedValue;
			}
			if (length > this.#opts.maxMessageSize) {
				throw new LimitExceeded(
					`message of ${length} bytes (type ${type}) exceeds the limit of ${this.#opts.maxMessageSize} bytes`,
				);
			}
			if (this.#pending + length > this.#opts.maxPendingBytes) {
				throw new LimitExceeded(`more than ${this.#opts.maxPendingBytes} bytes of messages in reassembly at once`);
			}
			st.length = length;
			st.type = type;
			st.streamId = streamId;
			st.inMessage = true;
			st.received = 0;
			st.buffer = null;
			st.view = null;
			this.#pending += length;
		}
		this.stats.chunks++;

		this.#body = st;
		this.#bodyCsid = csid;
		this.#bodyLeft = Math.min(this.#chunkSize, st.length - st.received);
		if (this.#bodyLeft === 0) this.#finishChunk(st, csid);
		return p;
	}

	#readBody(buf: Buffer, pos: number): number {
		const st = this.#body;
		if (!st) return pos;
		const n = Math.min(this.#bodyLeft, buf.length - pos);
		const piece = buf.subarray(pos, pos + n);
		if (st.received === 0 && n === st.length) {
			// The whole message in one piece: no copy.
			st.view = piece;
		} else {
			if (!st.buffer) {
				st.buffer = this.#reassemblyBuffer(st);
				if (st.view) {
					st.view.copy(st.buffer, 0);
					st.view = null;
				}
			}
			piece.copy(st.buffer, st.received);
		}
		st.received += n;
		this.#bodyLeft -= n;
		if (this.#bodyLeft === 0) this.#finishChunk(st, this.#bodyCsid);
		return pos + n;
	}

	#reassemblyBuffer(st: ChunkStreamState): Buffer {
		if (st.scratch && st.scratch.length >= st.length) return st.scratch.subarray(0, st.length);
		// Grow in steps so that frames of slowly rising sizes do not reallocate each time.
		const size = Math.max(st.length, Math.min(st.length * 2, 64 * 1024));
		const previous = st.scratch?.length ?? 0;
		if (this.#scratchBytes - previous + size > MAX_SCRATCH_BYTES) return Buffer.allocUnsafe(st.length);
		this.#scratchBytes += size - previous;
		st.scratch = Buffer.allocUnsafeSlow(size);
		return st.scratch.subarray(0, st.length);
	}

	#finishChunk(st: ChunkStreamState, csid: number): void {
		this.#body = null;
		if (st.received < st.length) return;
		const payload = st.view ?? st.buffer ?? Buffer.alloc(0);
		this.#pending -= st.length;
		st.inMessage = false;
		st.buffer = null;
		st.view = null;
		st.received = 0;
		this.stats.messages++;
		this.#onMessage({ csid, type: st.type, streamId: st.streamId, timestamp: st.timestamp, payload });
	}
}

/** Encodes a chunk basic header for any chunk stream id 2..65599. */
export function basicHeader(fmt: number, csid: number): Buffer {
	if (csid < 2 || csid > 65599) throw new RangeError(`chunk stream id ${csid} out of range`);
	if (csid < 64) return Buffer.from([(fmt << 6) | csid]);
	if (csid < 320) return Buffer.from([fmt << 6, csid - 64]);
	const v = csid - 64;
	return Buffer.from([(fmt << 6) | 1, v & 0xff, v >> 8]);
}

/**
 * The send side: splits messages into chunks of our chunk size. Every message
 * gets a type 0 header (we send few, small messages; compression buys nothing)
 * and type 3 continuation chunks that repeat an extended timestamp.
 */
export class ChunkWriter {
	#chunkSize = 128;

	get chunkSize(): number {
		return this.#chunkSize;
	}

	/** Call after sending Set Chunk Size; applies to the following messages. */
	setChunkSize(size: number): void {
		if (!Number.isInteger(size) || size < 1 || size > MAX_CHUNK_SIZE) throw new RangeError(`invalid chunk size ${size}`);
		this.#chunkSize = size;
	}

	encode(csid: number, type: number, streamId: number, timestamp: number, payload: Buffer): Buffer {
		const ts = timestamp >>> 0;
		const extended = ts >= 0xffffff;
		const header = Buffer.allocUnsafe(11 + (extended ? 4 : 0));
		header.writeUIntBE(extended ? 0xffffff : ts, 0, 3);
		header.writeUIntBE(payload.length, 3, 3);
		header[6] = type;
		header.writeUInt32LE(streamId >>> 0, 7);
		if (extended) header.writeUInt32BE(ts, 11);
		const parts: Buffer[] = [basicHeader(0, csid), header];
		const cont = extended ? Buffer.concat([basicHeader(3, csid), header.subarray(11)]) : basicHeader(3, csid);
		for (let off = 0; off < payload.length || off === 0; off += this.#chunkSize) {
			if (off > 0) parts.push(cont);
			parts.push(payload.subarray(off, off + this.#chunkSize));
			if (payload.length === 0) break;
		}
		return Buffer.concat(parts);
	}
}
