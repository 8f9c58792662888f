// The peers bench and compare hold realfork serve against: other forking echo
// servers the project ships (peers/, c/echo_preforkserv.c), each with the
// same command line as c/echo_mpserv_fixed: <port> [buffer_size] [workers].
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const packageRoot = fileURLToPath(new URL("../../", import.meta.url));

/** The peer servers, by the name `--server` takes. */
export const PEERS = ["python", "perl-fork", "perl-prefork", "c-prefork"] as const;
export type PeerKind = (typeof PEERS)[number];

export const isPeer = (name: string): name is PeerKind => (PEERS as readonly string[]).includes(name);

/** The peers that keep workers forked ahead (and take a worker count). */
export const isPreforkPeer = (kind: PeerKind): boolean => kind === "perl-prefork" || kind === "c-prefork";

/** Workers of a prefork peer when none is asked for (the measurements used 4). */
export const DEFAULT_WORKERS = 4;

interface PeerProgram {
  label: (workers: number) => string;
  /** The interpreter, or null for a program run directly. */
  runtime: { env: string; fallback: string; install: string } | null;
  /** Arguments to the runtime that fail when the module the peer needs is missing. */
  probe: string[];
  /** What to install when the probe fails. */
  moduleInstall: string;
  /** The script (after the runtime) or the program. */
  path: string;
}

const perl = {
  env: "REALFORK_PERL",
  fallback: "perl",
  install: "install Perl (Debian: apt-get install perl)",
};
const netServer = "install Net::Server (Debian: apt-get install libnet-server-perl; elsewhere: cpan Net::Server)";

const programs: Record<PeerKind, PeerProgram> = {
  python: {
    label: () => "Python socketserver.ForkingTCPServer",
    runtime: {
      env: "REALFORK_PYTHON",
      fallback: "python3",
      install: "install Python 3 (Debian: apt-get install python3)",
    },
    probe: ["-c", "import socketserver; socketserver.ForkingTCPServer"],
    moduleInstall: "install a Python 3 with socketserver.ForkingTCPServer (3.3 or later, on a system with fork)",
    path: `${packageRoot}peers/echo_forking.py`,
  },
  "perl-fork": {
    label: () => "Perl Net::Server::Fork",
    runtime: perl,
    probe: ["-MNet::Server::Fork", "-e1"],
    moduleInstall: netServer,
    path: `${packageRoot}peers/echo_net_server_fork.pl`,
  },
  "perl-prefork": {
    label: (n) => `Perl Net::Server::PreFork, ${n} workers`,
    runtime: perl,
    probe: ["-MNet::Server::PreFork", "-e1"],
    moduleInstall: netServer,
    path: `${packageRoot}peers/echo_net_server_prefork.pl`,
  },
  "c-prefork": {
    label: (n) => `C echo_preforkserv, ${n} workers`,
    runtime: null,
    probe: [],
    moduleInstall: "build the C programs with: npm run build:c",
    path: `${packageRoot}c/build/echo_preforkserv`,
  },
};

export function peerLabel(kind: PeerKind, workers: number): string {
  return programs[kind].label(workers);
}

/** The command that starts a peer on `port` (0: the system picks). */
export function peerCommand(kind: PeerKind, port: number, bufferSize: number, workers: number): [string, string[]] {
  const p = programs[kind];
  const args = [String(port), String(bufferSize), ...(isPreforkPeer(kind) ? [String(workers)] : [])];
  if (!p.runtime) return [p.path, args];
  return [runtimeOf(kind) as string, [p.path, ...args]];
}

function runtimeOf(kind: PeerKind): string | null {
  const r = programs[kind].runtime;
  return r ? process.env[r.env] || r.fallback : null;
}

/**
 * Why a peer cannot run here, in one line that says how to install what is
 * missing; null when it can. The runtime is the one on PATH, or the one the
 * environment names (REALFORK_PYTHON, REALFORK_PERL).
 */
export function peerMissing(kind: PeerKind): string | null {
  const p = programs[kind];
  if (!p.runtime) return existsSync(p.path) ? null : `${p.path} is missing; ${p.moduleInstall}`;
  const runtime = runtimeOf(kind) as string;
  const probe = spawnSync(runtime, p.probe, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", timeout: 30_000 });
  if (probe.error && (probe.error as NodeJS.ErrnoException).code === "ENOENT")
    return `${runtime} not found (set ${p.runtime.env} to another one, or ${p.runtime.install})`;
  if (probe.error || probe.status !== 0) {
    const why = probe.error?.message ?? probe.stderr.trim().split("\n")[0] ?? `exit ${probe.status}`;
    return `${runtime} ${p.probe.join(" ")} failed: ${why}; ${p.moduleInstall}`;
  }
  return null;
}
