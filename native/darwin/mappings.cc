// macOS has no MADV_DONTFORK, and Node does not use V8's fork optimisation
// there: the child of fork() inherits the whole heap already.
#include "../syscalls.h"

namespace realfork {

void PrepareMappingsForFork() {}

}  // namespace realfork
