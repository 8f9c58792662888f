// The preload behind the packed-heap opt-in (`realfork serve --packed-heap`,
// `ensureNodeFlags(flags, { packedHeap: true })`). Linux only; loaded with
// LD_PRELOAD by the restart in src/lib/reexec.ts, never linked.
//
// V8 asks mmap() for each 256 KiB heap page at an address of its own choice,
// drawn at random (a hardening: the pages are hard to guess). Scattered that
// way, each page needs page-table pages of its own, and fork() copies them
// all for every child and every child's exit frees them again: about 30 such
// pages made half a server's page tables. Dropping the hint lets the kernel
// place anonymous mappings one after another below its (randomised) mmap
// base, where neighbours merge into one mapping. What that gives up: V8's
// pages are no longer placed at random of their own; they sit at guessable
// offsets from the libraries and each other, as malloc's arenas do.
#define _GNU_SOURCE
// node-gyp builds with _FILE_OFFSET_BITS=64, which renames mmap to mmap64 in
// the headers; both names are defined below, each under its own.
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SELF "realfork_packed_heap.so"

// The addon looks this symbol up (dlsym) to tell that the preload is in.
int realfork_packed_heap_loaded = 1;

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
static mmap_fn real_mmap;

static void *packed(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  // Only hints: a MAP_FIXED address is a requirement, and file mappings
  // (the loader, node's own large-page remapping) are left alone.
  if ((flags & MAP_ANONYMOUS) && !(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))) addr = NULL;
  if (real_mmap == NULL) real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  return real_mmap(addr, length, prot, flags, fd, offset);
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return packed(addr, length, prot, flags, fd, offset);
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return packed(addr, length, prot, flags, fd, offset);
}

static int is_self(const char *entry, size_t len) {
  size_t self = sizeof(SELF) - 1;
  return len >= self && memcmp(entry + len - self, SELF, self) == 0 &&
         (len == self || entry[len - self - 1] == '/');
}

// Programs this process starts must not inherit the preload: it is taken out
// of LD_PRELOAD before main() (and before node reads its environment); other
// entries the user put there stay, in their order.
__attribute__((constructor)) static void leave_no_trace(void) {
  real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  const char *list = getenv("LD_PRELOAD");
  if (list == NULL) return;
  char *kept = malloc(strlen(list) + 1);
  if (kept == NULL) return;
  size_t n = 0;
  for (const char *p = list; *p != '\0';) {
    size_t len = strcspn(p, ": ");
    if (len > 0 && !is_self(p, len)) {
      if (n > 0) kept[n++] = ' ';
      memcpy(kept + n, p, len);
      n += len;
    }
    p += len;
    if (*p != '\0') p++;
  }
  kept[n] = '\0';
  if (n > 0) setenv("LD_PRELOAD", kept, 1);
  else unsetenv("LD_PRELOAD");
  free(kept);
}
