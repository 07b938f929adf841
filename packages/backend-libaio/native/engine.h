// The engine core shared by the io_uring and libaio backends.
//
// JS writes request records into a Float64Array (`sq`) and iovecs into
// another (`iov`), then calls submit(count). The core validates every record
// against the guest memory regions, resolves iovecs to host pointers, and
// queues requests in FIFO order. Dispatch moves requests from that queue into
// a fixed table of `depth` slots and asks the backend to prepare the kernel
// submission; one syscall then hands the whole batch over. Completions from
// the kernel (and the ones produced at submit time: bad iovecs, synchronous
// ioctls) are copied as (tag, result) pairs into an Int32Array (`cq`).
//
// Threading: one engine belongs to one thread; nothing here locks.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace vblk {

enum Op : uint8_t {
  OP_READ = 0,
  OP_WRITE = 1,
  OP_FLUSH = 2,
  OP_DISCARD = 3,
  OP_WRITE_ZEROES = 4,
  OP_WRITE_ZEROES_UNMAP = 5,
};

constexpr uint32_t kSqStride = 8;
constexpr uint32_t kIovStride = 3;
constexpr uint32_t kMaxIovLimit = 1024;  // IOV_MAX for preadv/pwritev
constexpr uint64_t kMaxRwBytes = 0x7ffff000;  // MAX_RW_COUNT: also keeps results in int32

struct Region {
  uint8_t* base;
  uint64_t length;
  std::shared_ptr<v8::BackingStore> store;
};

struct EngineConfig {
  int fd = -1;
  bool ownsFd = false;
  bool direct = false;
  uint32_t blockSize = 512;
  bool isBlockDevice = false;
  bool drainOnReap = false;  // reap() also clears the completion eventfd (one read(2))
  uint32_t depth = 256;
  uint32_t maxIov = kMaxIovLimit;
  uint32_t sqCapacity = 0;   // 0: derived from depth
  uint32_t iovCapacity = 0;  // 0: derived
  uint32_t cqCapacity = 0;   // 0: derived
  std::vector<Region> regions;
};

// One request, from submit() to its completion. Objects are pooled and keep
// their iovec vector and bounce buffer between uses.
struct Req {
  uint32_t tag = 0;
  uint8_t op = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<struct iovec> iov;  // guest memory, resolved and bounds-checked
  // What actually goes to the kernel (differs from the above when bounced).
  uint64_t ioOffset = 0;
  uint64_t ioLength = 0;
  bool bounced = false;
  uint8_t* bounce = nullptr;
  size_t bounceCap = 0;
  struct iovec bounceIov = {nullptr, 0};
  int slot = -1;
  bool isWrite = false;  // counts toward "writes in flight" for flush ordering
};

struct EngineStats {
  double submitted = 0;
  double completed = 0;
  double submitCalls = 0;
  double bounced = 0;
  double bouncedBytes = 0;
  double errors = 0;
  double syncOps = 0;
};

class Engine {
 public:
  explicit Engine(EngineConfig cfg);
  virtual ~Engine();

  virtual const char* Kind() const = 0;

  // Allocates the shared buffers (call once, from the JS thread).
  void AllocBuffers(Napi::Env env, Napi::Value* sq, Napi::Value* iov, Napi::Value* cq);

  void Submit(uint32_t count);
  uint32_t Reap();
  uint32_t Wait(uint32_t minComplete, double timeoutMs);
  uint32_t Inflight() const { return static_cast<uint32_t>(stats_.submitted - stats_.completed); }
  const EngineStats& Stats() const { return stats_; }
  // Waits up to `timeoutMs` for kernel I/O, then releases everything.
  void Close(double timeoutMs);
  bool Closed() const { return closed_; }

  int CompletionFd() const { return efd_; }

  // ---- fd watching (io_uring: multishot POLL_ADD in the same ring) ----
  // An IOThread that sleeps in the ring (Sleep) rather than in epoll must
  // still wake for its kick eventfds: they are watched here, and a readable
  // fd shows up as its token in TakeReady() after a Reap/Sleep.
  virtual bool CanWatch() const { return false; }
  virtual void WatchFd(int fd, uint32_t token) { (void)fd, (void)token; }
  virtual void UnwatchFd(uint32_t token) { (void)token; }
  // Sleep until a completion or a watched fd (or timeout ms; < 0 = forever),
  // then reap like Reap(). Nothing is waited for when nothing could wake us.
  uint32_t Sleep(double timeoutMs);
  std::vector<uint32_t> TakeReady() {
    std::vector<uint32_t> out;
    out.swap(ready_);
    return out;
  }
  // Watches whose poll the kernel refused (old kernel): the caller should
  // fall back to epoll.
  uint32_t WatchErrors() const { return watchErrors_; }
  uint32_t SqCapacity() const { return sqCap_; }
  uint32_t IovCapacity() const { return iovCap_; }
  uint32_t CqCapacity() const { return cqCap_; }
  uint32_t Depth() const { return depth_; }
  virtual std::string Describe() const = 0;

 protected:
  // ---- backend interface ----
  // Queue a read/write (r->iov or the bounce iovec) for slot r->slot.
  virtual void QueueRw(Req* r) = 0;
  // Queue a flush (or complete it at once with CompleteNow()). The core
  // calls this only when no write is in flight: a flush is held until the
  // writes before it finish, for every backend.
  virtual void QueueFlush(Req* r) = 0;
  // Can discard / write-zeroes on a regular file go to the kernel
  // asynchronously (QueueFallocate)? Otherwise the core does them inline.
  virtual bool CanFallocateAsync() const = 0;
  virtual void QueueFallocate(Req* r, int mode) = 0;
  // Does DestroyBackend() itself wait for every in-flight request (io_destroy does)?
  virtual bool BackendWaitsOnDestroy() const = 0;
  // Hand everything queued since the last call to the kernel (one syscall).
  virtual void Kick() = 0;
  // Move up to `max` kernel completions into out (tag, result pairs) via Finish().
  virtual uint32_t Harvest(int32_t* out, uint32_t max) = 0;
  // Is there anything in the kernel completion ring right now?
  virtual bool KernelReady() = 0;
  // Sleep until the kernel has >= minComplete completions or timeout (ms, <0 forever).
  virtual void WaitKernel(uint32_t minComplete, double timeoutMs) = 0;
  // Called before Harvest in Reap (io_uring: run deferred task work if flagged).
  virtual void BeforeHarvest() {}
  virtual void DestroyBackend() = 0;

  // ---- helpers for backends ----
  // A kernel completion for `slot` with result `res`: finishes the request
  // (bounce copy-out, fallbacks), frees the slot, writes (tag,res) to out.
  // Returns false (and writes nothing) for a slot that holds no request.
  bool Finish(uint32_t slot, int64_t res, int32_t* out);
  // A queued request completes without the kernel (refused at submit time,
  // or done synchronously): its result goes to the internal completed list.
  void CompleteNow(uint32_t slot, int64_t res);
  Req* SlotReq(uint32_t slot) const { return slot < slots_.size() ? slots_[slot] : nullptr; }
  void CountSubmitCall() { stats_.submitCalls += 1; }
  uint32_t KernelInflight() const { return kernelInflight_; }
  // Synchronous fallbacks (used by both backends).
  int64_t SyncDiscardOrZero(Req* r);
  int64_t SyncFdatasync();

  // Backends: a watched fd became readable (or its poll failed).
  void NoteReady(uint32_t token) {
    for (uint32_t t : ready_)
      if (t == token) return;
    ready_.push_back(token);
  }
  void NoteWatchError() { watchErrors_++; }
  uint32_t watching_ = 0;  // active watches: Harvest must run even with no I/O in flight

  EngineConfig cfg_;
  int fd_;
  int efd_ = -1;  // completion eventfd
  uint32_t depth_;
  bool closed_ = false;

 private:
  Req* NewReq();
  void Release(Req* r);
  void PushDone(uint32_t tag, int32_t res);
  bool Parse(const double* rec, Req* r, int* err);
  // Move pending requests into free slots; returns number queued to the kernel.
  uint32_t Dispatch();
  bool PrepareBounce(Req* r, int* err);
  void CopyOut(Req* r, uint64_t bytes);
  uint32_t ReapInto(uint32_t start);
  void SignalIfDone();

  uint32_t sqCap_ = 0, iovCap_ = 0, cqCap_ = 0;
  std::shared_ptr<v8::BackingStore> sqStore_, iovStore_, cqStore_;
  const double* sq_ = nullptr;
  const double* iovTab_ = nullptr;
  int32_t* cq_ = nullptr;

  std::vector<Req*> slots_;
  std::vector<uint32_t> freeSlots_;
  std::deque<Req*> pending_;
  std::vector<Req*> pool_;
  std::vector<std::unique_ptr<Req>> all_;
  std::deque<std::pair<uint32_t, int32_t>> done_;
  uint32_t kernelInflight_ = 0;
  uint32_t writesInflight_ = 0;
  EngineStats stats_;
  bool leaked_ = false;
  std::vector<uint32_t> ready_;
  uint32_t watchErrors_ = 0;
};

// Backend factories (throw Napi::Error on failure).
std::unique_ptr<Engine> MakeIoUringEngine(Napi::Env env, EngineConfig cfg);
std::unique_ptr<Engine> MakeAioEngine(Napi::Env env, EngineConfig cfg);

}  // namespace vblk
