export { closeInherited, openDescriptors } from "./descriptors.js";
export { InvalidArgTypeError, OutOfRangeError, SyscallError } from "./errors.js";
export { _exit, CHILD_ESCAPED_STATUS, ForkSafetyError, fork, isForkedChild, v8SingleThreaded } from "./fork.js";
export { writeAll } from "./output.js";
export * from "./posix.js";
export { Reaper } from "./reaper.js";
