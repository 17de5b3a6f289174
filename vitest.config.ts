import { defineConfig } from 'vitest/config';

// Tests start real servers, mediasoup workers, ffmpeg and Chromium: generous
// timeouts, and at most two files at once on these 2-core machines.
export default defineConfig({
	test: {
		include: ['test/**/*.test.ts'],
		testTimeout: 60_000,
		hookTimeout: 60_000,
		pool: 'forks',
		poolOptions: { forks: { maxForks: 2, minForks: 1 } },
		reporters: ['default'],
	},
});
