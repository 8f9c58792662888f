export { closeInherited, openDescriptors } from "./lib/descriptors.js";
export { InvalidArgTypeError, OutOfRangeError, SyscallError } from "./lib/errors.js";
export { isLoopChild, LoopForkError } from "./lib/event-loop-child.js";
export {
  _exit,
  CHILD_ESCAPED_STATUS,
  type ForkOptions,
  ForkSafetyError,
  fork,
  isForkedChild,
  v8SingleThreaded,
} from "./lib/fork.js";
export { writeAll } from "./lib/output.js";
export * from "./lib/posix.js";
export { Reaper } from "./lib/reaper.js";
