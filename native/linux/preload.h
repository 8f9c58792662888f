// What the parts of the packed-heap preload (realfork_packed_heap.so) call of
// each other; nothing here is exported from the library.
#ifndef REALFORK_PRELOAD_H_
#define REALFORK_PRELOAD_H_

// native/linux/large_text.c: node's code onto 2 MiB pages when the restart
// asks (REALFORK_LARGE_TEXT=1). Called before main(), on the only thread.
__attribute__((visibility("hidden"))) void realfork_move_text_to_huge_pages(void);

#endif  // REALFORK_PRELOAD_H_
