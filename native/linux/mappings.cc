// Linux: Node builds V8 with v8_enable_private_mapping_fork_optimization, so
// V8 marks its heap MADV_DONTFORK and a plain fork() child has no heap (it
// dies with SIGSEGV the first time JavaScript runs). Before each fork, mark
// every mapping MADV_DOFORK again; V8 keeps marking new pages, so this has to
// run every time.
//
// madvise() over a range with holes still applies to every mapping in it and
// reports ENOMEM at the end, so a few calls cover the whole address space.
// What stops it is a VM_IO mapping ([vvar]: EINVAL), so the kernel's special
// mappings, which never move, are found once in /proc/self/maps and stepped
// around. Reading /proc/self/maps on every fork cost ~70 us of the parent's
// serial accept-fork path (measured with ~100 mappings); this costs a few.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../syscalls.h"

namespace realfork {
namespace {

struct Range {
  uintptr_t start, end;
};

// Calls fn(start, end, name) for each line of /proc/self/maps.
template <typename Fn>
bool ForEachMapping(Fn fn) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  static char buf[1 << 16];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
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
      fn(start, end, rest);
    }
    std::memmove(buf, buf + line_start, used - line_start);
    used -= line_start;
  }
  close(fd);
  return true;
}

bool IsSpecial(const char* rest) { return std::strstr(rest, "[v") != nullptr; }  // [vvar], [vdso], [vsyscall]

void DoFork(uintptr_t start, uintptr_t end) {
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_DOFORK);  // EINVAL on special mappings: ignored
}

// The original pass: one madvise per run of adjacent ordinary mappings.
void WalkAndMark() {
  uintptr_t run_start = 0, run_end = 0;
  ForEachMapping([&](uintptr_t start, uintptr_t end, const char* rest) {
    if (IsSpecial(rest)) return;
    if (start == run_end) {
      run_end = end;
    } else {
      DoFork(run_start, run_end);
      run_start = start;
      run_end = end;
    }
  });
  DoFork(run_start, run_end);
}

// The spans between the special mappings, from address 0 to the top of the
// address space; found once. Not from the lowest to the highest mapping seen
// at the first fork: a page placed later below or above those (V8 picks its
// heap addresses at random) would stay MADV_DONTFORK, and a child touching
// it would die with SIGSEGV. The holes cost nothing: madvise() walks only
// the mappings that are there.
std::vector<Range> spans;
bool spans_ready = false, spans_usable = false;

void FindSpans() {
  spans_ready = true;
  std::vector<Range> special;
  bool ok = ForEachMapping([&](uintptr_t start, uintptr_t end, const char* rest) {
    if (IsSpecial(rest)) special.push_back({start, end});
  });
  if (!ok) return;
  const uintptr_t top = ~static_cast<uintptr_t>(0) - static_cast<uintptr_t>(sysconf(_SC_PAGESIZE)) + 1;
  uintptr_t from = 0;
  for (const Range& s : special) {
    if (s.start > from) spans.push_back({from, s.start});
    if (s.end > from) from = s.end;
  }
  if (top > from) spans.push_back({from, top});
  spans_usable = true;
}

}  // namespace

void PrepareMappingsForFork() {
  if (!spans_ready) FindSpans();
  if (spans_usable) {
    bool ok = true;
    for (const Range& s : spans) {
      if (madvise(reinterpret_cast<void*>(s.start), s.end - s.start, MADV_DOFORK) == 0 || errno == ENOMEM) continue;
      ok = false;  // a mapping the kernel refuses appeared inside a span: walk from now on
      break;
    }
    if (ok) return;
    spans_usable = false;
  }
  WalkAndMark();
}

}  // namespace realfork
