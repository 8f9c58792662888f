/** Wrong usage: the CLI prints the message and the command's usage on stderr, exit 2. */
export class UsageError extends Error {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super(message);
    this.name = "UsageError";
    this.usage = usage;
  }
}

/** Runs parseArgs (or any parsing), turning its errors into UsageError. */
export function parse<T>(usage: string, run: () => T): T {
  try {
    return run();
  } catch (err) {
    throw new UsageError((err as Error).message, usage);
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
