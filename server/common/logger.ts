import { pino } from 'pino';
import type { Logger as PinoLogger, LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type Logger = PinoLogger;
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
	level: LevelWithSilent;
	format: LogFormat;
}

const REDACT = {
	// Secrets never reach a log line, whichever component logs the object.
	paths: ['*.key', '*.secret', '*.token', '*.password', '*.credential', 'config.*.*.secret', 'headers.authorization'],
	censor: '***',
};

function build(opts: LoggerOptions): Logger {
	const usePretty = opts.format === 'pretty' || (opts.format === 'auto' && process.stdout.isTTY === true);
	if (usePretty) {
		// A synchronous pretty stream: no worker thread to outlive the server.
		const stream = pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
		return pino({ level: opts.level, redact: REDACT }, stream);
	}
	return pino({ level: opts.level, redact: REDACT, base: { app: 'subsecond' } });
}

const initialLevel = (process.env.SUBSECOND_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info')) as LevelWithSilent;

/**
 * The process-wide root logger. Components take a child of the logger they are
 * given; this one only serves code that runs before a server exists.
 */
export let rootLogger: Logger = build({ level: initialLevel, format: 'auto' });

export function createLogger(opts: LoggerOptions): Logger {
	rootLogger = build(opts);
	return rootLogger;
}
