#!/usr/bin/env -S UV_THREADPOOL_SIZE=1 node --single-threaded --v8-pool-size=1 --no-short-builtin-calls --no-lazy --no-flush-bytecode --use-largepages=silent
// --single-threaded: V8 must not use background threads in a process that
// forks (see docs/architecture.md, "fork-safety rules"). The rest make each
// forked child cheaper (docs/benchmarks.md): functions compiled in the
// parent, and kept, are not compiled again in every child; node's code on
// large pages is copied with the page tables instead of faulted in by each
// child; one libuv pool thread and one V8 platform thread instead of four
// each (every thread is a stack and a guard mapping that fork() copies, and a
// descriptor glibc's child code writes); V8's builtins called where they are
// instead of copied into 1.5 MB of 4 KiB pages near the code.
import { main } from "../dist/cli/main.js";

main(process.argv.slice(2));
