import { describe, expect, it } from 'vitest';
import { AMF0, Amf0Reader, EcmaArray, decodeAmf0, encodeAmf0 } from '../../ingest/rtmp/amf0.js';
import type { AmfValue } from '../../ingest/rtmp/amf0.js';
import { BadRequest, Unsupported } from '../../server/common/errors.js';
import { mutate, prng } from './prng.js';

describe('AMF0', () => {
	it('round-trips every value type it encodes', () => {
		const date = new Date(1_700_000_000_123);
		const values: AmfValue[] = [
			'connect',
			1,
			{ app: 'live', tcUrl: 'rtmp://h/live', fpad: false, capabilities: 239.5, nested: { a: [1, 'x', null] } },
			null,
			undefined,
			true,
			-0.25,
			date,
			['a', 2, { b: 3 }],
			'',
		];
		const decoded = decodeAmf0(encodeAmf0(...values));
		expect(decoded).toEqual(values);
		expect((decoded[7] as Date).getTime()).toBe(date.getTime());
	});

	it('writes and reads long strings past 65535 bytes', () => {
		const long = 'é'.repeat(40_000); // 80 000 bytes of UTF-8
		const buf = encodeAmf0(long);
		expect(buf[0]).toBe(AMF0.LONG_STRING);
		expect(decodeAmf0(buf)).toEqual([long]);
	});

	it('decodes ECMA arrays (onMetaData) into objects, ignoring a wrong count', () => {
		const buf = encodeAmf0('onMetaData', new EcmaArray({ width: 1280, height: 720, encoder: 'obs', stereo: true }));
		expect(buf[1 + 2 + 'onMetaData'.length]).toBe(AMF0.ECMA_ARRAY);
		// Encoders are known to write 0 as the count: the end marker decides.
		const off = 1 + 2 + 'onMetaData'.length + 1;
		buf.writeUInt32BE(0, off);
		expect(decodeAmf0(buf)).toEqual(['onMetaData', { width: 1280, height: 720, encoder: 'obs', stereo: true }]);
	});

	it('reads typed objects, XML documents and the unsupported marker', () => {
		const typed = Buffer.concat([
			Buffer.from([AMF0.TYPED_OBJECT, 0, 3]),
			Buffer.from('Foo'),
			Buffer.from([0, 1]),
			Buffer.from('x'),
			encodeAmf0(5),
			Buffer.from([0, 0, AMF0.OBJECT_END]),
		]);
		expect(decodeAmf0(typed)).toEqual([{ x: 5 }]);
		const xml = Buffer.concat([Buffer.from([AMF0.XML_DOCUMENT, 0, 0, 0, 3]), Buffer.from('<a/')]);
		expect(decodeAmf0(xml)).toEqual(['<a/']);
		expect(decodeAmf0(Buffer.from([AMF0.UNSUPPORTED]))).toEqual([undefined]);
	});

	it('keeps a __proto__ property as data, never as a prototype', () => {
		const buf = Buffer.concat([
			Buffer.from([AMF0.OBJECT, 0, 9]),
			Buffer.from('__proto__'),
			encodeAmf0({ polluted: true }),
			Buffer.from([0, 0, AMF0.OBJECT_END]),
		]);
		const [obj] = decodeAmf0(buf) as [Record<string, unknown>];
		expect(Object.getPrototypeOf(obj)).toBe(Object.prototype);
		expect(Object.keys(obj)).toEqual(['__proto__']);
		expect(({} as Record<string, unknown>).polluted).toBeUndefined();
	});

	it('refuses AMF3, references and reserved markers with clear errors', () => {
		expect(() => decodeAmf0(Buffer.from([AMF0.AVMPLUS, 0x06]))).toThrow(Unsupported);
		expect(() => decodeAmf0(Buffer.from([AMF0.AVMPLUS]))).toThrow(/AMF3/);
		expect(() => decodeAmf0(Buffer.from([AMF0.REFERENCE, 0, 0]))).toThrow(Unsupported);
		expect(() => decodeAmf0(Buffer.from([AMF0.MOVIECLIP]))).toThrow(/reserved/);
		expect(() => decodeAmf0(Buffer.from([AMF0.RECORDSET]))).toThrow(Unsupported);
		expect(() => decodeAmf0(Buffer.from([0x42]))).toThrow(/unknown AMF0 type marker 0x42/);
		expect(() => decodeAmf0(Buffer.from([AMF0.OBJECT_END]))).toThrow(BadRequest);
	});

	it('refuses truncated values and impossible counts without allocating', () => {
		expect(() => decodeAmf0(Buffer.from([AMF0.NUMBER, 1, 2]))).toThrow(/truncated/);
		expect(() => decodeAmf0(Buffer.from([AMF0.STRING, 0, 10, 65]))).toThrow(/truncated/);
		expect(() => decodeAmf0(Buffer.from([AMF0.LONG_STRING, 0xff, 0xff, 0xff, 0xff]))).toThrow(BadRequest);
		expect(() => decodeAmf0(Buffer.from([AMF0.STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, 5]))).toThrow(/overruns/);
		expect(() => decodeAmf0(Buffer.from([AMF0.OBJECT, 0, 1, 0x61]))).toThrow(BadRequest);
	});

	it('bounds nesting depth', () => {
		const deep = Buffer.concat([...Array.from({ length: 100 }, () => Buffer.from([AMF0.STRICT_ARRAY, 0, 0, 0, 1])), Buffer.from([AMF0.NULL])]);
		expect(() => decodeAmf0(deep)).toThrow(/nested deeper/);
		const ok = Buffer.concat([...Array.from({ length: 20 }, () => Buffer.from([AMF0.STRICT_ARRAY, 0, 0, 0, 1])), Buffer.from([AMF0.NULL])]);
		expect(() => decodeAmf0(ok)).not.toThrow();
	});

	it('reads value by value with offsets', () => {
		const r = new Amf0Reader(encodeAmf0('a', 2));
		expect(r.read()).toBe('a');
		expect(r.offset).toBe(4);
		expect(r.read()).toBe(2);
		expect(r.remaining).toBe(0);
	});

	it('fuzz: mutated commands and random bytes only ever throw BadRequest or Unsupported', () => {
		const seeds = [
			encodeAmf0('connect', 1, { app: 'live', type: 'nonprivate', flashVer: 'FMLE/3.0', tcUrl: 'rtmp://127.0.0.1:1935/live' }),
			encodeAmf0('@setDataFrame', 'onMetaData', new EcmaArray({ duration: 0, width: 640, height: 360, videocodecid: 7, encoder: 'Lavf59' })),
			encodeAmf0('publish', 0, null, 'name?key=abc', 'live'),
			encodeAmf0('_result', 1, { a: [1, [2, [3, { b: new Date(0) }]]] }, 'x'.repeat(70_000)),
		];
		const r = prng(0xa3f0);
		const deadline = Date.now() + 20_000;
		let cases = 0;
		let decoded = 0;
		for (let i = 0; i < 20_000 && Date.now() < deadline; i++) {
			const input = i % 10 === 0 ? r.bytes(r.int(200)) : mutate(seeds[i % seeds.length]!, r);
			cases++;
			try {
				const out = decodeAmf0(input);
				decoded++;
				// Whatever decodes re-encodes: no value the decoder makes is unencodable.
				expect(() => encodeAmf0(...out)).not.toThrow();
			} catch (err) {
				if (!(err instanceof BadRequest) && !(err instanceof Unsupported)) throw new Error(`case ${i}: ${String(err)}`);
			}
		}
		expect(cases).toBeGreaterThan(1000);
		expect(decoded).toBeGreaterThan(0);
	});
});
