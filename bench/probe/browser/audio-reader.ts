// Runs in the browser: listens to a received MediaStream's audio the way the
// page plays it and records, for each of the probe's tone bursts, how long
// after its capture it reached the audio output.
import { markCaptureTime } from '../audio-marks.js';
import type { AudioSample } from '../audio-marks.js';

declare global {
	interface Window {
		/** The bundled AudioWorklet (bench/probe/browser/audio-worklet.ts), set by the benchmark. */
		probeWorkletSource?: string;
	}
}

export interface AudioProbe {
	samples: AudioSample[];
	/** The AudioContext's own output latency estimate, ms (part of what samples measure). */
	outputLatencyMs: number | null;
	error: string | null;
}

/**
 * Starts listening. The onset's time on the AudioContext clock becomes a
 * wall-clock time through getOutputTimestamp(): the moment that sample frame
 * leaves the output device, which is when a listener would hear it.
 */
export async function readAudio(stream: MediaStream): Promise<AudioProbe> {
	const probe: AudioProbe = { samples: [], outputLatencyMs: null, error: null };
	const source = window.probeWorkletSource;
	if (!source) throw new Error('probeWorkletSource is not set');
	const ctx = new AudioContext({ sampleRate: 48000, latencyHint: 'interactive' });
	await ctx.resume();
	const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
	await ctx.audioWorklet.addModule(url);
	const node = new AudioWorkletNode(ctx, 'probe-marks', { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
	node.port.onmessage = (ev: MessageEvent<{ frame: number; tone: number }>): void => {
		const ts = ctx.getOutputTimestamp();
		if (ts.contextTime === undefined || ts.performanceTime === undefined) return;
		const heard = performance.timeOrigin + ts.performanceTime + (ev.data.frame / ctx.sampleRate - ts.contextTime) * 1000;
		const markMs = markCaptureTime(ev.data.tone, heard);
		probe.samples.push({ markMs, delayMs: heard - markMs });
		probe.outputLatencyMs = (ctx.outputLatency + ctx.baseLatency) * 1000;
	};
	// Poll rather than wait for 'addtrack': it does not fire for tracks a script
	// adds, and a takeover may bring a new track.
	let current: { id: string; source: MediaStreamAudioSourceNode } | null = null;
	const attach = (): void => {
		const track = stream.getAudioTracks()[0];
		if (!track || track.id === current?.id) return;
		current?.source.disconnect();
		const src = ctx.createMediaStreamSource(new MediaStream([track]));
		src.connect(node);
		current = { id: track.id, source: src };
	};
	attach();
	setInterval(attach, 100);
	// The node outputs silence; connecting it keeps the graph pulled.
	node.connect(ctx.destination);
	return probe;
}
