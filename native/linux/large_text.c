// Part of the packed-heap preload (realfork_packed_heap.so, Linux): node's
// own code moved onto 2 MiB pages, as node's --use-largepages did until
// Node 26 dropped it. Asked for by the CLI's restart (REALFORK_LARGE_TEXT=1
// in its environment, on Node 26 and later); taken out of the environment
// here so that programs the process starts never see it.
//
// Why: node's code is a file mapping, and fork() copies no page tables of a
// file mapping that was never written, so every child faults in again each
// page of node's code it runs (~78 of a serve child's ~190 faults on Node
// 26). On anonymous 2 MiB pages the same code is ~21 page-table entries that
// fork() copies at once, and a child runs it without a fault.
//
// How: before main(), while the process has one thread and none of node's
// code has run, the 2 MiB-aligned part of the executable's code segment is
// copied into anonymous memory asked for on huge pages, made read+execute,
// and moved over the original with one mremap(): the code is never absent,
// and if any step fails the original stays in place. Only when the copy is
// all on huge pages (MADV_COLLAPSE, Linux 6.1+): on 4 KiB pages it would
// make every fork() copy ~11000 more page-table entries. V8 must not remap
// its builtins out of node's code (--short-builtin-calls): the CLI starts
// node with --no-short-builtin-calls.
#define _GNU_SOURCE
#undef _FILE_OFFSET_BITS
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "preload.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define HUGE_PAGE ((uintptr_t)2 << 20)

struct segment {
  uintptr_t start, end;
};

// The executable's largest code segment (some node builds have small ones
// around it: .init and .plt, the large-page stub). The first object
// dl_iterate_phdr reports is the executable.
static int executable_code(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  struct segment *code = data;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz <= code->end - code->start) continue;
    code->start = info->dlpi_addr + ph->p_vaddr;
    code->end = code->start + ph->p_memsz;
  }
  return 1;
}

void realfork_move_text_to_huge_pages(void) {
  const char *asked = getenv("REALFORK_LARGE_TEXT");
  int wanted = asked != NULL && strcmp(asked, "1") == 0;
  unsetenv("REALFORK_LARGE_TEXT");
  if (!wanted) return;
  struct segment code = {0, 0};
  dl_iterate_phdr(executable_code, &code);
  uintptr_t start = (code.start + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), end = code.end & ~(HUGE_PAGE - 1);
  if (end <= start) return;
  size_t len = end - start;
  // A 2 MiB-aligned place for the copy: mremap() keeps huge pages whole only
  // between aligned addresses.
  char *area = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return;
  char *copy = (char *)(((uintptr_t)area + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
  if (copy > area) munmap(area, (size_t)(copy - area));
  if (copy + len < area + len + HUGE_PAGE) munmap(copy + len, (size_t)(area + len + HUGE_PAGE - (copy + len)));
  if (madvise(copy, len, MADV_HUGEPAGE) != 0) goto drop;
  memcpy(copy, (void *)start, len);
  if (madvise(copy, len, MADV_COLLAPSE) != 0) goto drop;
  if (mprotect(copy, len, PROT_READ | PROT_EXEC) != 0) goto drop;
  if (mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)start) != MAP_FAILED) return;
drop:
  munmap(copy, len);
}
