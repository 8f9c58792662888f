#!/usr/bin/env node
// The node flags realfork needs (--single-threaded for fork(), and those
// that make each child cheaper) are listed once, in src/cli/node-flags.ts:
// when node was started without them, run() restarts it with them (execve,
// same pid) before anything else happens.
import { run } from "../dist/cli/main.js";

await run(process.argv.slice(2));
