import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import dgram from 'node:dgram';

const LIB = '/usr/lib/x86_64-linux-gnu/janus';

/** A free port for UDP (and TCP, for the HTTP transport). */
export async function freePort(kind: 'udp' | 'tcp'): Promise<number> {
	if (kind === 'tcp') {
		return new Promise((resolve, reject) => {
			const s = net.createServer();
			s.once('error', reject);
			s.listen(0, '127.0.0.1', () => {
				const port = (s.address() as net.AddressInfo).port;
				s.close(() => resolve(port));
			});
		});
	}
	return new Promise((resolve, reject) => {
		const s = dgram.createSocket('udp4');
		s.once('error', reject);
		s.bind(0, '127.0.0.1', () => {
			const port = s.address().port;
			s.close(() => resolve(port));
		});
	});
}

export interface JanusAnchorOptions {
	/** H.264 profile-level-id the feed uses. */
	profileLevelId?: string;
	audio?: boolean;
}

/**
 * Janus 1.1.2 (Debian's package) with its streaming plugin: one RTP mountpoint
 * fed the same H.264 (+ Opus) RTP as our server, watched over its HTTP API.
 * The side-by-side WebRTC anchor of the latency benchmark.
 */
export class JanusAnchor {
	readonly httpUrl: string;
	readonly videoPort: number;
	readonly audioPort: number;
	readonly mountpointId = 1;
	readonly #child: ChildProcess;
	readonly #dir: string;
	#log = '';

	private constructor(child: ChildProcess, dir: string, httpPort: number, videoPort: number, audioPort: number) {
		this.#child = child;
		this.#dir = dir;
		this.httpUrl = `http://127.0.0.1:${httpPort}/janus`;
		this.videoPort = videoPort;
		this.audioPort = audioPort;
		child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.#log = (this.#log + d).slice(-8000)));
		child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.#log = (this.#log + d).slice(-8000)));
	}

	static available(): boolean {
		return fs.existsSync('/usr/bin/janus') && fs.existsSync(`${LIB}/plugins/libjanus_streaming.so`);
	}

	static async create(opts: JanusAnchorOptions = {}): Promise<JanusAnchor> {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-janus-'));
		const httpPort = await freePort('tcp');
		const videoPort = await freePort('udp');
		const audioPort = await freePort('udp');
		const rtpMin = 20000 + Math.floor(Math.random() * 20000);
		fs.writeFileSync(
			path.join(dir, 'janus.jcfg'),
			`general: {
	configs_folder = "${dir}"
	plugins_folder = "${LIB}/plugins"
	transports_folder = "${LIB}/transports"
	events_folder = "${LIB}/events"
	loggers_folder = "${LIB}/loggers"
	debug_level = 3
	admin_secret = "unused-${Math.random().toString(36).slice(2)}"
}
media: {
	rtp_port_range = "${rtpMin}-${rtpMin + 200}"
}
nat: {
	nice_debug = false
	ignore_mdns = true
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}
events: {
	broadcast = false
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
`,
		);
		fs.writeFileSync(
			path.join(dir, 'janus.transport.http.jcfg'),
			`general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = ${httpPort}
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
}
cors: {
}
`,
		);
		const audio = opts.audio ?? true;
		fs.writeFileSync(
			path.join(dir, 'janus.plugin.streaming.jcfg'),
			`general: {
}
probe: {
	type = "rtp"
	id = 1
	description = "latency probe"
	media = (
		{
			type = "video"
			mid = "v"
			port = ${videoPort}
			pt = 96
			codec = "h264"
			fmtp = "profile-level-id=${opts.profileLevelId ?? '42e01f'};packetization-mode=1"
		}${
			audio
				? `,
		{
			type = "audio"
			mid = "a"
			port = ${audioPort}
			pt = 111
			codec = "opus"
		}`
				: ''
		}
	)
}
`,
		);
		const child = spawn('janus', ['-F', dir, '-C', path.join(dir, 'janus.jcfg'), '-N', '-o'], {
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		const anchor = new JanusAnchor(child, dir, httpPort, videoPort, audioPort);
		// Ready when the HTTP API answers.
		const deadline = Date.now() + 15_000;
		for (;;) {
			try {
				const res = await fetch(`${anchor.httpUrl}/info`);
				if (res.ok) break;
			} catch {
				// not yet
			}
			if (child.exitCode !== null || Date.now() > deadline) {
				await anchor.close();
				throw new Error(`janus did not start:\n${anchor.#log}`);
			}
			await new Promise((r) => setTimeout(r, 100));
		}
		return anchor;
	}

	get log(): string {
		return this.#log;
	}

	async close(): Promise<void> {
		const child = this.#child;
		if (child.exitCode === null && child.signalCode === null) {
			const exited = new Promise((r) => child.once('exit', r));
			const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
			child.kill('SIGTERM');
			await exited;
			clearTimeout(kill);
		}
		fs.rmSync(this.#dir, { recursive: true, force: true });
	}
}
