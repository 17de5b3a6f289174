import { runFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import type { TestSourceOptions } from '../helpers/ffmpeg.js';
import { parseFlv } from './rtmp-client.js';
import type { FlvTag } from './rtmp-client.js';

/** Encodes a short test clip (not in real time) and returns its FLV tags. */
export async function encodeFlvTags(o: TestSourceOptions & { duration: number }): Promise<FlvTag[]> {
	const ff = runFfmpeg([...testSourceArgs({ ...o, realtime: false }), '-f', 'flv', '-flvflags', 'no_duration_filesize', 'pipe:1'], {
		stdout: 'pipe',
	});
	const chunks: Buffer[] = [];
	ff.child.stdout?.on('data', (d: Buffer) => chunks.push(d));
	const code = await ff.exited;
	if (code !== 0) throw new Error(`ffmpeg failed: ${ff.stderr()}`);
	return parseFlv(Buffer.concat(chunks));
}
