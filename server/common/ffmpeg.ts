import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Unavailable } from './errors.js';

const execFileAsync = promisify(execFile);

/** Encoders the server runs ffmpeg with: H.264 transcoding, Opus for WebRTC, AAC for HLS. */
export const REQUIRED_ENCODERS = ['libx264', 'libopus', 'aac'] as const;

export interface FfmpegInfo {
	path: string;
	version: string;
	encoders: Set<string>;
}

const INSTALL_HINT =
	'install ffmpeg with libx264 and libopus (Debian/Ubuntu: `sudo apt-get install ffmpeg`; macOS: `brew install ffmpeg`) ' +
	'or point SUBSECOND_FFMPEG_PATH at one';

/** Checks that ffmpeg runs and has the encoders we need; throws a clear error otherwise. */
export async function checkFfmpeg(path: string): Promise<FfmpegInfo> {
	let version: string;
	let encodersText: string;
	try {
		const v = await execFileAsync(path, ['-hide_banner', '-version'], { timeout: 10_000 });
		version = /ffmpeg version (\S+)/.exec(v.stdout)?.[1] ?? 'unknown';
		const e = await execFileAsync(path, ['-hide_banner', '-encoders'], { timeout: 10_000, maxBuffer: 4 * 1024 * 1024 });
		encodersText = e.stdout;
	} catch (err) {
		throw new Unavailable(`ffmpeg is required but '${path}' does not run (${(err as Error).message.split('\n')[0]}); ${INSTALL_HINT}`, {
			cause: err,
		});
	}
	const encoders = new Set<string>();
	for (const line of encodersText.split('\n')) {
		const m = /^\s[VAS][F.][S.][X.][B.][D.]\s+(\S+)/.exec(line);
		if (m?.[1]) encoders.add(m[1]);
	}
	const missing = REQUIRED_ENCODERS.filter((e) => !encoders.has(e));
	if (missing.length > 0) {
		throw new Unavailable(`ffmpeg at '${path}' lacks the encoder(s) ${missing.join(', ')}; ${INSTALL_HINT}`);
	}
	return { path, version, encoders };
}
