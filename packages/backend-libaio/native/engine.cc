// Engine core (request parsing, FIFO dispatch into slots, bounce buffers,
// completion delivery) and the N-API class that exposes it.
#include "engine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace vblk {

namespace {

constexpr double kTwo53 = 9007199254740992.0;
constexpr size_t kKeepBounce = 4u << 20;  // free bounce buffers above this after use

inline bool IsUint(double d) { return d >= 0 && d <= kTwo53 && std::floor(d) == d; }

inline uint32_t ToTag(double d) {
  if (!std::isfinite(d)) return 0;
  return static_cast<uint32_t>(static_cast<int64_t>(std::fmod(d, 4294967296.0)));
}

inline int32_t ClampResult(int64_t r) {
  if (r > INT32_MAX) return INT32_MAX;
  if (r < INT32_MIN) return -EIO;
  return static_cast<int32_t>(r);
}

}  // namespace

Engine::Engine(EngineConfig cfg) : cfg_(std::move(cfg)), fd_(cfg_.fd), depth_(cfg_.depth) {
  sqCap_ = cfg_.sqCapacity ? cfg_.sqCapacity : std::max<uint32_t>(depth_, 1024);
  iovCap_ = cfg_.iovCapacity ? cfg_.iovCapacity : std::max<uint32_t>(sqCap_ * 4, cfg_.maxIov);
  cqCap_ = cfg_.cqCapacity ? cfg_.cqCapacity : sqCap_;
  slots_.assign(depth_, nullptr);
  freeSlots_.reserve(depth_);
  for (uint32_t i = depth_; i > 0; i--) freeSlots_.push_back(i - 1);
}

Engine::~Engine() {
  // Backends call Close() from their own destructors (DestroyBackend is
  // theirs); here only memory is left.
  if (!leaked_) {
    for (auto& r : all_) std::free(r->bounce);
  }
}

void Engine::AllocBuffers(Napi::Env env, Napi::Value* sq, Napi::Value* iov, Napi::Value* cq) {
  *sq = NewOwnedArrayBuffer(env, static_cast<size_t>(sqCap_) * kSqStride * sizeof(double), &sqStore_);
  *iov = NewOwnedArrayBuffer(env, static_cast<size_t>(iovCap_) * kIovStride * sizeof(double), &iovStore_);
  *cq = NewOwnedArrayBuffer(env, static_cast<size_t>(cqCap_) * 2 * sizeof(int32_t), &cqStore_);
  sq_ = static_cast<const double*>(sqStore_->Data());
  iovTab_ = static_cast<const double*>(iovStore_->Data());
  cq_ = static_cast<int32_t*>(cqStore_->Data());
}

Req* Engine::NewReq() {
  if (!pool_.empty()) {
    Req* r = pool_.back();
    pool_.pop_back();
    return r;
  }
  all_.push_back(std::make_unique<Req>());
  return all_.back().get();
}

void Engine::Release(Req* r) {
  r->slot = -1;
  r->bounced = false;
  r->isWrite = false;
  if (r->bounceCap > kKeepBounce) {
    std::free(r->bounce);
    r->bounce = nullptr;
    r->bounceCap = 0;
  }
  if (r->iov.capacity() > 64) std::vector<struct iovec>().swap(r->iov);
  pool_.push_back(r);
}

void Engine::PushDone(uint32_t tag, int32_t res) { done_.emplace_back(tag, res); }

void Engine::SignalIfDone() {
  // Completions produced without the kernel must wake a poller too.
  if (!done_.empty() && efd_ >= 0) EventfdSignal(efd_, 1);
}

bool Engine::Parse(const double* rec, Req* r, int* err) {
  r->tag = ToTag(rec[1]);
  double opd = rec[0];
  if (!(opd >= 0 && opd <= 5 && std::floor(opd) == opd)) {
    *err = EINVAL;
    return false;
  }
  r->op = static_cast<uint8_t>(opd);
  r->offset = 0;
  r->length = 0;
  r->iov.clear();
  if (r->op == OP_FLUSH) return true;
  if (!IsUint(rec[2])) {
    *err = EINVAL;
    return false;
  }
  r->offset = static_cast<uint64_t>(rec[2]);
  if (r->op == OP_DISCARD || r->op == OP_WRITE_ZEROES || r->op == OP_WRITE_ZEROES_UNMAP) {
    if (!IsUint(rec[3])) {
      *err = EINVAL;
      return false;
    }
    r->length = static_cast<uint64_t>(rec[3]);
    return true;
  }
  // READ / WRITE
  if (!IsUint(rec[4]) || !IsUint(rec[5])) {
    *err = EINVAL;
    return false;
  }
  uint64_t cnt = static_cast<uint64_t>(rec[4]);
  uint64_t first = static_cast<uint64_t>(rec[5]);
  if (cnt == 0 || cnt > cfg_.maxIov) {
    *err = EINVAL;
    return false;
  }
  if (first > iovCap_ || cnt > iovCap_ - first) {
    *err = EFAULT;
    return false;
  }
  r->iov.resize(cnt);
  uint64_t total = 0;
  for (uint64_t i = 0; i < cnt; i++) {
    const double* e = iovTab_ + (first + i) * kIovStride;
    if (!IsUint(e[0]) || !IsUint(e[1]) || !IsUint(e[2])) {
      *err = EFAULT;
      return false;
    }
    uint64_t ri = static_cast<uint64_t>(e[0]);
    uint64_t ro = static_cast<uint64_t>(e[1]);
    uint64_t rl = static_cast<uint64_t>(e[2]);
    if (ri >= cfg_.regions.size()) {
      *err = EFAULT;
      return false;
    }
    const Region& reg = cfg_.regions[ri];
    if (ro > reg.length || rl > reg.length - ro) {
      *err = EFAULT;
      return false;
    }
    total += rl;
    if (total > kMaxRwBytes) {
      *err = EINVAL;
      return false;
    }
    r->iov[i].iov_base = reg.base + ro;
    r->iov[i].iov_len = static_cast<size_t>(rl);
  }
  r->length = total;
  return true;
}

bool Engine::PrepareBounce(Req* r, int* err) {
  r->bounced = false;
  r->ioOffset = r->offset;
  r->ioLength = r->length;
  if (!cfg_.direct) return true;
  const uint64_t bs = cfg_.blockSize;
  bool memAligned = true;
  for (const auto& v : r->iov) {
    if ((reinterpret_cast<uintptr_t>(v.iov_base) % bs) != 0 || (v.iov_len % bs) != 0) {
      memAligned = false;
      break;
    }
  }
  bool rangeAligned = (r->offset % bs) == 0 && (r->length % bs) == 0;
  if (memAligned && rangeAligned) return true;
  if (!rangeAligned && r->op == OP_WRITE) {
    // A sub-block write would need read-modify-write; the device layer
    // never asks for one (it checks sector alignment), so refuse it.
    *err = EINVAL;
    return false;
  }
  uint64_t start = r->offset - (r->offset % bs);
  uint64_t end = r->offset + r->length;
  end = (end + bs - 1) / bs * bs;
  uint64_t ioLen = end - start;
  size_t need = static_cast<size_t>((std::max<uint64_t>(ioLen, 1) + 4095) / 4096 * 4096);
  if (r->bounceCap < need) {
    std::free(r->bounce);
    r->bounce = nullptr;
    r->bounceCap = 0;
    void* mem = nullptr;
    if (posix_memalign(&mem, std::max<size_t>(4096, bs), need) != 0) {
      *err = ENOMEM;
      return false;
    }
    r->bounce = static_cast<uint8_t*>(mem);
    r->bounceCap = need;
  }
  if (r->op == OP_WRITE) {
    uint8_t* p = r->bounce;
    for (const auto& v : r->iov) {
      std::memcpy(p, v.iov_base, v.iov_len);
      p += v.iov_len;
    }
  }
  r->ioOffset = start;
  r->ioLength = ioLen;
  r->bounceIov.iov_base = r->bounce;
  r->bounceIov.iov_len = static_cast<size_t>(ioLen);
  r->bounced = true;
  stats_.bounced += 1;
  stats_.bouncedBytes += static_cast<double>(r->length);
  return true;
}

void Engine::CopyOut(Req* r, uint64_t bytes) {
  const uint8_t* src = r->bounce + (r->offset - r->ioOffset);
  for (const auto& v : r->iov) {
    if (bytes == 0) break;
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes, v.iov_len));
    std::memcpy(v.iov_base, src, n);
    src += n;
    bytes -= n;
  }
}

int64_t Engine::SyncFdatasync() {
  stats_.syncOps += 1;
  if (::fdatasync(fd_) < 0) return -errno;
  return 0;
}

int64_t Engine::SyncDiscardOrZero(Req* r) {
  stats_.syncOps += 1;
  if (r->length == 0) return 0;
  if (cfg_.isBlockDevice) {
    uint64_t range[2] = {r->offset, r->length};
    unsigned long req = r->op == OP_DISCARD ? BLKDISCARD : BLKZEROOUT;
    if (::ioctl(fd_, req, range) < 0) return -errno;
    return 0;
  }
  auto fallocateRange = [&](int mode) -> int {
    if (::fallocate(fd_, mode, static_cast<off_t>(r->offset), static_cast<off_t>(r->length)) < 0) return -errno;
    return 0;
  };
  if (r->op == OP_DISCARD) return fallocateRange(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  int res = -EOPNOTSUPP;
  if (r->op == OP_WRITE_ZEROES_UNMAP) res = fallocateRange(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  if (res == -EOPNOTSUPP) res = fallocateRange(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
  if (res != -EOPNOTSUPP) return res;
  // The filesystem has neither: write zeroes (aligned buffer, fine for O_DIRECT).
  constexpr size_t kChunk = 1u << 20;
  void* zeros = nullptr;
  if (posix_memalign(&zeros, 4096, kChunk) != 0) return -ENOMEM;
  std::memset(zeros, 0, kChunk);
  uint64_t off = r->offset, left = r->length;
  int64_t out = 0;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, kChunk));
    ssize_t w = ::pwrite(fd_, zeros, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      out = w < 0 ? -errno : -EIO;
      break;
    }
    off += static_cast<uint64_t>(w);
    left -= static_cast<uint64_t>(w);
  }
  std::free(zeros);
  return out;
}

uint32_t Engine::Dispatch() {
  uint32_t queued = 0;
  while (!pending_.empty()) {
    Req* r = pending_.front();
    switch (r->op) {
      case OP_READ:
      case OP_WRITE: {
        if (freeSlots_.empty()) return queued;
        int err = 0;
        pending_.pop_front();
        if (!PrepareBounce(r, &err)) {
          PushDone(r->tag, -err);
          Release(r);
          continue;
        }
        uint32_t s = freeSlots_.back();
        freeSlots_.pop_back();
        slots_[s] = r;
        r->slot = static_cast<int>(s);
        r->isWrite = r->op == OP_WRITE;
        kernelInflight_++;
        if (r->isWrite) writesInflight_++;
        QueueRw(r);
        queued++;
        break;
      }
      case OP_FLUSH: {
        // Ordered after every earlier write: held (and everything behind it
        // with it) until they complete.
        if (writesInflight_ > 0 || freeSlots_.empty()) return queued;
        uint32_t s = freeSlots_.back();
        freeSlots_.pop_back();
        slots_[s] = r;
        r->slot = static_cast<int>(s);
        r->isWrite = false;
        kernelInflight_++;
        QueueFlush(r);
        pending_.pop_front();
        queued++;
        break;
      }
      default: {  // DISCARD, WRITE_ZEROES, WRITE_ZEROES_UNMAP
        if (r->length > 0 && !cfg_.isBlockDevice && CanFallocateAsync()) {
          if (freeSlots_.empty()) return queued;
          uint32_t s = freeSlots_.back();
          freeSlots_.pop_back();
          slots_[s] = r;
          r->slot = static_cast<int>(s);
          r->isWrite = true;
          kernelInflight_++;
          writesInflight_++;
          int mode = (r->op == OP_WRITE_ZEROES) ? (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)
                                                : (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
          pending_.pop_front();
          QueueFallocate(r, mode);
          queued++;
          break;
        }
        pending_.pop_front();
        int64_t res = SyncDiscardOrZero(r);
        PushDone(r->tag, ClampResult(res));
        Release(r);
        break;
      }
    }
  }
  return queued;
}

void Engine::Submit(uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    const double* rec = sq_ + static_cast<size_t>(i) * kSqStride;
    Req* r = NewReq();
    int err = 0;
    stats_.submitted += 1;
    if (!Parse(rec, r, &err)) {
      PushDone(r->tag, -err);
      Release(r);
      continue;
    }
    pending_.push_back(r);
  }
  Dispatch();
  Kick();
  SignalIfDone();
}

bool Engine::Finish(uint32_t slot, int64_t res, int32_t* out) {
  Req* r = SlotReq(slot);
  if (!r) return false;  // not ours (cannot happen); drop it
  slots_[slot] = nullptr;
  freeSlots_.push_back(slot);
  kernelInflight_--;
  if (r->isWrite) writesInflight_--;
  int64_t result = res;
  switch (r->op) {
    case OP_READ:
      if (r->bounced && res >= 0) {
        uint64_t head = r->offset - r->ioOffset;
        uint64_t got = static_cast<uint64_t>(res);
        uint64_t avail = got > head ? std::min<uint64_t>(got - head, r->length) : 0;
        CopyOut(r, avail);
        result = static_cast<int64_t>(avail);
      }
      break;
    case OP_WRITE:
      if (r->bounced && res >= 0) result = std::min<int64_t>(res, static_cast<int64_t>(r->length));
      break;
    case OP_WRITE_ZEROES:
    case OP_WRITE_ZEROES_UNMAP:
      // The filesystem lacks the fallocate mode: fall back (punch / zero / write zeroes).
      if (res == -EOPNOTSUPP) result = SyncDiscardOrZero(r);
      break;
    default:
      break;
  }
  if (out) {
    out[0] = static_cast<int32_t>(r->tag);
    out[1] = ClampResult(result);
  }
  Release(r);
  return true;
}

void Engine::CompleteNow(uint32_t slot, int64_t res) {
  Req* r = SlotReq(slot);
  if (!r) return;
  slots_[slot] = nullptr;
  freeSlots_.push_back(slot);
  kernelInflight_--;
  if (r->isWrite) writesInflight_--;
  PushDone(r->tag, ClampResult(res));
  Release(r);
}

uint32_t Engine::ReapInto(uint32_t start) {
  uint32_t n = start;
  while (n < cqCap_ && !done_.empty()) {
    cq_[2 * n] = static_cast<int32_t>(done_.front().first);
    cq_[2 * n + 1] = done_.front().second;
    done_.pop_front();
    n++;
  }
  if (n < cqCap_ && (kernelInflight_ > 0 || watching_ > 0)) {
    BeforeHarvest();
    uint32_t h = Harvest(cq_ + 2 * n, cqCap_ - n);
    n += h;
    if (h > 0 && cfg_.drainOnReap) {
      // Clear the eventfd, then look once more: a completion that raced with
      // the drain is either taken now or has signalled after the drain.
      // Off by default: it costs a read(2) per reap (~3-4 us CPU per request
      // at QD1 here), and the Poller drains the fd when it wakes anyway, so
      // skipping it costs at most one spurious wake-up, never a lost one.
      EventfdDrain(efd_, nullptr);
      if (n < cqCap_) n += Harvest(cq_ + 2 * n, cqCap_ - n);
    }
  }
  for (uint32_t i = start; i < n; i++) {
    if (cq_[2 * i + 1] < 0) stats_.errors += 1;
  }
  stats_.completed += n - start;
  if (!pending_.empty() && !freeSlots_.empty()) Dispatch();
  Kick();
  SignalIfDone();
  return n - start;
}

uint32_t Engine::Reap() { return ReapInto(0); }

uint32_t Engine::Sleep(double timeoutMs) {
  uint32_t n = ReapInto(0);
  if (n > 0 || !ready_.empty()) return n;
  if (kernelInflight_ == 0 && watching_ == 0) return 0;  // nothing could wake us
  WaitKernel(1, timeoutMs);
  return ReapInto(0);
}

uint32_t Engine::Wait(uint32_t minComplete, double timeoutMs) {
  uint32_t n = ReapInto(0);
  uint64_t reachable = static_cast<uint64_t>(n) + Inflight();
  if (minComplete > reachable) minComplete = static_cast<uint32_t>(reachable);
  if (minComplete > cqCap_) minComplete = cqCap_;
  if (n >= minComplete) return n;
  int64_t deadline = timeoutMs >= 0 ? NowNs() + static_cast<int64_t>(timeoutMs * 1e6) : -1;
  while (n < minComplete) {
    double remaining = -1;
    if (deadline >= 0) {
      int64_t left = deadline - NowNs();
      if (left <= 0) break;
      remaining = static_cast<double>(left) / 1e6;
    }
    if (done_.empty()) {
      if (kernelInflight_ == 0) break;  // nothing that could complete
      // Never ask the kernel for more than it holds; with requests queued
      // behind, wake at the first completion to refill the freed slots.
      uint32_t want = std::min<uint32_t>(minComplete - n, kernelInflight_);
      if (!pending_.empty()) want = 1;
      WaitKernel(want, remaining);
    }
    n += ReapInto(n);
  }
  return n;
}

void Engine::Close(double timeoutMs) {
  if (closed_) return;
  closed_ = true;
  int32_t scratch[2 * 64];
  int64_t deadline = NowNs() + static_cast<int64_t>(timeoutMs * 1e6);
  while (kernelInflight_ > 0) {
    int64_t left = deadline - NowNs();
    if (left <= 0) break;
    WaitKernel(1, static_cast<double>(left) / 1e6);
    BeforeHarvest();
    Harvest(scratch, 64);
  }
  bool stuck = kernelInflight_ > 0;
  DestroyBackend();
  if (stuck && !BackendWaitsOnDestroy()) {
    // The kernel may still write into guest memory / bounce buffers: never
    // free them (a leak beats memory corruption).
    leaked_ = true;
    auto* keep = new std::vector<std::shared_ptr<v8::BackingStore>>();
    for (auto& reg : cfg_.regions) keep->push_back(reg.store);
    (void)keep;
  }
  if (efd_ >= 0) ::close(efd_);
  efd_ = -1;
  if (cfg_.ownsFd && fd_ >= 0) ::close(fd_);
  fd_ = -1;
  while (!pending_.empty()) {
    Release(pending_.front());
    pending_.pop_front();
  }
  done_.clear();
  cfg_.regions.clear();
}

// ---------------------------------------------------------------------------
// N-API wrapper

namespace {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {
                           InstanceMethod<&EngineWrap::Submit>("submit"),
                           InstanceMethod<&EngineWrap::Reap>("reap"),
                           InstanceMethod<&EngineWrap::Wait>("waitCompletions"),
                           InstanceMethod<&EngineWrap::Sleep>("sleep"),
                           InstanceMethod<&EngineWrap::CanWatch>("canWatch"),
                           InstanceMethod<&EngineWrap::WatchFd>("watchFd"),
                           InstanceMethod<&EngineWrap::UnwatchFd>("unwatchFd"),
                           InstanceMethod<&EngineWrap::TakeReady>("takeReady"),
                           InstanceMethod<&EngineWrap::WatchErrors>("watchErrors"),
                           InstanceMethod<&EngineWrap::Inflight>("inflight"),
                           InstanceMethod<&EngineWrap::Stats>("stats"),
                           InstanceMethod<&EngineWrap::Describe>("describe"),
                           InstanceMethod<&EngineWrap::Close>("close"),
                       });
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) ThrowType(env, "NativeEngine: options object required");
    Napi::Object o = info[0].As<Napi::Object>();
    std::string kind = o.Get("kind").IsString() ? o.Get("kind").As<Napi::String>().Utf8Value() : "";
    if (kind != "io_uring" && kind != "libaio") {
      ThrowType(env, "NativeEngine: kind must be \"io_uring\" or \"libaio\", got \"" + kind + "\"");
    }
    EngineConfig cfg;
    cfg.fd = static_cast<int>(ArgInt(o.Get("fd"), "NativeEngine: fd", 0, INT32_MAX));
    cfg.ownsFd = ArgBool(o.Get("ownsFd"), false);
    cfg.direct = ArgBool(o.Get("direct"), false);
    cfg.isBlockDevice = ArgBool(o.Get("isBlockDevice"), false);
    cfg.drainOnReap = ArgBool(o.Get("drainOnReap"), false);
    cfg.blockSize = static_cast<uint32_t>(ArgInt(o.Get("blockSize"), "NativeEngine: blockSize", 512, 65536));
    if (cfg.blockSize & (cfg.blockSize - 1)) ThrowRange(env, "NativeEngine: blockSize must be a power of two");
    Napi::Value depth = o.Get("depth");
    if (!depth.IsUndefined()) cfg.depth = static_cast<uint32_t>(ArgInt(depth, "NativeEngine: depth", 1, 4096));
    Napi::Value maxIov = o.Get("maxIov");
    if (!maxIov.IsUndefined()) {
      cfg.maxIov = static_cast<uint32_t>(ArgInt(maxIov, "NativeEngine: maxIov", 1, kMaxIovLimit));
    }
    Napi::Value v;
    v = o.Get("sqCapacity");
    if (!v.IsUndefined()) cfg.sqCapacity = static_cast<uint32_t>(ArgInt(v, "NativeEngine: sqCapacity", 1, 1 << 20));
    v = o.Get("iovCapacity");
    if (!v.IsUndefined()) {
      cfg.iovCapacity = static_cast<uint32_t>(ArgInt(v, "NativeEngine: iovCapacity", 1, 1 << 22));
    }
    v = o.Get("cqCapacity");
    if (!v.IsUndefined()) cfg.cqCapacity = static_cast<uint32_t>(ArgInt(v, "NativeEngine: cqCapacity", 1, 1 << 20));
    Napi::Value regions = o.Get("regions");
    if (!regions.IsArray()) ThrowType(env, "NativeEngine: regions must be an array of Uint8Array");
    Napi::Array arr = regions.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      std::string what = "NativeEngine: regions[" + std::to_string(i) + "]";
      ViewMemory m = GetViewMemory(env, arr.Get(i), what.c_str());
      cfg.regions.push_back(Region{m.data, m.length, m.store});
    }
    engine_ = kind == "io_uring" ? MakeIoUringEngine(env, std::move(cfg)) : MakeAioEngine(env, std::move(cfg));
    Napi::Value sq, iov, cq;
    engine_->AllocBuffers(env, &sq, &iov, &cq);
    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("kind", Napi::String::New(env, engine_->Kind()));
    self.Set("completionFd", Napi::Number::New(env, engine_->CompletionFd()));
    self.Set("sqBuffer", sq);
    self.Set("iovBuffer", iov);
    self.Set("cqBuffer", cq);
    self.Set("sqCapacity", Napi::Number::New(env, engine_->SqCapacity()));
    self.Set("iovCapacity", Napi::Number::New(env, engine_->IovCapacity()));
    self.Set("cqCapacity", Napi::Number::New(env, engine_->CqCapacity()));
    self.Set("depth", Napi::Number::New(env, engine_->Depth()));
  }

  ~EngineWrap() override {
    if (engine_) engine_->Close(10000);
  }

 private:
  Engine* Live(Napi::Env env) {
    if (!engine_ || engine_->Closed()) ThrowError(env, "engine closed");
    return engine_.get();
  }

  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    uint32_t count = static_cast<uint32_t>(ArgInt(info[0], "submit: count", 0, e->SqCapacity()));
    if (count) e->Submit(count);
    return info.Env().Undefined();
  }

  Napi::Value Reap(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    return Napi::Number::New(info.Env(), e->Reap());
  }

  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    uint32_t minC = static_cast<uint32_t>(ArgInt(info[0], "waitCompletions: minComplete", 0, UINT32_MAX));
    double t = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (std::isnan(t)) t = 0;
    return Napi::Number::New(info.Env(), e->Wait(minC, t));
  }

  Napi::Value Sleep(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    double t = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (std::isnan(t)) t = 0;
    return Napi::Number::New(info.Env(), e->Sleep(t));
  }

  Napi::Value CanWatch(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), Live(info.Env())->CanWatch());
  }

  Napi::Value WatchFd(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    if (!e->CanWatch()) ThrowError(info.Env(), std::string("watchFd: the ") + e->Kind() + " engine cannot watch fds");
    int fd = static_cast<int>(ArgInt(info[0], "watchFd: fd", 0, INT32_MAX));
    uint32_t token = static_cast<uint32_t>(ArgInt(info[1], "watchFd: token", 0, UINT32_MAX));
    e->WatchFd(fd, token);
    return info.Env().Undefined();
  }

  Napi::Value UnwatchFd(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    e->UnwatchFd(static_cast<uint32_t>(ArgInt(info[0], "unwatchFd: token", 0, UINT32_MAX)));
    return info.Env().Undefined();
  }

  Napi::Value TakeReady(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint32_t> r = Live(env)->TakeReady();
    Napi::Array a = Napi::Array::New(env, r.size());
    for (uint32_t i = 0; i < r.size(); i++) a.Set(i, Napi::Number::New(env, r[i]));
    return a;
  }

  Napi::Value WatchErrors(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), Live(info.Env())->WatchErrors());
  }

  Napi::Value Inflight(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    return Napi::Number::New(info.Env(), e->Inflight());
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine* e = Live(env);
    const EngineStats& s = e->Stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("submitted", s.submitted);
    o.Set("completed", s.completed);
    o.Set("submitCalls", s.submitCalls);
    o.Set("bounced", s.bounced);
    o.Set("bouncedBytes", s.bouncedBytes);
    o.Set("errors", s.errors);
    o.Set("syncOps", s.syncOps);
    return o;
  }

  Napi::Value Describe(const Napi::CallbackInfo& info) {
    Engine* e = Live(info.Env());
    return Napi::String::New(info.Env(), e->Describe());
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (engine_) {
      engine_->Close(10000);
      engine_.reset();
    }
    return info.Env().Undefined();
  }

  std::unique_ptr<Engine> engine_;
};

}  // namespace

void InitEngine(Napi::Env env, Napi::Object exports) { exports.Set("NativeEngine", EngineWrap::Define(env)); }

}  // namespace vblk
