import { parseArgs } from "node:util";
import { table } from "../../inspect/fdview.js";
import { goOn, STEP_DIR_PREFIX, waitingProcesses } from "../../inspect/step.js";
import { writeAll } from "../../lib/output.js";
import { parse, UsageError } from "./usage.js";

export const STEP_USAGE = `Usage: realfork step <pid>...
       realfork step

Lets a process of \`realfork serve --step\` or \`realfork client --step\` go on
from the step it waits at (it prints "step [ROLE PID] STEP: ...; go on:
realfork step PID" before it waits). Several pids go on in the order given.
Without a pid: lists the processes that wait at a step now, with the step
each waits at, and removes what a killed stepped program left behind.

A stepped process waits on a FIFO, $TMPDIR/${STEP_DIR_PREFIX}ROOTPID-XXXXXX/PID;
only folders of your own (mode 0700, not a symlink) are looked in.
\`echo > that-path\` does the same as this command. Exit 1 when a process is
not stepped or not waiting at a step.

Options
  -h, --help   this text

Examples
  $ realfork serve 9190 --step          # terminal 1
  $ realfork step 4242                  # terminal 2, once per step
  $ realfork step 4242 4250             # the parent, then its child`;

const options = { help: { type: "boolean", short: "h" } } as const;

export async function stepCommand(argv: string[]): Promise<void> {
  const { values, positionals: pids } = parse(STEP_USAGE, () =>
    parseArgs({ args: argv, options, allowPositionals: true, strict: true }),
  );
  if (values.help) {
    process.stdout.write(`${STEP_USAGE}\n`);
    return;
  }
  if (pids.length === 0) {
    const waiting = waitingProcesses({ clean: true });
    const rows = [
      ["PID", "ROLE", "STEP", "WHAT IT DID"],
      ...waiting.map((w) => [String(w.pid), w.role, w.step, w.detail]),
    ];
    writeAll(1, waiting.length === 0 ? "no process waits at a step\n" : `${table(rows).join("\n")}\n`);
    return;
  }
  for (const text of pids) {
    if (!/^\d+$/.test(text) || Number(text) < 1)
      throw new UsageError(`<pid> must be a process id, not '${text}'`, STEP_USAGE);
  }
  for (const text of pids) await goOn(Number(text));
}
