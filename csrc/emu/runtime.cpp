// The emulated CUDA runtime (see cuda_emu.h): launches, the per-block fiber scheduler,
// barriers and warp collectives.
//
// Fibers enter their own stack once through ucontext and switch afterwards with
// _setjmp/_longjmp, which (unlike swapcontext) make no system call. glibc's fortified longjmp
// refuses a jump to another stack, so fortification is off in this file.
#undef _FORTIFY_SOURCE

#include "emu/cuda_emu.h"

#include <omp.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fc_emu {

thread_local const ThreadCoords* current_coords = nullptr;

namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 128 * 1024;

enum class State { kRunnable, kBarrier, kWarp, kDone, kFailed };

// Where a waiting thread waits: the call (its return address tells two calls on one source
// line apart, in two inlined copies of a function say) and what and where in the source it is.
struct Wait {
  const void* call = nullptr;
  const char* what = "";
  const char* file = "";
  int line = 0;
};

struct Fiber {
  ThreadCoords coords;
  int lane_id = 0, warp_id = 0;
  State state = State::kDone;
  Wait wait;
  // A pending warp collective.
  Collective kind = Collective::kSyncWarp;
  unsigned mask = 0;
  unsigned char value[16];
  void* result = nullptr;
  size_t size = 0;
  int arg = 0, width = kWarpSize;

  jmp_buf context;
  ucontext_t entry;
  bool entered = false;  // false: the next resume starts fiber_main afresh
  char* stack = nullptr;

  Fiber() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(p != MAP_FAILED, "fastclust emulated CUDA: cannot map a fiber stack");
    mprotect(p, page, PROT_NONE);  // a guard page: an overflow faults instead of corrupting
    stack = static_cast<char*>(p);
  }
  ~Fiber() { munmap(stack, kStackBytes + static_cast<size_t>(sysconf(_SC_PAGESIZE))); }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
};

// The block an OS thread is running, and its fibers (kept across launches).
struct Block {
  const char* kernel = "";
  void (*body)(const void*) = nullptr;
  const void* ctx = nullptr;
  std::vector<std::unique_ptr<Fiber>> fibers;
  int threads = 0;
  Fiber* running = nullptr;
  jmp_buf scheduler;
  std::string error;  // set by a failing thread
};

thread_local Block tls_block;

void yield(Fiber* f) {
  if (_setjmp(f->context) == 0) _longjmp(tls_block.scheduler, 1);
}

void fiber_main() {
  for (;;) {
    Block& b = tls_block;
    Fiber* f = b.running;
    try {
      b.body(b.ctx);
      f->state = State::kDone;
    } catch (const std::exception& e) {
      b.error = std::string("threw ") + e.what();
      f->state = State::kFailed;
    }
    yield(f);
  }
}

void resume(Block& b, Fiber* f) {
  b.running = f;
  current_coords = &f->coords;
  if (_setjmp(b.scheduler) != 0) return;
  if (f->entered) _longjmp(f->context, 1);
  f->entered = true;
  getcontext(&f->entry);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  f->entry.uc_stack.ss_sp = f->stack + page;
  f->entry.uc_stack.ss_size = kStackBytes;
  f->entry.uc_link = nullptr;
  makecontext(&f->entry, fiber_main, 0);
  setcontext(&f->entry);
}

Fiber& running_fiber(const char* what) {
  TORCH_CHECK(tls_block.running != nullptr, "fastclust emulated CUDA: ", what,
              " called outside a kernel");
  return *tls_block.running;
}

// One call of the source: its return address, and its line, since the compiler may merge
// two calls of one function into one instruction.
bool same_call(const Wait& a, const Wait& b) {
  return a.call == b.call && a.line == b.line && std::strcmp(a.file, b.file) == 0;
}

std::string describe(const Wait& w) {
  const char* slash = std::strrchr(w.file, '/');
  return std::string(w.what) + " (" + (slash ? slash + 1 : w.file) + ":" + std::to_string(w.line) + ")";
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

std::string triple(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + ")";
}

// The lanes of `f`'s warp named by `mask`, which must exist in the block.
bool lanes_of(const Block& b, const Fiber& f, unsigned mask, std::vector<Fiber*>& out) {
  out.clear();
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    const int t = f.warp_id * kWarpSize + lane;
    if (t >= b.threads) return false;
    out.push_back(b.fibers[t].get());
  }
  return true;
}

// The lane whose value lane `lane` receives in a shuffle; its own when the source lies
// beyond its segment of `width` lanes.
int source_lane(Collective kind, int lane, int arg, int width) {
  const int base = lane / width * width;
  switch (kind) {
    case Collective::kShflSync: return base + (arg % width + width) % width;
    case Collective::kShflUp: return lane - arg >= base ? lane - arg : lane;
    case Collective::kShflDown: return lane + arg < base + width ? lane + arg : lane;
    case Collective::kShflXor: return (lane ^ arg) < base + width ? lane ^ arg : lane;
    default: return lane;
  }
}

// Releases every warp collective that all lanes of its mask have reached; false if none.
bool release_warp_collectives(Block& b) {
  bool released = false;
  std::vector<Fiber*> group;
  for (int t = 0; t < b.threads; ++t) {
    Fiber& f = *b.fibers[t];
    if (f.state != State::kWarp) continue;
    lanes_of(b, f, f.mask, group);
    bool ready = true;
    for (const Fiber* g : group)
      ready = ready && g->state == State::kWarp && same_call(g->wait, f.wait) && g->mask == f.mask;
    if (!ready) continue;
    for (Fiber* g : group) {
      if (g->size > 0) {
        const int src = source_lane(g->kind, g->lane_id, g->arg, g->width);
        const Fiber& from = *b.fibers[g->warp_id * kWarpSize + src];
        if (!(f.mask >> src & 1u)) {
          b.error = "lane " + std::to_string(g->lane_id) + " of warp " + std::to_string(g->warp_id) +
                    " reads lane " + std::to_string(src) + " in " + describe(g->wait) +
                    ", which is not in the mask " + hex(f.mask);
          return false;
        }
        std::memcpy(g->result, from.value, g->size);
      }
    }
    for (Fiber* g : group) g->state = State::kRunnable;
    released = true;
  }
  return released;
}

// Why no thread of the block can go on: what each waits at, and who has returned.
std::string deadlock(const Block& b) {
  std::map<std::string, int> waiting;
  int returned = 0;
  for (int t = 0; t < b.threads; ++t) {
    const Fiber& f = *b.fibers[t];
    if (f.state == State::kDone) {
      ++returned;
    } else if (f.state == State::kBarrier) {
      ++waiting[describe(f.wait)];
    } else if (f.state == State::kWarp) {
      ++waiting[describe(f.wait) + " with mask " + hex(f.mask)];
    }
  }
  std::string out = "no thread can go on:";
  for (const auto& [where, count] : waiting) out += " " + std::to_string(count) + " wait at " + where + ";";
  if (returned > 0) out += " " + std::to_string(returned) + " have returned;";
  out += " a barrier or warp collective must be reached by every thread it names, at the same call"
         " (an early return, or a barrier in divergent code?)";
  return out;
}

// Runs one block to its end on this OS thread; false, with b.error set, if it failed.
bool run_block(Block& b, const uint3& block_idx, dim3 block, dim3 grid) {
  b.threads = static_cast<int>(block.x * block.y * block.z);
  while (static_cast<int>(b.fibers.size()) < b.threads) b.fibers.push_back(std::make_unique<Fiber>());
  for (int t = 0; t < b.threads; ++t) {
    Fiber& f = *b.fibers[t];
    const unsigned tx = t % block.x, ty = t / block.x % block.y, tz = t / (block.x * block.y);
    f.coords = {{tx, ty, tz}, block_idx, block, grid};
    f.lane_id = t % kWarpSize;
    f.warp_id = t / kWarpSize;
    f.state = State::kRunnable;
  }
  b.error.clear();
  bool ok = true;
  for (;;) {
    for (int t = 0; t < b.threads && ok; ++t) {
      Fiber* f = b.fibers[t].get();
      if (f->state != State::kRunnable) continue;
      resume(b, f);
      if (f->state == State::kFailed) {
        b.error = "thread " + triple(f->coords.thread_idx.x, f->coords.thread_idx.y, f->coords.thread_idx.z) +
                  ": " + b.error;
        ok = false;
      }
    }
    if (!ok) break;
    int done = 0, at_barrier = 0;
    const Wait* barrier = nullptr;
    bool same_barrier = true;
    for (int t = 0; t < b.threads; ++t) {
      const Fiber& f = *b.fibers[t];
      done += f.state == State::kDone;
      if (f.state == State::kBarrier) {
        ++at_barrier;
        same_barrier = same_barrier && (barrier == nullptr || same_call(*barrier, f.wait));
        barrier = &f.wait;
      }
    }
    if (done == b.threads) break;
    if (release_warp_collectives(b)) continue;
    if (!b.error.empty()) {
      ok = false;
      break;
    }
    if (at_barrier == b.threads && same_barrier) {
      for (int t = 0; t < b.threads; ++t) b.fibers[t]->state = State::kRunnable;
      continue;
    }
    b.error = deadlock(b);
    ok = false;
    break;
  }
  b.running = nullptr;
  current_coords = nullptr;
  if (!ok) {
    // The threads stopped mid-kernel: their next block starts them afresh.
    for (int t = 0; t < b.threads; ++t) b.fibers[t]->entered = false;
  }
  return ok;
}

}  // namespace

void syncthreads(const char* file, int line) {
  Fiber& f = running_fiber("__syncthreads");
  f.state = State::kBarrier;
  f.wait = {__builtin_return_address(0), "__syncthreads", file, line};
  yield(&f);
}

void warp_collective(Collective kind, const char* what, const char* file, int line,
                     unsigned mask, const void* value, void* result, size_t size, int arg,
                     int width) {
  Fiber& f = running_fiber(what);
  const Wait wait{__builtin_return_address(0), what, file, line};
  if (!(mask >> f.lane_id & 1u))
    fail(file, line, (std::string(what) + ": the calling lane is not in its mask " + hex(mask)).c_str());
  std::vector<Fiber*> group;
  if (!lanes_of(tls_block, f, mask, group))
    fail(file, line, (std::string(what) + ": the mask " + hex(mask) + " names lanes the block does not have").c_str());
  if (width < 1 || width > kWarpSize || (width & (width - 1)) != 0)
    fail(file, line, (std::string(what) + ": width must be a power of 2 up to 32").c_str());
  f.state = State::kWarp;
  f.wait = wait;
  f.kind = kind;
  f.mask = mask;
  if (size > 0) std::memcpy(f.value, value, size);
  f.result = result;
  f.size = size;
  f.arg = arg;
  f.width = width;
  yield(&f);
}

void fail(const char* file, int line, const char* message) {
  Fiber& f = running_fiber("fail");
  const char* slash = std::strrchr(file, '/');
  tls_block.error = std::string(message) + " (" + (slash ? slash + 1 : file) + ":" + std::to_string(line) + ")";
  f.state = State::kFailed;
  yield(&f);
  std::abort();  // a failed thread is never resumed
}

int multiprocessor_count() {
  const char* env = std::getenv("FASTCLUST_EMU_SMS");
  if (env == nullptr || *env == '\0') return 132;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  TORCH_CHECK(*end == '\0' && v >= 1 && v <= 100000,
              "fastclust emulated CUDA: FASTCLUST_EMU_SMS must be a number of multiprocessors >= 1, got '",
              env, "'");
  return static_cast<int>(v);
}

void run_grid(const char* kernel, dim3 grid, dim3 block, void (*thread_body)(const void*),
              const void* ctx) {
  const int64_t threads = static_cast<int64_t>(block.x) * block.y * block.z;
  TORCH_CHECK(threads >= 1 && threads <= kMaxThreads && block.y <= 1024 && block.z <= 64,
              "fastclust emulated CUDA: kernel ", kernel, ": invalid block ",
              triple(block.x, block.y, block.z));
  TORCH_CHECK(grid.x >= 1 && grid.x <= 2147483647u && grid.y >= 1 && grid.y <= 65535 &&
                  grid.z >= 1 && grid.z <= 65535,
              "fastclust emulated CUDA: kernel ", kernel, ": invalid grid ", triple(grid.x, grid.y, grid.z));
  TORCH_CHECK(tls_block.running == nullptr, "fastclust emulated CUDA: a launch from inside a kernel");
  const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y * grid.z;
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;
  int64_t failed_block = -1;
  // Blocks are independent, so they may run on several OS threads at once.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < blocks; ++i) {
    if (failed.load(std::memory_order_relaxed)) continue;
    Block& b = tls_block;
    b.kernel = kernel;
    b.body = thread_body;
    b.ctx = ctx;
    const uint3 idx{static_cast<unsigned>(i % grid.x), static_cast<unsigned>(i / grid.x % grid.y),
                    static_cast<unsigned>(i / (static_cast<int64_t>(grid.x) * grid.y))};
    try {
      if (run_block(b, idx, block, grid)) continue;
    } catch (const std::exception& e) {  // no exception may leave an OpenMP region
      b.error = e.what();
    }
    const std::lock_guard<std::mutex> lock(error_mutex);
    if (failed_block < 0 || i < failed_block) {
      failed_block = i;
      error = "block " + triple(idx.x, idx.y, idx.z) + ", " + b.error;
    }
    failed.store(true);
  }
  TORCH_CHECK(!failed.load(), "fastclust emulated CUDA: kernel ", kernel, ": ", error);
}

}  // namespace fc_emu
