// Runs in the browser's AudioWorkletGlobalScope (bundled on its own): finds
// the probe's tone bursts in the received audio and posts each onset's
// sample frame (on the AudioContext's clock) to the page.
import { MarkDetector } from '../audio-marks.js';

declare const sampleRate: number;
declare const currentFrame: number;
declare class AudioWorkletProcessor {
	readonly port: MessagePort;
}
declare function registerProcessor(name: string, ctor: new () => AudioWorkletProcessor): void;

class MarkProcessor extends AudioWorkletProcessor {
	readonly #detector = new MarkDetector(sampleRate);
	#startFrame = -1;
	readonly #silence = new Float32Array(128);

	process(inputs: Float32Array[][]): boolean {
		if (this.#startFrame < 0) this.#startFrame = currentFrame;
		// No input yet (or for a while): count silence, so sample numbers stay on the context's clock.
		const channel = inputs[0]?.[0] ?? this.#silence;
		for (const onset of this.#detector.push(channel)) {
			this.port.postMessage({ frame: this.#startFrame + onset.sample, tone: onset.tone });
		}
		return true;
	}
}

registerProcessor('probe-marks', MarkProcessor);
