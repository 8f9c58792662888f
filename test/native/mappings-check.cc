// Checks native/linux/mappings.cc outside Node: after a first fork's pass
// (which finds the address-space spans once), a MADV_DONTFORK page is placed
// below every mapping and another above every ordinary one, as V8 may place
// a heap page later; the next pass must hand both to the child. Prints one
// JSON line per page: how a child that reads it ended.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace realfork {
void PrepareMappingsForFork();
}

namespace {

const uintptr_t kPage = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));

// The lowest mapping and the end of the highest one that is not the kernel's.
void Bounds(uintptr_t* low, uintptr_t* high) {
  *low = UINTPTR_MAX;
  *high = 0;
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  while (f != nullptr && fgets(line, sizeof(line), f) != nullptr) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx", &start, &end) != 2 || strstr(line, "[v") != nullptr) continue;
    if (start < *low) *low = start;
    if (end > *high) *high = end;
  }
  if (f != nullptr) fclose(f);
}

// One page at `at` exactly, holding `value`, marked MADV_DONTFORK as V8 marks its heap.
volatile int* PlaceAt(uintptr_t at, int value) {
  void* p = mmap(reinterpret_cast<void*>(at), kPage, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != reinterpret_cast<void*>(at)) return nullptr;
  auto* v = static_cast<volatile int*>(p);
  *v = value;
  madvise(p, kPage, MADV_DONTFORK);
  return v;
}

void ReadInChild(const char* where, volatile int* page, int value) {
  if (page == nullptr) {
    printf("{\"page\":\"%s\",\"placed\":false}\n", where);
    return;
  }
  fflush(stdout);
  realfork::PrepareMappingsForFork();
  pid_t pid = fork();
  if (pid == 0) _exit(*page == value ? 0 : 1);
  int status = 0;
  waitpid(pid, &status, 0);
  printf("{\"page\":\"%s\",\"placed\":true,\"exited\":%d,\"signal\":%d}\n", where,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

int main() {
  realfork::PrepareMappingsForFork();  // the first fork: the spans are found here
  uintptr_t low, high;
  Bounds(&low, &high);
  volatile int* below = PlaceAt((low / 2) & ~(kPage - 1), 42);
  volatile int* above = nullptr;
  for (uintptr_t at = high + kPage; above == nullptr && at < high + 256 * kPage; at += kPage) above = PlaceAt(at, 43);
  ReadInChild("below", below, 42);
  ReadInChild("above", above, 43);
  return 0;
}
