#!/usr/bin/env -S node --single-threaded --no-lazy --no-flush-bytecode --use-largepages=silent
// --single-threaded: V8 must not use background threads in a process that
// forks (see docs/architecture.md, "fork-safety rules"). The other three make
// each forked child cheaper (docs/benchmarks.md): functions compiled in the
// parent, and kept, are not compiled again in every child; node's code on
// large pages is copied with the page tables instead of faulted in by each
// child.
import { main } from "../dist/cli/main.js";

main(process.argv.slice(2));
