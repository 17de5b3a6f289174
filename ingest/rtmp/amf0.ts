import { BadRequest, Unsupported } from '../../server/common/errors.js';

/** AMF0 type markers (Action Message Format 0, Adobe 2007). */
export const AMF0 = {
	NUMBER: 0x00,
	BOOLEAN: 0x01,
	STRING: 0x02,
	OBJECT: 0x03,
	MOVIECLIP: 0x04,
	NULL: 0x05,
	UNDEFINED: 0x06,
	REFERENCE: 0x07,
	ECMA_ARRAY: 0x08,
	OBJECT_END: 0x09,
	STRICT_ARRAY: 0x0a,
	DATE: 0x0b,
	LONG_STRING: 0x0c,
	UNSUPPORTED: 0x0d,
	RECORDSET: 0x0e,
	XML_DOCUMENT: 0x0f,
	TYPED_OBJECT: 0x10,
	AVMPLUS: 0x11,
} as const;

export type AmfValue = number | boolean | string | null | undefined | Date | AmfValue[] | AmfObject | EcmaArray;
export interface AmfObject {
	[key: string]: AmfValue;
}

/**
 * An associative array to be encoded as an AMF0 ECMA array (what onMetaData
 * carries). Decoding yields plain objects; this wrapper only steers encoding.
 */
export class EcmaArray {
	constructor(readonly entries: AmfObject) {}
}

/** Nesting deeper than this is refused: no real command needs it, and recursion must stay bounded. */
const MAX_DEPTH = 32;

/** Sets a key without letting `__proto__` reach the prototype. */
function setKey(obj: AmfObject, key: string, value: AmfValue): void {
	if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
	else obj[key] = value;
}

/**
 * Decodes AMF0 values from a buffer. Every read is bounds-checked; malformed
 * input throws BadRequest, an AMF3 switch or a reserved marker Unsupported.
 */
export class Amf0Reader {
	readonly #buf: Buffer;
	#off: number;

	constructor(buf: Buffer, offset = 0) {
		this.#buf = buf;
		this.#off = offset;
	}

	get offset(): number {
		return this.#off;
	}

	get remaining(): number {
		return this.#buf.length - this.#off;
	}

	#need(n: number, what: string): void {
		if (this.#off + n > this.#buf.length) throw new BadRequest(`AMF0 ${what} truncated at byte ${this.#off}`);
	}

	#u8(what: string): number {
		this.#need(1, what);
		return this.#buf[this.#off++] ?? 0;
	}

	#u16(what: string): number {
		this.#need(2, what);
		const v = this.#buf.readUInt16BE(this.#off);
		this.#off += 2;
		return v;
	}

	#u32(what: string): number {
		this.#need(4, what);
		const v = this.#buf.readUInt32BE(this.#off);
		this.#off += 4;
		return v;
	}

	#double(what: string): number {
		this.#need(8, what);
		const v = this.#buf.readDoubleBE(this.#off);
		this.#off += 8;
		return v;
	}

	#utf8(len: number, what: string): string {
		this.#need(len, what);
		const s = this.#buf.toString('utf8', this.#off, this.#off + len);
		this.#off += len;
		return s;
	}

	/** Reads one value. */
	read(): AmfValue {
		return this.#value(0);
	}

	/** Reads values until the end of the buffer. */
	readAll(): AmfValue[] {
		const out: AmfValue[] = [];
		while (this.remaining > 0) out.push(this.#value(0));
		return out;
	}

	#value(depth: number): AmfValue {
		if (depth > MAX_DEPTH) throw new BadRequest(`AMF0 values nested deeper than ${MAX_DEPTH}`);
		const marker = this.#u8('type marker');
		switch (marker) {
			case AMF0.NUMBER:
				return this.#double('number');
			case AMF0.BOOLEAN:
				return this.#u8('boolean') !== 0;
			case AMF0.STRING:
				return this.#utf8(this.#u16('string length'), 'string');
			case AMF0.LONG_STRING:
			case AMF0.XML_DOCUMENT:
				return this.#utf8(this.#u32('long string length'), 'long string');
			case AMF0.NULL:
				return null;
			case AMF0.UNDEFINED:
			case AMF0.UNSUPPORTED:
				return undefined;
			case AMF0.OBJECT:
				return this.#properties({}, depth);
			case AMF0.TYPED_OBJECT: {
				// The class name carries nothing we use; the properties do.
				this.#utf8(this.#u16('class name length'), 'class name');
				return this.#properties({}, depth);
			}
			case AMF0.ECMA_ARRAY: {
				// The count is a hint only (encoders get it wrong); the end marker rules.
				this.#u32('ECMA array count');
				return this.#properties({}, depth);
			}
			case AMF0.STRICT_ARRAY: {
				const count = this.#u32('strict array count');
				// Every element takes at least one byte: refuse counts the data cannot hold.
				if (count > this.remaining) throw new BadRequest(`AMF0 strict array of ${count} elements overruns the message`);
				const arr: AmfValue[] = [];
				for (let i = 0; i < count; i++) arr.push(this.#value(depth + 1));
				return arr;
			}
			case AMF0.DATE: {
				const ms = this.#double('date');
				this.#u16('date time zone');
				return new Date(ms);
			}
			case AMF0.REFERENCE:
				// No encoder we know sends them in commands or metadata, and they could
				// build cycles or exponentially shared graphs out of a few bytes.
				throw new Unsupported('AMF0 object references are not supported');
			case AMF0.OBJECT_END:
				throw new BadRequest(`AMF0 object end marker outside an object at byte ${this.#off - 1}`);
			case AMF0.AVMPLUS:
				throw new Unsupported('AMF3 values are not supported; send AMF0 (objectEncoding 0)');
			case AMF0.MOVIECLIP:
			case AMF0.RECORDSET:
				throw new Unsupported(`AMF0 type marker 0x${marker.toString(16).padStart(2, '0')} is reserved and not supported`);
			default:
				throw new BadRequest(`unknown AMF0 type marker 0x${marker.toString(16).padStart(2, '0')} at byte ${this.#off - 1}`);
		}
	}

	#properties(obj: AmfObject, depth: number): AmfObject {
		for (;;) {
			const keyLen = this.#u16('property name length');
			if (keyLen === 0) {
				// An empty name followed by the end marker closes the object.
				this.#need(1, 'object end');
				if (this.#buf[this.#off] === AMF0.OBJECT_END) {
					this.#off++;
					return obj;
				}
			}
			const key = this.#utf8(keyLen, 'property name');
			setKey(obj, key, this.#value(depth + 1));
		}
	}
}

/** Decodes every AMF0 value in `buf`. */
export function decodeAmf0(buf: Buffer): AmfValue[] {
	return new Amf0Reader(buf).readAll();
}

/** Encodes AMF0 values; objects become anonymous objects, arrays strict arrays. */
export function encodeAmf0(...values: AmfValue[]): Buffer {
	const parts: Buffer[] = [];
	for (const v of values) encodeValue(v, parts, 0);
	return Buffer.concat(parts);
}

function encodeString(s: string, parts: Buffer[]): void {
	const body = Buffer.from(s, 'utf8');
	if (body.length > 0xffff) {
		const h = Buffer.allocUnsafe(5);
		h[0] = AMF0.LONG_STRING;
		h.writeUInt32BE(body.length, 1);
		parts.push(h, body);
	} else {
		const h = Buffer.allocUnsafe(3);
		h[0] = AMF0.STRING;
		h.writeUInt16BE(body.length, 1);
		parts.push(h, body);
	}
}

function encodeKey(key: string, parts: Buffer[]): void {
	const body = Buffer.from(key, 'utf8');
	if (body.length > 0xffff) throw new BadRequest('AMF0 property name longer than 65535 bytes');
	const h = Buffer.allocUnsafe(2);
	h.writeUInt16BE(body.length);
	parts.push(h, body);
}

const OBJECT_END = Buffer.from([0, 0, AMF0.OBJECT_END]);

function encodeProperties(obj: AmfObject, parts: Buffer[], depth: number): void {
	for (const [k, v] of Object.entries(obj)) {
		// undefined properties are left out, as JSON does.
		if (v === undefined) continue;
		encodeKey(k, parts);
		encodeValue(v, parts, depth + 1);
	}
	parts.push(OBJECT_END);
}

function encodeValue(v: AmfValue, parts: Buffer[], depth: number): void {
	if (depth > MAX_DEPTH) throw new BadRequest(`AMF0 values nested deeper than ${MAX_DEPTH}`);
	if (v === null) {
		parts.push(Buffer.from([AMF0.NULL]));
	} else if (v === undefined) {
		parts.push(Buffer.from([AMF0.UNDEFINED]));
	} else if (typeof v === 'number') {
		const b = Buffer.allocUnsafe(9);
		b[0] = AMF0.NUMBER;
		b.writeDoubleBE(v, 1);
		parts.push(b);
	} else if (typeof v === 'boolean') {
		parts.push(Buffer.from([AMF0.BOOLEAN, v ? 1 : 0]));
	} else if (typeof v === 'string') {
		encodeString(v, parts);
	} else if (v instanceof Date) {
		const b = Buffer.alloc(11);
		b[0] = AMF0.DATE;
		b.writeDoubleBE(v.getTime(), 1);
		parts.push(b);
	} else if (Array.isArray(v)) {
		const h = Buffer.allocUnsafe(5);
		h[0] = AMF0.STRICT_ARRAY;
		h.writeUInt32BE(v.length, 1);
		parts.push(h);
		for (const item of v) encodeValue(item, parts, depth + 1);
	} else if (v instanceof EcmaArray) {
		const h = Buffer.allocUnsafe(5);
		h[0] = AMF0.ECMA_ARRAY;
		h.writeUInt32BE(Object.keys(v.entries).length, 1);
		parts.push(h);
		encodeProperties(v.entries, parts, depth);
	} else {
		parts.push(Buffer.from([AMF0.OBJECT]));
		encodeProperties(v, parts, depth);
	}
}
