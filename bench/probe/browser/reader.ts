// Runs in the browser: reads the probe's timecode from every frame a <video>
// presents and records how long after capture it reached the screen.
import { layout, readTimecode } from '../timecode.js';
import type { ProbeResults } from '../types.js';

export type { FrameSample, ProbeResults } from '../types.js';

type FrameMeta = { expectedDisplayTime: number; receiveTime?: number; width: number; height: number };
type VideoWithRvfc = HTMLVideoElement & {
	requestVideoFrameCallback(cb: (now: number, meta: FrameMeta) => void): number;
};

/** Starts reading; the returned object fills up as frames are presented. */
export function readFrames(video: HTMLVideoElement): ProbeResults {
	const results: ProbeResults = { samples: [], unreadable: 0, firstFrameAt: null, width: 0, height: 0 };
	const canvas = document.createElement('canvas');
	const ctx = canvas.getContext('2d', { willReadFrequently: true });
	const v = video as VideoWithRvfc;
	const onFrame = (_now: number, meta: FrameMeta): void => {
		v.requestVideoFrameCallback(onFrame);
		if (!ctx) return;
		const w = video.videoWidth;
		const h = video.videoHeight;
		if (!w || !h) return;
		results.width = w;
		results.height = h;
		let strip: number;
		try {
			strip = layout(w, h).block * layout(w, h).rows;
		} catch {
			results.unreadable++;
			return;
		}
		if (canvas.width !== w || canvas.height !== strip) {
			canvas.width = w;
			canvas.height = strip;
		}
		ctx.drawImage(video, 0, 0, w, strip, 0, 0, w, strip);
		const px = ctx.getImageData(0, 0, w, strip).data;
		const code = readTimecode(
			(x, y) => {
				const i = (y * w + x) * 4;
				// Back to limited-range luma, the scale the code was drawn in.
				return 16 + (0.299 * (px[i] ?? 0) + 0.587 * (px[i + 1] ?? 0) + 0.114 * (px[i + 2] ?? 0)) * (219 / 255);
			},
			w,
			h,
		);
		if (!code) {
			results.unreadable++;
			return;
		}
		const presentedAt = performance.timeOrigin + meta.expectedDisplayTime;
		results.firstFrameAt ??= presentedAt;
		results.samples.push({
			seq: code.seq,
			delayMs: presentedAt - code.timeMs,
			receiveDelayMs: meta.receiveTime !== undefined ? performance.timeOrigin + meta.receiveTime - code.timeMs : null,
			presentedAt,
		});
	};
	v.requestVideoFrameCallback(onFrame);
	return results;
}
