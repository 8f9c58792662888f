/**
 * Wrong usage. The CLI prints one line on stderr, the command's name, the
 * reason and where the help is ("realfork serve: ... (see realfork serve
 * --help)"), and exits 2. `usage` is the command's help text; its first line
 * ("Usage: realfork serve ...") names the command the pointer gives.
 */
export class UsageError extends Error {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.name = "UsageError";
    this.usage = usage;
  }

  /** "realfork serve": the command whose --help explains. */
  get command(): string {
    return /^Usage: (realfork(?: [a-z][a-z-]*)?)/.exec(this.usage)?.[1] ?? "realfork";
  }

  /** The one line the CLI prints. */
  get line(): string {
    return `${this.command}: ${this.message} (see ${this.command} --help)`;
  }
}

/** Runs parseArgs (or any parsing), turning its errors into UsageError in the project's words. */
export function parse<T>(usage: string, run: () => T): T {
  try {
    return run();
  } catch (err) {
    throw new UsageError(parseArgsMessage(err as Error & { code?: string }), usage);
  }
}

/** node:util parseArgs's messages (several lines, with advice about '--') said in one line. */
function parseArgsMessage(err: Error & { code?: string }): string {
  const option = /'(-[^' ]*)/.exec(err.message)?.[1] ?? "";
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option '${option}'`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument '${/'([^']*)'/.exec(err.message)?.[1] ?? ""}'`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(err.message)) return `${option} takes no value`;
      if (/ambiguous/.test(err.message))
        return `${option} needs a value; one that starts with '-' is written ${option}=VALUE`;
      return `${option} needs a value`;
    default:
      return err.message.split("\n")[0] ?? err.message;
  }
}

export function positionals(values: string[], names: string[], usage: string): string[] {
  if (values.length < names.length) throw new UsageError(`missing <${names[values.length]}>`, usage);
  if (values.length > names.length) throw new UsageError(`unexpected argument '${values[names.length]}'`, usage);
  return values;
}

export function intOption(
  name: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
  usage: string,
): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, not '${text}'`, usage);
  }
  return Number(text);
}

export function portArg(text: string, min: number, usage: string): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > 65535) {
    throw new UsageError(`<port> must be a number from ${min} to 65535, not '${text}'`, usage);
  }
  return Number(text);
}

/**
 * A duration option (--timeout, --interval, --settle), in milliseconds. The
 * value carries its unit, `ms` or `s`, in every command: a bare number once
 * meant seconds in one command and milliseconds in another, so only 0 goes
 * without one.
 */
export function durationOption(
  name: string,
  text: string | undefined,
  fallbackMs: number,
  minMs: number,
  maxMs: number,
  usage: string,
): number {
  if (text === undefined) return fallbackMs;
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
  if (!m && /^\d+(\.\d+)?$/.test(text) && Number(text) !== 0)
    throw new UsageError(`${name} needs a unit: ${text}s or ${text}ms, not '${text}'`, usage);
  const ms = m ? Number(m[1]) * (m[2] === "s" ? 1000 : 1) : text === "0" ? 0 : Number.NaN;
  if (!Number.isInteger(ms) || ms < minMs || ms > maxMs)
    throw new UsageError(
      `${name} must be a duration from ${durationText(minMs)} to ${durationText(maxMs)} (as in 2s or 500ms), not '${text}'`,
      usage,
    );
  return ms;
}

/** 0, 500ms, 2s, 1.5s: how durations are written back to the user. */
export function durationText(ms: number): string {
  if (ms === 0) return "0";
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}
