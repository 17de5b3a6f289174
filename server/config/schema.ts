import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

// Every setting has a default here; a config file and SUBSECOND_* env vars
// override them. Objects are strict: an unknown key is an error that names it.

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().min(1);
const ms = z.number().int().min(1);
const secret = z.string().min(1).nullable();

const tls = z
	.strictObject({
		/** PEM certificate (chain) file. Both cert and key set turn TLS on. */
		cert: z.string().min(1).nullable().default(null),
		key: z.string().min(1).nullable().default(null),
	})
	.prefault({})
	.refine((t) => (t.cert === null) === (t.key === null), {
		message: 'cert and key must be set together',
	});

export const httpSchema = z
	.strictObject({
		host: z.string().min(1).default('0.0.0.0'),
		port: port.default(8080),
		/** HTTPS instead of HTTP on the same port when set. */
		tls,
		/** Allowed CORS origins for the API and HLS; `*` for any. */
		corsOrigin: z.string().min(1).default('*'),
	})
	.prefault({});

export const rtmpSchema = z
	.strictObject({
		enabled: z.boolean().default(true),
		host: z.string().min(1).default('0.0.0.0'),
		port: port.default(1935),
		/** The RTMP application publishers connect to: rtmp://HOST:PORT/<app>. */
		app: z.string().regex(/^[A-Za-z0-9_-]+$/).default('live'),
		handshakeTimeoutMs: ms.default(5_000),
		/** A connection that sends nothing for this long is closed. */
		idleTimeoutMs: ms.default(15_000),
		/**
		 * A connection must be publishing within this long of connecting (or of
		 * unpublishing), so clients that never publish cannot hold connection slots.
		 */
		publishTimeoutMs: ms.default(10_000),
		/** Largest RTMP message accepted, in bytes (a 4K keyframe fits in 8 MiB). */
		maxMessageSize: positiveInt.max(64 * 1024 * 1024).default(8 * 1024 * 1024),
		maxConnections: positiveInt.default(256),
		/** Chunk size we ask the peer to use for what we send. */
		outChunkSize: z.number().int().min(128).max(65536).default(4096),
		/** RTMPS listener (TLS); off while cert and key are null. */
		rtmps: z
			.strictObject({
				port: port.default(1936),
				cert: z.string().min(1).nullable().default(null),
				key: z.string().min(1).nullable().default(null),
			})
			.prefault({})
			.refine((t) => (t.cert === null) === (t.key === null), { message: 'cert and key must be set together' }),
	})
	.prefault({});

export const rtcSchema = z
	.strictObject({
		/**
		 * First WebRTC port. Worker i of the pool listens on port + i, UDP and TCP,
		 * through one mediasoup WebRtcServer each.
		 */
		port: port.default(40000),
		listenIp: z.string().min(1).default('0.0.0.0'),
		/**
		 * The address put in ICE candidates. null: the first non-internal IPv4
		 * address of this host, or 127.0.0.1 if there is none.
		 */
		announcedIp: z.string().min(1).nullable().default(null),
		/** mediasoup workers; 0 means one per CPU core. */
		workers: z.number().int().min(0).max(64).default(0),
		logLevel: z.enum(['debug', 'warn', 'error', 'none']).default('warn'),
		/** Starting send bitrate estimate for viewer transports, bits/s. */
		initialAvailableOutgoingBitrate: positiveInt.default(2_000_000),
		/** Port range for PlainTransports (ingest side); 0 and 0: any free port. */
		plainPortMin: port.default(0),
		plainPortMax: port.default(0),
		/** TURN servers handed to clients in the join answer. */
		iceServers: z
			.array(
				z.strictObject({
					urls: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
					username: z.string().optional(),
					credential: z.string().optional(),
				}),
			)
			.default([]),
	})
	.prefault({});

export const authSchema = z
	.strictObject({
		publish: z
			.strictObject({
				/** Static stream keys: stream NAME -> secret. Empty and no hmacSecret: anyone may publish. */
				keys: z.record(z.string().min(1), z.string().min(1)).default({}),
				/**
				 * Secret for signed keys `EXPIRY.SIGNATURE` (expiry in Unix seconds,
				 * signature = hex HMAC-SHA256 of `NAME:EXPIRY`), so an operator can hand
				 * out keys without restarting.
				 */
				hmacSecret: secret.default(null),
			})
			.prefault({}),
		viewer: z
			.strictObject({
				/** Require a JWT to watch (WebRTC and HLS). */
				required: z.boolean().default(false),
				/** HS256 secret. */
				jwtSecret: secret.default(null),
				/** Or a JWKS URL for asymmetric keys. */
				jwksUrl: z.url().nullable().default(null),
				issuer: z.string().min(1).nullable().default(null),
				audience: z.string().min(1).nullable().default(null),
			})
			.prefault({})
			.refine((v) => !v.required || v.jwtSecret !== null || v.jwksUrl !== null, {
				message: 'required viewer tokens need jwtSecret or jwksUrl',
			}),
		/** Bearer token for /api/admin; the admin API is off while null. */
		adminToken: secret.default(null),
	})
	.prefault({});

export const streamsSchema = z
	.strictObject({
		/**
		 * What to do with video WebRTC players cannot take as is (B-frames, High
		 * profile): `auto` transcodes it, `passthrough` forwards it anyway, `reject`
		 * refuses the publish.
		 */
		videoPolicy: z.enum(['auto', 'passthrough', 'reject']).default('auto'),
		/** Per-stream overrides of videoPolicy: stream NAME -> policy. */
		videoPolicyOverrides: z.record(z.string().min(1), z.enum(['auto', 'passthrough', 'reject'])).default({}),
		transcode: z
			.strictObject({
				preset: z
					.enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium'])
					.default('veryfast'),
				/** Video bitrate of the transcoded output in kbit/s; 0: chosen from the resolution. */
				videoBitrateKbps: z.number().int().min(0).default(0),
				/** Keyframe interval of the transcoded output. */
				keyframeIntervalMs: ms.default(1000),
			})
			.prefault({}),
		/** Opus bitrate of the AAC-to-Opus transcoder, bits/s. */
		opusBitrate: z.number().int().min(6000).max(510000).default(96000),
		/** Largest RTP packet the packetizer emits (payload + headers), bytes. */
		rtpMtu: z.number().int().min(576).max(9000).default(1200),
		/** Keyframe requests forwarded to a transcoder at most this often. */
		keyframeRequestMinIntervalMs: ms.default(500),
		maxViewersPerStream: positiveInt.default(2000),
		maxStreams: positiveInt.default(100),
	})
	.prefault({});

export const signalingSchema = z
	.strictObject({
		maxTransportsPerConnection: positiveInt.default(4),
		/** Requests per second per connection (token bucket, burst of twice this). */
		maxRequestsPerSecond: positiveInt.default(50),
		/** How long a client has to connect a transport before it is closed. */
		transportConnectTimeoutMs: ms.default(30_000),
	})
	.prefault({});

export const hlsSchema = z
	.strictObject({
		enabled: z.boolean().default(true),
		/** Folder for segments; cleaned at start-up. */
		dir: z.string().min(1).default(path.join(os.tmpdir(), 'subsecond-hls')),
		/** Target duration of partial segments (LL-HLS parts). */
		partTargetMs: z.number().int().min(100).max(1000).default(250),
		/** Target segment duration; segments cut at the first keyframe past it. */
		segmentTargetMs: z.number().int().min(500).max(10000).default(1000),
		/** Segments listed in the sliding playlist window. */
		windowSegments: z.number().int().min(3).max(60).default(6),
		/** Bytes of segments on disk across all streams before the oldest are deleted. */
		maxDiskBytes: positiveInt.default(1024 * 1024 * 1024),
		/** Time a finished stream's files stay for players to reach the end. */
		cleanupGraceMs: z.number().int().min(0).default(30_000),
		/** Longest a blocking playlist request waits before answering 503. */
		blockingTimeoutMs: ms.default(6_000),
	})
	.prefault({});

export const rtpIngestSchema = z
	.strictObject({
		/** Plain RTP ingest (POST /api/streams/NAME/rtp). */
		enabled: z.boolean().default(true),
		/** Address the per-session UDP ports bind to. */
		listenIp: z.string().min(1).default('0.0.0.0'),
		/** Address put in the answer and its SDP; null: the WebRTC announced address (rtc.announcedIp or this host's). */
		announcedIp: z.string().min(1).nullable().default(null),
		/** UDP ports for sessions: each media takes a port and the next (RTCP). 0 and 0: any free ports. */
		portMin: port.default(0),
		portMax: port.default(0),
		/** A session that receives nothing this long after its POST ends. */
		startTimeoutMs: ms.default(30_000),
		/** A session whose sender goes quiet this long ends (sender stopped without DELETE). */
		idleTimeoutMs: ms.default(10_000),
		/** Longest a packet waits behind a gap for a late one; packets in order never wait. */
		reorderWindowMs: z.number().int().min(0).max(500).default(10),
		/** Most packets held behind a gap before the gap is declared lost. */
		reorderMaxPackets: z.number().int().min(1).max(1024).default(32),
		/** Largest UDP datagram accepted, bytes. */
		maxPacketSize: z.number().int().min(256).max(65535).default(9000),
		/** Largest H.264 access unit accepted, bytes. */
		maxFrameSize: positiveInt.max(64 * 1024 * 1024).default(8 * 1024 * 1024),
		/** Only accept the SSRCs we announce; otherwise the first SSRC that arrives on a port is taken. */
		strictSsrc: z.boolean().default(false),
		/** Audio/video mapping error (from sender reports) beyond which the timeline is corrected, ms. */
		syncDriftMs: z.number().int().min(1).max(10_000).default(40),
		/** Send RTCP receiver reports to senders that send RTCP. */
		receiverReports: z.boolean().default(true),
	})
	.prefault({})
	.refine((r) => (r.portMin === 0) === (r.portMax === 0) && r.portMin <= r.portMax && (r.portMax === 0 || r.portMax - r.portMin >= 3), {
		message: 'portMin and portMax must both be 0, or a range of at least 4 ports',
	});

const webhookUrl = z.url().nullable().default(null);
export const webhooksSchema = z
	.strictObject({
		/** Called before a publish is accepted: 2xx allows, 403 or `{ allow: false }` denies. */
		publish: webhookUrl,
		/** When the publish hook cannot be reached in time: allow or deny. */
		publishOnFailure: z.enum(['allow', 'deny']).default('deny'),
		unpublish: webhookUrl,
		viewerJoin: webhookUrl,
		viewerLeave: webhookUrl,
		timeoutMs: ms.default(3_000),
		/**
		 * Signs every call: `X-Subsecond-Signature: sha256=HEX` is the HMAC-SHA256 of
		 * `TIMESTAMP.BODY` with this secret, TIMESTAMP being `X-Subsecond-Timestamp`.
		 */
		secret: secret.default(null),
	})
	.prefault({});

export const metricsSchema = z
	.strictObject({
		/** Serve GET /metrics (Prometheus text format). */
		enabled: z.boolean().default(true),
		/** Require the admin token (`Authorization: Bearer`) to scrape /metrics; needs auth.adminToken. */
		requireAdminToken: z.boolean().default(false),
		/** Longest a scrape spends polling mediasoup stats; what is left is polled on the next scrape. */
		sfuStatsBudgetMs: ms.max(10_000).default(250),
		/** mediasoup stats polled less than this long ago are reused, so frequent scrapes stay cheap. */
		sfuStatsMaxAgeMs: z.number().int().min(0).default(5_000),
	})
	.prefault({});

export const logSchema = z
	.strictObject({
		level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
		/** `auto`: pretty in a terminal, one JSON line per event otherwise. */
		format: z.enum(['auto', 'json', 'pretty']).default('auto'),
	})
	.prefault({});

export const configSchema = z
	.strictObject({
		http: httpSchema,
		rtmp: rtmpSchema,
		rtpIngest: rtpIngestSchema,
		rtc: rtcSchema,
		auth: authSchema,
		streams: streamsSchema,
		signaling: signalingSchema,
		hls: hlsSchema,
		webhooks: webhooksSchema,
		metrics: metricsSchema,
		log: logSchema,
		/** The ffmpeg binary (Debian 12's ffmpeg 5.1 has everything needed). */
		ffmpegPath: z.string().min(1).default('ffmpeg'),
	})
	.prefault({});

export type Config = z.infer<typeof configSchema>;
/** What a config file or an override may contain: any subset of Config. */
export type ConfigInput = z.input<typeof configSchema>;
