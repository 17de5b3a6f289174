/** RTMP message type ids (Adobe RTMP specification 2012, sections 5.4 and 7.1). */
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
	SHARED_OBJECT_AMF3: 16,
	COMMAND_AMF3: 17,
	DATA_AMF0: 18,
	SHARED_OBJECT_AMF0: 19,
	COMMAND_AMF0: 20,
	AGGREGATE: 22,
} as const;

/** User control event types (section 7.1.7). */
export const USER_CONTROL = {
	STREAM_BEGIN: 0,
	STREAM_EOF: 1,
	STREAM_DRY: 2,
	SET_BUFFER_LENGTH: 3,
	STREAM_IS_RECORDED: 4,
	PING_REQUEST: 6,
	PING_RESPONSE: 7,
} as const;

/** Chunk stream ids we send on: protocol control must use 2; commands conventionally 3. */
export const CSID = { CONTROL: 2, COMMAND: 3 } as const;

/** Largest chunk size the specification allows (31 bits). */
export const MAX_CHUNK_SIZE = 0x7fffffff;

export function u32(n: number): Buffer {
	const b = Buffer.allocUnsafe(4);
	b.writeUInt32BE(n >>> 0);
	return b;
}

export function setPeerBandwidthPayload(size: number, limitType: 0 | 1 | 2): Buffer {
	const b = Buffer.allocUnsafe(5);
	b.writeUInt32BE(size >>> 0, 0);
	b[4] = limitType;
	return b;
}

export function userControlPayload(event: number, value: number): Buffer {
	const b = Buffer.allocUnsafe(6);
	b.writeUInt16BE(event, 0);
	b.writeUInt32BE(value >>> 0, 2);
	return b;
}

/** `::ffff:1.2.3.4` (IPv4 on a dual-stack socket) -> `1.2.3.4`. */
export function normalizeAddress(address: string | undefined): string {
	if (!address) return 'unknown';
	return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
