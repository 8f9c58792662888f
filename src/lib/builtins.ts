// node:fs and node:util for the modules a forking parent loads, taken with
// require(). An ES import of either reads every export, and with that loads
// the lazy ones too (fs.promises, fs streams and readline; util's MIME types
// and AbortController): ~0.6 MB more of the parent's memory, which each
// fork() copies and each child's exit frees again (docs/benchmarks.md).
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
export const fs = require("node:fs") as typeof import("node:fs");
export const util = require("node:util") as typeof import("node:util");
