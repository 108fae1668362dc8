/**
 * Line-oriented logging to stderr: one JSON object a line, so logs from
 * several instances can be merged and grepped. Level is set once at start.
 */
const levels = { debug: 10, info: 20, warn: 30, error: 40 } as const;
type Level = keyof typeof levels;

let threshold: number = levels.info;

export function setLogLevel(level: Level): void {
  threshold = levels[level];
}

function write(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (levels[level] < threshold) return;
  const line: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...fields };
  if (fields?.err instanceof Error) {
    line.err = { ...fields.err, message: fields.err.message, stack: fields.err.stack };
  }
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => write("debug", msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => write("info", msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => write("warn", msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => write("error", msg, fields),
};
