import { cli } from "./paths.js";
import { spawnTracked } from "./processes.js";

/** Runs the CLI to its end (stdin closed); its stdout parsed as JSON when it is. */
export async function runCli<T>(args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const p = spawnTracked(cli, args, { stdin: "ignore", env: options.env ?? process.env });
  const { code } = await p.exited(options.timeoutMs ?? 60_000);
  let json: T | null = null;
  try {
    json = JSON.parse(p.stdout()) as T;
  } catch {}
  return { code, json, stdout: p.stdout(), stderr: p.stderr() };
}
