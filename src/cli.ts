import { warn } from "./output.js";

export const HELP = `realfork: real fork() for Node.js, with the descriptors made visible

Usage
  $ realfork <command> [options]

Commands
  help               this text

Examples
  $ realfork help
`;

/** Runs the CLI; sets process.exitCode, never calls process.exit. */
export function main(argv: string[]): void {
  const [command] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(HELP);
    return;
  }
  warn(`realfork: unknown command '${command}'\n\n${HELP}`);
  process.exitCode = 2;
}
