#!/usr/bin/env node
// The node flags realfork needs (--single-threaded for fork(), and those
// that make each child cheaper) are listed once, in src/cli/node-flags.ts:
// when node was started without them, it is restarted with them (execve,
// same pid) before the commands are even loaded.
import { ensureCliFlags } from "../dist/cli/node-flags.js";

if (ensureCliFlags(process.argv.slice(2))) await (await import("../dist/cli/main.js")).run(process.argv.slice(2));
else process.exitCode = 2;
