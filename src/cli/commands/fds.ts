import { isatty } from "node:tty";
import { parseArgs } from "node:util";
import { judgeSnapshot } from "../../inspect/check.js";
import { renderDot } from "../../inspect/dot.js";
import { type FdSnapshot, listenerOwner, processExists, snapshot } from "../../inspect/fdtable.js";
import { renderSnapshot } from "../../inspect/fdview.js";
import { type PictureModel, pictureModel, renderSvg } from "../../inspect/picture.js";
import { writeAll } from "../../lib/output.js";
import { durationOption, parse, portArg, positionals, UsageError } from "./usage.js";

export const FDS_USAGE = `Usage: realfork fds <pid> [options]
       realfork fds --port <port> [options]

Shows a process and its descendants, every descriptor each holds, and each
TCP socket with its holders (pid:fd): the number of holders is the socket's
reference count; the kernel closes the socket when it drops to zero. Holders
that share one open file description (made by dup() or inherited through
fork()) are marked (Linux: kcmp; not available on macOS).

Options
  --port P          start from the process that listens on TCP port P
  --json            machine-readable output (schema: docs/fds-json.md)
  --watch           redraw when anything changes (Ctrl-C ends)
  --interval T      how often --watch looks (default 250ms; with its unit: 100ms, 1s)
  --sockets         only stdio and sockets (hide the runtime's epoll, eventfds, pipes)
  --svg             a picture (SVG on stdout): processes, their descriptors, the
                    sockets they refer to with state, endpoints and refs; what
                    realfork check sees in this one look is drawn in red
                    (a moment of a correct server can show too: check confirms)
  --dot             the same picture as Graphviz DOT (render with: dot -Tpng)
  -h, --help        this text

Examples
  $ realfork fds 4242
  $ realfork fds --port 9190 --watch
  $ realfork fds --port 9190 --svg > fds.svg
  $ realfork fds 4242 --dot | dot -Tpng > fds.png
  $ realfork fds --port 9190 --json | jq '.sockets[] | {local, state, refs: (.holders | length)}'`;

const options = {
  port: { type: "string" },
  json: { type: "boolean" },
  watch: { type: "boolean" },
  interval: { type: "string" },
  sockets: { type: "boolean" },
  svg: { type: "boolean" },
  dot: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export class NotFoundError extends Error {}

export async function fdsCommand(argv: string[]): Promise<void> {
  const { values, positionals: pos } = parse(FDS_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${FDS_USAGE}\n`);
    return;
  }
  const formats = (["json", "svg", "dot"] as const).filter((f) => values[f]);
  if (formats.length > 1) throw new UsageError(`choose one of --${formats.join(", --")}`, FDS_USAGE);
  if (values.watch && (values.svg || values.dot))
    throw new UsageError("--watch redraws text; a picture is one snapshot (leave out --watch)", FDS_USAGE);
  if (values.interval !== undefined && !values.watch)
    throw new UsageError("--interval is how often --watch looks, and --watch is not given", FDS_USAGE);
  if (values.sockets && formats.length > 0)
    throw new UsageError(`--sockets trims the text table; --${formats[0]} always has every descriptor`, FDS_USAGE);
  let target: () => number;
  if (values.port !== undefined) {
    if (pos.length > 0)
      throw new UsageError(`give a <pid> or --port, not both ('${pos[0]}' and --port ${values.port})`, FDS_USAGE);
    const port = portArg(values.port, 1, FDS_USAGE);
    target = () => {
      const owner = listenerOwner(port);
      if (owner === null) throw new NotFoundError(`nothing listens on TCP port ${port} (or its owner is not readable)`);
      return owner;
    };
  } else {
    const [pidText] = positionals(pos, ["pid"], FDS_USAGE) as [string];
    if (!/^\d+$/.test(pidText) || Number(pidText) < 1)
      throw new UsageError(`<pid> must be a process id, not '${pidText}'`, FDS_USAGE);
    const pid = Number(pidText);
    target = () => {
      if (!processExists(pid)) {
        throw new NotFoundError(`no process ${pid}`);
      }
      return pid;
    };
  }
  const render = () => {
    const snap = snapshot(target());
    if (values.svg || values.dot) {
      const model = pictureOf(snap);
      return values.svg ? renderSvg(model) : renderDot(model);
    }
    return values.json ? `${JSON.stringify(snap, null, 2)}\n` : renderSnapshot(snap, { all: !values.sockets });
  };
  if (!values.watch) {
    writeAll(1, render());
    return;
  }
  await watch(render, durationOption("--interval", values.interval, 250, 20, 60_000, FDS_USAGE), frame(values.json));
}

/**
 * The picture of one snapshot with what check sees in it (one look, no
 * probes) drawn in red, and the prefork workers it recognised named so.
 */
function pictureOf(snap: FdSnapshot): PictureModel {
  const { findings, pool } = judgeSnapshot(snap);
  const roles = new Map((pool?.workers ?? []).map((pid) => [pid, "worker"]));
  return pictureModel(snap, { findings, roles });
}

/**
 * How --watch writes each snapshot: JSON as it is (a stream of documents);
 * text under a line with the time, on a cleared screen only when stdout is
 * a terminal (in a file or a pipe, each snapshot follows the last).
 */
function frame(json: boolean | undefined): (text: string) => string {
  if (json) return (text) => text;
  const clear = isatty(1) ? "\x1b[2J\x1b[H" : "";
  return (text) => `${clear}realfork fds --watch, ${new Date().toISOString()} (Ctrl-C ends)\n\n${text}`;
}

/** Redraws whenever the rendering changes; ends on SIGINT/SIGTERM or when the process is gone. */
function watch(render: () => string, intervalMs: number, show: (text: string) => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let last = "";
    const tick = () => {
      let text: string;
      try {
        text = render();
      } catch (err) {
        stop();
        if (err instanceof NotFoundError && last !== "") {
          writeAll(1, `${err.message}: stopped watching\n`);
          resolve();
        } else {
          reject(err);
        }
        return;
      }
      if (text === last) return;
      last = text;
      writeAll(1, show(text));
    };
    const timer = setInterval(tick, intervalMs);
    const stop = () => {
      clearInterval(timer);
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
    const onSignal = () => {
      stop();
      resolve();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    tick();
  });
}
