// Linux: Node builds V8 with v8_enable_private_mapping_fork_optimization, so
// V8 marks its heap MADV_DONTFORK and a plain fork() child has no heap (it
// dies with SIGSEGV the first time JavaScript runs). Before each fork, mark
// every mapping MADV_DOFORK again. V8 keeps marking new pages, so this has to
// run every time; adjacent mappings are merged into one madvise() call.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "../syscalls.h"

namespace realfork {
namespace {

void DoFork(uintptr_t start, uintptr_t end) {
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_DOFORK);  // EINVAL on special mappings: ignored
}

}  // namespace

void PrepareMappingsForFork() {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  static char buf[1 << 16];
  size_t used = 0;
  uintptr_t run_start = 0, run_end = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, sizeof(buf) - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += static_cast<size_t>(n);
    size_t line_start = 0;
    for (size_t i = 0; i < used; i++) {
      if (buf[i] != '\n') continue;
      buf[i] = '\0';
      char* line = buf + line_start;
      line_start = i + 1;
      char* rest;
      uintptr_t start = std::strtoull(line, &rest, 16);
      uintptr_t end = std::strtoull(rest + 1, &rest, 16);
      // [vvar], [vdso] and [vsyscall] are the kernel's; leave them alone.
      if (std::strstr(rest, "[v") != nullptr) continue;
      if (start == run_end) {
        run_end = end;
      } else {
        DoFork(run_start, run_end);
        run_start = start;
        run_end = end;
      }
    }
    std::memmove(buf, buf + line_start, used - line_start);
    used -= line_start;
  }
  DoFork(run_start, run_end);
  close(fd);
}

}  // namespace realfork
