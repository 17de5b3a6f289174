import { describe, expect, it } from 'vitest';
import { publishKeyGuard, signPublishKey } from '../../server/auth/publish-keys.js';
import type { PublishRequest } from '../../server/core/stream.js';
import { testLogger } from '../helpers/server.js';

const req = (stream: string, key: string | null): PublishRequest => ({ stream, key, protocol: 'rtmp', remoteAddress: '127.0.0.1' });

describe('publish keys', () => {
	it('lets anyone publish when no keys are configured', () => {
		const guard = publishKeyGuard({ keys: {}, hmacSecret: null, logger: testLogger() });
		expect(() => guard(req('any', null))).not.toThrow();
	});

	it('checks static keys', () => {
		const guard = publishKeyGuard({ keys: { cam: 's3cret' }, hmacSecret: null, logger: testLogger() });
		expect(() => guard(req('cam', 's3cret'))).not.toThrow();
		expect(() => guard(req('cam', 'wrong'))).toThrow(/wrong publish key/);
		expect(() => guard(req('cam', null))).toThrow(/needs a publish key/);
		// With keys configured, a name without a key of its own is refused too.
		expect(() => guard(req('other', 's3cret'))).toThrow(/wrong publish key/);
	});

	it('checks signed keys and their expiry', () => {
		const now = 1_800_000_000_000;
		const guard = publishKeyGuard({ keys: {}, hmacSecret: 'hmac', logger: testLogger(), now: () => now });
		const valid = signPublishKey('hmac', 'cam', now / 1000 + 60);
		expect(() => guard(req('cam', valid))).not.toThrow();
		expect(() => guard(req('cam2', valid))).toThrow(/wrong publish key/);
		expect(() => guard(req('cam', signPublishKey('hmac', 'cam', now / 1000 - 1)))).toThrow(/expired/);
		expect(() => guard(req('cam', signPublishKey('other-secret', 'cam', now / 1000 + 60)))).toThrow(/wrong publish key/);
		expect(() => guard(req('cam', 'garbage.key'))).toThrow(/wrong publish key/);
	});
});
