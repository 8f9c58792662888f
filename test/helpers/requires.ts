// What some tests need beyond Node, a C toolchain, lsof and ss: the peers'
// runtimes (Python, Perl's Net::Server), and a browser for realfork watch. Where one is missing, the tests that
// need it are skipped, and the run says once what is missing and how to
// install it (test/setup/requirements.ts). With REALFORK_REQUIRE_ALL=1 (CI) a
// missing one fails those tests instead: CI runs them all.
import { spawnSync } from "node:child_process";
import type { TestContext } from "vitest";

export interface Need {
  /** What is missing, as its users name it. */
  what: string;
  /** A command that exits 0 only where it is there. */
  probe: [string, string[]];
  /** How to install it. */
  install: string;
}

export const PYTHON: Need = {
  what: "Python 3",
  probe: [process.env.REALFORK_PYTHON || "python3", ["-c", "import socketserver; socketserver.ForkingTCPServer"]],
  install: "apt-get install python3",
};

export const NET_SERVER: Need = {
  what: "Perl Net::Server",
  probe: [process.env.REALFORK_PERL || "perl", ["-MNet::Server::Fork", "-MNet::Server::PreFork", "-e1"]],
  install: "apt-get install libnet-server-perl",
};

/** Debian's chromium (or REALFORK_CHROMIUM), driven by playwright-core: test/watch.test.ts launches this path. */
export const CHROMIUM: Need = {
  what: "Chromium",
  probe: [process.env.REALFORK_CHROMIUM || "/usr/bin/chromium", ["--version"]],
  install: "apt-get install chromium",
};

export const ALL_NEEDS = [PYTHON, NET_SERVER, CHROMIUM];

const known = new Map<Need, string | null>();

/** "Perl Net::Server missing (apt-get install libnet-server-perl)", or null when it is there. */
export function missing(need: Need): string | null {
  if (!known.has(need)) {
    const [command, args] = need.probe;
    const r = spawnSync(command, args, { stdio: "ignore", timeout: 30_000 });
    known.set(need, r.status === 0 ? null : `${need.what} missing (${need.install})`);
  }
  return known.get(need) ?? null;
}

/** Whether a missing need fails the tests that need it (CI) instead of skipping them. */
export const requireAll = (env: NodeJS.ProcessEnv = process.env): boolean => env.REALFORK_REQUIRE_ALL === "1";

/**
 * What a test does about its needs: run (null), be skipped with a note, or
 * fail with a message when REALFORK_REQUIRE_ALL=1.
 */
export function verdict(
  needs: Need[],
  env: NodeJS.ProcessEnv = process.env,
): { skip: string } | { fail: string } | null {
  const lines = needs.map(missing).filter((line): line is string => line !== null);
  if (lines.length === 0) return null;
  return requireAll(env)
    ? { fail: `${lines.join("; ")}; REALFORK_REQUIRE_ALL=1 makes this a failure, not a skip` }
    : { skip: `skipped: ${lines.join("; ")}` };
}

/** Call first in a test: skips it (or fails it, see verdict) when a need is missing. */
export function requires(ctx: TestContext, ...needs: Need[]): void {
  const v = verdict(needs);
  if (v === null) return;
  if ("fail" in v) throw new Error(v.fail);
  ctx.skip(v.skip);
}
