// SIGTERM as soon as a command says anything: its handlers must already be
// there (installed before the listener), so it stops cleanly, exit 0, with
// nothing left behind, every time.
import { describe, expect, it } from "vitest";
import { cli } from "./helpers/paths.js";
import { spawnTracked, useLeftoverCheck, withTimeout } from "./helpers/processes.js";
import { startServe, stop } from "./helpers/servers.js";

useLeftoverCheck();

const ROUNDS = 20;

/** Starts the CLI and sends SIGTERM at the first byte it writes (stdout or stderr). */
async function termAtFirstByte(args: string[], input?: string) {
  const p = spawnTracked(cli, args);
  if (input !== undefined) p.child.stdin?.write(input);
  const firstByte = new Promise<void>((resolve) => {
    let sent = false;
    const first = () => {
      if (sent) return;
      sent = true;
      p.child.kill("SIGTERM");
      resolve();
    };
    p.child.stdout?.once("data", first);
    p.child.stderr?.once("data", first);
  });
  // Starting (node twice, with the restart) is not what is timed here: a
  // loaded machine may take seconds for it. The stop is.
  await withTimeout(firstByte, 30_000, `first byte of realfork ${args.join(" ")}`);
  return { ...(await p.exited()), stderr: p.stderr() };
}

describe("SIGTERM at the first byte of output", () => {
  it.each([
    [["serve", "0", "--host", "127.0.0.1", "--trace"]],
    [["serve", "0", "--host", "127.0.0.1", "--prefork", "2", "--trace"]],
    [["serve", "0", "--host", "127.0.0.1", "--prefork", "3", "--quiet"]],
  ])(`%j: exit 0 and nothing left, ${ROUNDS} times`, async (args) => {
    for (let i = 0; i < ROUNDS; i++)
      expect(await termAtFirstByte(args), `round ${i}`).toMatchObject({ code: 0, signal: null });
  });

  it(`client, with stdin still open: ends its writer and exits 0, ${ROUNDS} times`, async () => {
    const server = await startServe(["--quiet"]);
    for (let i = 0; i < ROUNDS; i++) {
      // The first byte is the echo of this line; stdin stays open, so the
      // writer is still reading it when SIGTERM comes.
      const run = await termAtFirstByte(["client", "127.0.0.1", String(server.port)], `round ${i}\n`);
      expect(run, `round ${i}`).toEqual({ code: 0, signal: null, stderr: "realfork client: SIGTERM: stopped\n" });
    }
    expect(await stop(server)).toEqual({ code: 0, signal: null });
  });
});

describe("stderr closed before the first line", () => {
  it("serve --prefork --trace cannot write its trace: exit 1, no worker and no port left behind", async () => {
    const p = spawnTracked(cli, ["serve", "0", "--host", "127.0.0.1", "--prefork", "2", "--trace"]);
    p.child.stderr?.destroy();
    p.child.stdout?.destroy();
    expect(await p.died()).toEqual({ code: 1, signal: null });
  });
});
