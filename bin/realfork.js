#!/usr/bin/env -S node --single-threaded
// --single-threaded: V8 must not use background threads in a process that
// forks (see docs/architecture.md, "fork-safety rules").
import { main } from "../dist/cli.js";

main(process.argv.slice(2));
