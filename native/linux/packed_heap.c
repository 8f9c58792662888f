// The packed-heap preload: loaded with LD_PRELOAD by the restart in
// src/lib/reexec.ts (the default of the realfork command on Linux; opt out
// with `--no-packed-heap`), never linked.
//
// V8 asks mmap() for each heap page at an address of its own, drawn at
// random. Scattered that way, each page needs page-table pages of its own,
// and fork() copies them all for every child and every child's exit frees
// them again: ~30 lone pages made half a server's page tables. This library
// reserves one region at a random address when the process starts and
// places those requests next to each other inside it, so neighbours merge
// and share page tables. The region's base comes from getrandom(), as V8's
// hints do, and is independent of where the kernel put the libraries; what
// goes is the independence of V8's pages from each other: one heap address
// gives away the region, and the others sit at offsets from it.
//
// Only requests that carry an address hint are placed (V8's; malloc and
// thread stacks ask without one), up to PLACED_MAX; the rest, and whatever
// no longer fits, go to the kernel as asked. munmap() of a range inside the
// region reserves it again (PROT_NONE) and returns it to a free list, so
// freed pages are reused. The hooks take no malloc (a fixed table, a
// mutex), and a fork() in another thread cannot leave the mutex held in the
// child (pthread_atfork). A child inherits the region, its pages and the
// free list as they were: they stay consistent.
#define _GNU_SOURCE
// node-gyp builds with _FILE_OFFSET_BITS=64, which renames mmap to mmap64 in
// the headers; both names are defined below, each under its own.
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

// Linux 4.17; older libc headers lack it (older kernels take it as a hint: checked below).
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define SELF "realfork_packed_heap.so"
#define KiB ((uintptr_t)1 << 10)
#define MiB ((uintptr_t)1 << 20)
#define GiB ((uintptr_t)1 << 30)

// 8 GiB: V8's default heap limit on 64-bit Linux is at most 4 GiB (node 26
// here: heap_size_limit 4192 MiB), each page costs ~2x its size while V8
// trims it to alignment, and reserved address space costs nothing (PROT_NONE
// and MAP_NORESERVE: no memory, no commit charge, no page tables). A heap
// grown past it (--max-old-space-size) gets its further pages from the
// kernel at V8's own random addresses.
#define REGION_SIZE (8 * GiB)
// The region's base is drawn where V8 draws its hints (below 2^46, above
// 4 GiB), 256 KiB-aligned: ~28 bits of randomness.
#define BASE_MIN (4 * GiB)
#define BASE_MAX (((uintptr_t)1 << 46) - REGION_SIZE)
// V8's heap pages are 256 KiB, asked for as 512 KiB - 4 KiB and trimmed to a
// 256 KiB boundary: a request is placed on a boundary of the largest power
// of two up to its size, at most this, so the trim is only at the tail.
#define ALIGN_MAX (256 * KiB)
// Larger requests are V8's own reservations (the 512 MiB code range, its
// tables), which it fills itself: they keep V8's random addresses.
#define PLACED_MAX (64 * MiB)
#define FREE_MAX 1024

// The addon looks this symbol up (dlsym) to tell that the preload is in.
int realfork_packed_heap_loaded = 1;

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);
static mmap_fn next_mmap;
static munmap_fn next_munmap;

struct range {
  uintptr_t start, end;
};
static uintptr_t region_start, region_end;  // both 0: no region, every call goes on as asked
static struct range free_list[FREE_MAX];     // sorted, disjoint, never adjacent
static size_t free_count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t page_size = 4096;

// The next definition of each (libc's, or another preload's). Calls made
// before the constructor ran go straight to the kernel.
static void *sys_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  if (next_mmap != NULL) return next_mmap(addr, length, prot, flags, fd, offset);
  return (void *)syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
}

static int sys_munmap(void *addr, size_t length) {
  if (next_munmap != NULL) return next_munmap(addr, length);
  return (int)syscall(SYS_munmap, addr, length);
}

static void *reserve(uintptr_t start, uintptr_t length, int flags) {
  return sys_mmap((void *)start, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | flags, -1, 0);
}

// Takes len bytes off the free list, placed on a boundary of the largest
// power of two up to len (at most ALIGN_MAX); 0 when nothing fits.
static uintptr_t take(uintptr_t len) {
  uintptr_t align = page_size;
  while (align < ALIGN_MAX && align * 2 <= len) align *= 2;
  for (size_t i = 0; i < free_count; i++) {
    struct range *r = &free_list[i];
    uintptr_t at = (r->start + align - 1) & ~(align - 1);
    if (at < r->start || at + len > r->end || at + len < at) continue;
    int head = at > r->start, tail = at + len < r->end;
    if (head && tail) {
      if (free_count == FREE_MAX) continue;  // no room to split this one
      memmove(r + 2, r + 1, (free_count - i - 1) * sizeof *r);
      free_count++;
      r[1] = (struct range){at + len, r->end};
      r->end = at;
    } else if (head) {
      r->end = at;
    } else if (tail) {
      r->start = at + len;
    } else {
      memmove(r, r + 1, (free_count - i - 1) * sizeof *r);
      free_count--;
    }
    return at;
  }
  return 0;
}

// Puts [start, end) back on the free list, merged with what it touches or
// overlaps; false when the table has no room for it.
static int give(uintptr_t start, uintptr_t end) {
  size_t i = 0;
  while (i < free_count && free_list[i].end < start) i++;
  size_t j = i;  // [i, j): the ranges that touch or overlap it
  while (j < free_count && free_list[j].start <= end) j++;
  if (j > i) {
    if (free_list[i].start < start) start = free_list[i].start;
    if (free_list[j - 1].end > end) end = free_list[j - 1].end;
  } else if (free_count == FREE_MAX) {
    return 0;
  }
  memmove(free_list + i + 1, free_list + j, (free_count - j) * sizeof *free_list);
  free_count = free_count - (j - i) + 1;
  free_list[i] = (struct range){start, end};
  return 1;
}

static int placeable(void *addr, size_t length, int flags) {
  return region_end != 0 && addr != NULL && length > 0 && length <= PLACED_MAX && (flags & MAP_ANONYMOUS) &&
         (flags & MAP_TYPE) == MAP_PRIVATE &&
         !(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_HUGETLB | MAP_GROWSDOWN | MAP_STACK));
}

static void *packed_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  if (!placeable(addr, length, flags)) return sys_mmap(addr, length, prot, flags, fd, offset);
  uintptr_t len = (length + page_size - 1) & ~(page_size - 1);
  pthread_mutex_lock(&lock);
  uintptr_t at = take(len);
  pthread_mutex_unlock(&lock);
  if (at == 0) return sys_mmap(addr, length, prot, flags, fd, offset);
  void *p = sys_mmap((void *)at, len, prot, flags | MAP_FIXED, fd, offset);
  if (p != MAP_FAILED) return p;
  // A failed MAP_FIXED may have unmapped the range: reserve it again.
  int err = errno;
  if (reserve(at, len, MAP_FIXED) != MAP_FAILED) {
    pthread_mutex_lock(&lock);
    give(at, at + len);
    pthread_mutex_unlock(&lock);
  }
  errno = err;
  return MAP_FAILED;
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return packed_mmap(addr, length, prot, flags, fd, offset);
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return packed_mmap(addr, length, prot, flags, fd, offset);
}

int munmap(void *addr, size_t length) {
  uintptr_t start = (uintptr_t)addr, end = start + ((length + page_size - 1) & ~(page_size - 1));
  if (region_end == 0 || length == 0 || start % page_size != 0 || end < start || end <= region_start ||
      start >= region_end)
    return sys_munmap(addr, length);
  // The parts outside the region go to the kernel as asked.
  if (start < region_start && sys_munmap(addr, region_start - start) != 0) return -1;
  if (end > region_end && sys_munmap((void *)region_end, end - region_end) != 0) return -1;
  if (start < region_start) start = region_start;
  if (end > region_end) end = region_end;
  if (reserve(start, end - start, MAP_FIXED) == MAP_FAILED) return sys_munmap((void *)start, end - start);
  pthread_mutex_lock(&lock);
  int kept = give(start, end);
  pthread_mutex_unlock(&lock);
  // No room to remember it: a hole in the region, which the kernel may use.
  if (!kept) sys_munmap((void *)start, end - start);
  return 0;
}

static void lock_for_fork(void) { pthread_mutex_lock(&lock); }
static void unlock_after_fork(void) { pthread_mutex_unlock(&lock); }

// One try per random base; MAP_FIXED_NOREPLACE fails on an address already
// in use (a kernel before 4.17 takes it as a hint: checked). Without
// randomness, or with no free base found, there is no region and V8's
// pages keep its own random addresses.
static void reserve_region(void) {
  long size = sysconf(_SC_PAGESIZE);
  if (size > 0) page_size = (uintptr_t)size;
  for (int attempt = 0; attempt < 16; attempt++) {
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) return;
    uintptr_t base = (BASE_MIN + (uintptr_t)(r % (BASE_MAX - BASE_MIN))) & ~(ALIGN_MAX - 1);
    void *p = reserve(base, REGION_SIZE, MAP_FIXED_NOREPLACE);
    if (p == MAP_FAILED) continue;
    if ((uintptr_t)p != base) {
      sys_munmap(p, REGION_SIZE);
      continue;
    }
    region_start = base;
    region_end = base + REGION_SIZE;
    free_list[0] = (struct range){region_start, region_end};
    free_count = 1;
    pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
    return;
  }
}

static int is_self(const char *entry, size_t len) {
  size_t self = sizeof(SELF) - 1;
  return len >= self && memcmp(entry + len - self, SELF, self) == 0 &&
         (len == self || entry[len - self - 1] == '/');
}

// Programs this process starts must not inherit the preload: it is taken out
// of LD_PRELOAD before main() (and before node reads its environment); other
// entries the user put there stay, in their order.
static void leave_no_trace(void) {
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

// Runs before main(), while the process has one thread.
__attribute__((constructor)) static void start(void) {
  next_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  next_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
  realfork_move_text_to_huge_pages();
  reserve_region();
  leave_no_trace();
}
