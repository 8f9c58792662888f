// SIGTERM as soon as a command says anything: its handlers must already be
// there (installed before the listener), so it stops cleanly, exit 0, with
// nothing left behind, every time.
import { describe, expect, it } from "vitest";
import { cli } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck } from "./helpers/processes.js";

useLeftoverCheck();

const ROUNDS = 20;

/** Starts the CLI and sends SIGTERM at the first byte it writes (stdout or stderr). */
async function termAtFirstByte(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const p = spawnTracked(cli, args);
  let sent = false;
  const first = () => {
    if (sent) return;
    sent = true;
    p.child.kill("SIGTERM");
  };
  p.child.stdout?.once("data", first);
  p.child.stderr?.once("data", first);
  return p.exited();
}

describe("SIGTERM at the first byte of output", () => {
  it.each([
    [["serve", "0", "--host", "127.0.0.1", "--trace"]],
    [["serve", "0", "--host", "127.0.0.1", "--prefork", "2", "--trace"]],
    [["serve", "0", "--host", "127.0.0.1", "--prefork", "3", "--quiet"]],
  ])(`%j: exit 0 and nothing left, ${ROUNDS} times`, async (args) => {
    for (let i = 0; i < ROUNDS; i++)
      expect(await termAtFirstByte(args), `round ${i}`).toEqual({ code: 0, signal: null });
  });
});
