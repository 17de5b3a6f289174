import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signViewerToken, viewerJwtVerifier } from '../../server/auth/viewer-jwt.js';
import { SubsecondError } from '../../server/common/errors.js';
import type { Server } from '../../server/server.js';
import { NodeViewer } from '../../client/node/index.js';
import { SignalingError } from '../../client/shared/errors.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, startTestServer } from '../helpers/server.js';
import { publishRtp, rawClient } from './helpers.js';
import type { RawClient } from './helpers.js';

const SECRET = 'a-test-secret-of-reasonable-length';
const base = { required: true, jwtSecret: SECRET, jwksUrl: null, issuer: null, audience: null };

async function codeOf(p: Promise<void>): Promise<string> {
	try {
		await p;
		return 'ok';
	} catch (err) {
		if (err instanceof SubsecondError) return err.code;
		throw err;
	}
}

const hs256 = (claims: Record<string, unknown>, expSec: number | null, secret = SECRET): Promise<string> => {
	let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
	if (expSec !== null) jwt = jwt.setExpirationTime(Math.floor(Date.now() / 1000) + expSec);
	return jwt.sign(new TextEncoder().encode(secret));
};

describe('viewer JWT verifier (HS256)', () => {
	const verify = viewerJwtVerifier(base);

	it('accepts a valid token for the stream, `streams` lists and `*`', async () => {
		expect(await codeOf(verify('cam1', await signViewerToken({ secret: SECRET, stream: 'cam1', expiresInSec: 60 })))).toBe('ok');
		expect(await codeOf(verify('cam2', await hs256({ streams: ['cam1', 'cam2'] }, 60)))).toBe('ok');
		expect(await codeOf(verify('any', await hs256({ stream: '*' }, 60)))).toBe('ok');
		expect(await codeOf(verify('any', await hs256({ streams: ['*'] }, 60)))).toBe('ok');
	});

	it('refuses missing, expired, wrong-stream, unsigned-for-us and exp-less tokens', async () => {
		expect(await codeOf(verify('cam1', undefined))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', ''))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', 'not.a.jwt'))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await hs256({ stream: 'cam1' }, -3600)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await hs256({ stream: 'cam2' }, 60)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await hs256({ streams: ['cam2'] }, 60)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await hs256({}, 60)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await hs256({ stream: 'cam1' }, null)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await hs256({ stream: 'cam1' }, 60, 'another-secret-entirely')))).toBe('unauthorized');
		// alg "none" and a tampered payload.
		const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
		const body = Buffer.from(JSON.stringify({ stream: 'cam1', exp: 9999999999 })).toString('base64url');
		expect(await codeOf(verify('cam1', `${header}.${body}.`))).toBe('unauthorized');
		const good = await hs256({ stream: 'cam1' }, 60);
		const [h, , s] = good.split('.');
		expect(await codeOf(verify('cam2', `${h}.${Buffer.from(JSON.stringify({ stream: 'cam2', exp: 9999999999 })).toString('base64url')}.${s}`))).toBe(
			'unauthorized',
		);
		await expect(verify('cam1', await hs256({ stream: 'cam1' }, -3600))).rejects.toThrow(/expired/);
		await expect(verify('cam1', await hs256({ stream: 'cam2' }, 60))).rejects.toThrow(/does not grant stream cam1/);
	});

	it('checks issuer and audience when configured', async () => {
		const strict = viewerJwtVerifier({ ...base, issuer: 'https://auth.example', audience: 'subsecond' });
		const ok = await signViewerToken({ secret: SECRET, stream: 'cam1', expiresInSec: 60, issuer: 'https://auth.example', audience: 'subsecond' });
		expect(await codeOf(strict('cam1', ok))).toBe('ok');
		const wrongIss = await signViewerToken({ secret: SECRET, stream: 'cam1', expiresInSec: 60, issuer: 'https://evil', audience: 'subsecond' });
		expect(await codeOf(strict('cam1', wrongIss))).toBe('unauthorized');
		const noAud = await signViewerToken({ secret: SECRET, stream: 'cam1', expiresInSec: 60, issuer: 'https://auth.example' });
		expect(await codeOf(strict('cam1', noAud))).toBe('unauthorized');
	});

	it('lets everyone in when tokens are not required', async () => {
		const open = viewerJwtVerifier({ ...base, required: false, jwtSecret: null });
		expect(await codeOf(open('cam1', undefined))).toBe('ok');
		expect(await codeOf(open('cam1', 'garbage'))).toBe('ok');
	});
});

describe('viewer JWT verifier (JWKS)', () => {
	let jwksServer: http.Server;
	let jwksUrl: string;
	let privateKey: CryptoKey;
	let otherKey: CryptoKey;
	let fetches = 0;

	beforeAll(async () => {
		const pair = await generateKeyPair('ES256');
		privateKey = pair.privateKey;
		otherKey = (await generateKeyPair('ES256')).privateKey;
		const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'key-1', alg: 'ES256', use: 'sig' };
		jwksServer = http.createServer((req, res) => {
			fetches++;
			if (req.url === '/jwks.json') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
			else res.writeHead(500).end('broken');
		});
		await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
		jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
	});
	afterAll(async () => {
		await new Promise<void>((r) => jwksServer.close(() => r()));
	});

	const es256 = (claims: Record<string, unknown>, key: CryptoKey, kid = 'key-1', expSec = 60): Promise<string> =>
		new SignJWT(claims)
			.setProtectedHeader({ alg: 'ES256', kid })
			.setExpirationTime(Math.floor(Date.now() / 1000) + expSec)
			.sign(key);

	it('accepts tokens signed by a key of the set and refuses the rest', async () => {
		const verify = viewerJwtVerifier({ ...base, jwtSecret: null, jwksUrl });
		expect(await codeOf(verify('cam1', await es256({ stream: 'cam1' }, privateKey)))).toBe('ok');
		expect(await codeOf(verify('cam2', await es256({ streams: ['cam2'] }, privateKey)))).toBe('ok');
		expect(await codeOf(verify('cam1', await es256({ stream: 'cam2' }, privateKey)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await es256({ stream: 'cam1' }, privateKey, 'key-1', -60)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await es256({ stream: 'cam1' }, otherKey)))).toBe('unauthorized');
		expect(await codeOf(verify('cam1', await es256({ stream: 'cam1' }, otherKey, 'key-2')))).toBe('unauthorized');
		// HS256 tokens are not accepted when only a JWKS is configured.
		expect(await codeOf(verify('cam1', await hs256({ stream: 'cam1' }, 60)))).toBe('unauthorized');
		expect(fetches).toBeGreaterThan(0);
	});

	it('says unavailable, not unauthorized, when the key server is broken or down', async () => {
		const broken = viewerJwtVerifier({ ...base, jwtSecret: null, jwksUrl: jwksUrl.replace('jwks.json', 'missing.json') });
		expect(await codeOf(broken('cam1', await es256({ stream: 'cam1' }, privateKey)))).toBe('unavailable');
		const down = viewerJwtVerifier({ ...base, jwtSecret: null, jwksUrl: 'http://127.0.0.1:9/jwks.json' });
		expect(await codeOf(down('cam1', await es256({ stream: 'cam1' }, privateKey)))).toBe('unavailable');
	});

	it('takes both: HS256 by secret, ES256 by the key set', async () => {
		const both = viewerJwtVerifier({ ...base, jwksUrl });
		expect(await codeOf(both('cam1', await hs256({ stream: 'cam1' }, 60)))).toBe('ok');
		expect(await codeOf(both('cam1', await es256({ stream: 'cam1' }, privateKey)))).toBe('ok');
	});
});

describe('viewer tokens at join', () => {
	let server: Server | null = null;
	const clients: RawClient[] = [];
	afterEach(async () => {
		for (const c of clients.splice(0)) c.close();
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	it('refuses a viewer without a valid token for the stream, serves one with', async () => {
		server = await startTestServer({ auth: { viewer: { required: true, jwtSecret: SECRET } } });
		const pub = await publishRtp(server, 'private', { width: 320, height: 180 });
		const c = await rawClient(server);
		clients.push(c);
		const refuse = async (token: string | undefined, why: RegExp): Promise<void> => {
			const res = await c.req('join', { stream: 'private', ...(token !== undefined ? { token } : {}) });
			expect(res).toMatchObject({ ok: false, error: { code: 'unauthorized' } });
			expect(res.error.message).toMatch(why);
		};
		await refuse(undefined, /needs a viewer token/);
		await refuse(await hs256({ stream: 'private' }, -60), /expired/);
		await refuse(await hs256({ stream: 'public' }, 60), /does not grant/);
		await refuse('garbage', /not a JWT/);
		expect(server.registry.get('private')!.viewers).toBe(0);
		const good = await signViewerToken({ secret: SECRET, stream: 'private', expiresInSec: 60 });
		expect(await c.req('join', { stream: 'private', token: good })).toMatchObject({ ok: true, live: true });

		// The Node viewer passes its token the same way and gets media.
		await expect(NodeViewer.create({ server: baseUrl(server), stream: 'private' })).rejects.toMatchObject({ code: 'unauthorized' });
		await expect(NodeViewer.create({ server: baseUrl(server), stream: 'private' })).rejects.toBeInstanceOf(SignalingError);
		const viewer = await NodeViewer.create({ server: baseUrl(server), stream: 'private', token: good, iceAddress: '127.0.0.1' });
		await viewer.until((v) => v.video.keyframes >= 1, 15_000);
		await viewer.close();
		await pub.stop();
	});
});
