import { fixture } from "./paths.js";
import { spawnTracked } from "./processes.js";

export interface FixtureRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Every stdout line that is a JSON object, parsed. */
  events: Array<Record<string, unknown>>;
  stdout: string;
  stderr: string;
}

/** Runs test/fixtures/<name> in its own Node process and collects its JSON lines. */
export async function runFixture(
  name: string,
  args: string[] = [],
  nodeFlags: string[] = [],
  timeoutMs = 20_000,
): Promise<FixtureRun> {
  const p = spawnTracked(process.execPath, [...nodeFlags, fixture(name), ...args], { stdin: "ignore" });
  const { code, signal } = await p.exited(timeoutMs);
  const events = p
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { code, signal, events, stdout: p.stdout(), stderr: p.stderr() };
}

export function event(run: FixtureRun, name: string): Record<string, unknown> {
  const e = run.events.find((x) => x.event === name);
  if (!e) throw new Error(`no '${name}' event; stdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  return e;
}
