// Linux native AIO backend, through the raw syscalls (io_setup, io_submit,
// io_getevents, io_destroy); no libaio.
//
// Completions are read straight from the AIO completion ring that the kernel
// maps into our address space (the aio_context_t *is* its address): the
// header carries head/tail, the kernel advances tail after writing an event,
// we advance head after reading. That is the same ring io_getevents reads;
// only this thread touches it, so the two never race. If the ring header is
// not the layout we know (magic / incompatible features), io_getevents with
// a zero timeout is used instead.
#include <linux/aio_abi.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "engine.h"

namespace vblk {
namespace {

constexpr unsigned kAioRingMagic = 0xa10a10a1;

// Layout of the user-visible AIO ring header (fs/aio.c, stable ABI).
struct AioRing {
  unsigned id;
  unsigned nr;  // number of io_events
  unsigned head;
  unsigned tail;
  unsigned magic;
  unsigned compat_features;
  unsigned incompat_features;
  unsigned header_length;
  struct io_event io_events[];
};

long SysIoSetup(unsigned nr, aio_context_t* ctx) { return ::syscall(__NR_io_setup, nr, ctx); }
long SysIoDestroy(aio_context_t ctx) { return ::syscall(__NR_io_destroy, ctx); }
long SysIoSubmit(aio_context_t ctx, long nr, struct iocb** cbs) { return ::syscall(__NR_io_submit, ctx, nr, cbs); }
long SysIoGetevents(aio_context_t ctx, long minNr, long nr, struct io_event* ev, struct timespec* ts) {
  return ::syscall(__NR_io_getevents, ctx, minNr, nr, ev, ts);
}

std::string SetupErrorText(int err) {
  std::string s = "io_setup failed: " + ErrnoText(err);
  if (err == EPERM || err == ENOSYS) s += " (seccomp, or a kernel without CONFIG_AIO?)";
  if (err == EAGAIN) s += " (fs.aio-max-nr exhausted?)";
  return s;
}

class AioEngine final : public Engine {
 public:
  explicit AioEngine(EngineConfig cfg) : Engine(std::move(cfg)) {}
  ~AioEngine() override { Close(10000); }

  void Init(Napi::Env env) {
    aio_context_t ctx = 0;
    if (SysIoSetup(depth_, &ctx) < 0) {
      int e = errno;
      closed_ = true;
      throw ErrnoError(env, "libaio unavailable: " + SetupErrorText(e), e);
    }
    ctx_ = ctx;
    ring_ = reinterpret_cast<AioRing*>(ctx_);
    userReap_ = ring_->magic == kAioRingMagic && ring_->incompat_features == 0 && ring_->nr > 0;
    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0) {
      int e = errno;
      DestroyBackend();
      closed_ = true;
      ThrowErrno(env, "libaio: eventfd", e);
    }
    iocbs_.resize(depth_);
    batch_.reserve(depth_);
    events_.resize(std::min<uint32_t>(depth_, 256));
  }

  const char* Kind() const override { return "libaio"; }

  std::string Describe() const override {
    return "libaio depth=" + std::to_string(depth_) + " ring=" + std::to_string(userReap_ ? ring_->nr : 0) +
           (userReap_ ? " userspace-reap" : " io_getevents") + (fdsyncUnsupported_ ? " fdatasync-fallback" : "");
  }

 protected:
  struct iocb* Prep(Req* r) {
    struct iocb* cb = &iocbs_[static_cast<size_t>(r->slot)];
    std::memset(cb, 0, sizeof *cb);
    cb->aio_data = static_cast<uint64_t>(r->slot);
    cb->aio_fildes = static_cast<uint32_t>(fd_);
    cb->aio_flags = IOCB_FLAG_RESFD;
    cb->aio_resfd = static_cast<uint32_t>(efd_);
    return cb;
  }

  void QueueRw(Req* r) override {
    struct iocb* cb = Prep(r);
    bool write = r->op == OP_WRITE;
    cb->aio_offset = static_cast<int64_t>(r->ioOffset);
    if (r->bounced) {
      cb->aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
      cb->aio_buf = reinterpret_cast<uint64_t>(r->bounce);
      cb->aio_nbytes = r->ioLength;
    } else if (r->iov.size() == 1) {
      cb->aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
      cb->aio_buf = reinterpret_cast<uint64_t>(r->iov[0].iov_base);
      cb->aio_nbytes = r->iov[0].iov_len;
    } else {
      cb->aio_lio_opcode = write ? IOCB_CMD_PWRITEV : IOCB_CMD_PREADV;
      cb->aio_buf = reinterpret_cast<uint64_t>(r->iov.data());
      cb->aio_nbytes = r->iov.size();
    }
    batch_.push_back(cb);
  }

  void QueueFlush(Req* r) override {
    if (fdsyncUnsupported_) {
      CompleteNow(static_cast<uint32_t>(r->slot), SyncFdatasync());
      return;
    }
    struct iocb* cb = Prep(r);
    cb->aio_lio_opcode = IOCB_CMD_FDSYNC;
    batch_.push_back(cb);
  }

  bool CanFallocateAsync() const override { return false; }
  void QueueFallocate(Req*, int) override {}
  bool BackendWaitsOnDestroy() const override { return true; }

  void Kick() override {
    size_t off = 0;
    while (off < batch_.size()) {
      long ret = SysIoSubmit(ctx_, static_cast<long>(batch_.size() - off), &batch_[off]);
      if (ret < 0 && errno == EINTR) continue;
      CountSubmitCall();
      if (ret > 0) {
        off += static_cast<size_t>(ret);
        continue;
      }
      // io_submit reports the error of the first iocb it could not take.
      int err = ret == 0 ? EAGAIN : errno;
      struct iocb* cb = batch_[off];
      uint32_t slot = static_cast<uint32_t>(cb->aio_data);
      if (cb->aio_lio_opcode == IOCB_CMD_FDSYNC && err == EINVAL) {
        // Kernel/filesystem without aio fsync: do it here (writes are done).
        fdsyncUnsupported_ = true;
        CompleteNow(slot, SyncFdatasync());
      } else {
        CompleteNow(slot, -err);
      }
      off++;
    }
    batch_.clear();
  }

  uint32_t Harvest(int32_t* out, uint32_t max) override {
    uint32_t n = 0;
    if (userReap_) {
      unsigned nr = ring_->nr;
      unsigned head = __atomic_load_n(&ring_->head, __ATOMIC_RELAXED);
      unsigned tail = __atomic_load_n(&ring_->tail, __ATOMIC_ACQUIRE);
      if (head >= nr || tail >= nr) {  // not a ring we understand any more
        userReap_ = false;
        return Harvest(out, max);
      }
      while (head != tail && n < max) {
        struct io_event ev = ring_->io_events[head];
        head = (head + 1) % nr;
        if (Finish(static_cast<uint32_t>(ev.data), ev.res, out + 2 * n)) n++;
      }
      __atomic_store_n(&ring_->head, head, __ATOMIC_RELEASE);
      return n;
    }
    struct timespec zero = {0, 0};
    while (n < max) {
      long want = static_cast<long>(std::min<size_t>(max - n, events_.size()));
      long got = SysIoGetevents(ctx_, 0, want, events_.data(), &zero);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      for (long i = 0; i < got; i++) {
        if (Finish(static_cast<uint32_t>(events_[i].data), events_[i].res, out + 2 * n)) n++;
      }
      if (got < want) break;
    }
    return n;
  }

  bool KernelReady() override {
    if (!userReap_) return true;  // unknown: let Harvest look
    return __atomic_load_n(&ring_->tail, __ATOMIC_ACQUIRE) != __atomic_load_n(&ring_->head, __ATOMIC_RELAXED);
  }

  void WaitKernel(uint32_t, double timeoutMs) override {
    if (efd_ < 0) return;
    uint64_t v = 0;
    EventfdDrain(efd_, &v);
    if (userReap_ ? KernelReady() : v > 0) return;
    struct pollfd pfd = {efd_, POLLIN, 0};
    int ms = timeoutMs < 0 ? -1 : static_cast<int>(std::ceil(std::min(timeoutMs, 2e9)));
    ::poll(&pfd, 1, ms);
  }

  void DestroyBackend() override {
    if (ctx_) SysIoDestroy(ctx_);  // waits for whatever is still in flight
    ctx_ = 0;
    ring_ = nullptr;
    userReap_ = false;
  }

 private:
  aio_context_t ctx_ = 0;
  AioRing* ring_ = nullptr;
  bool userReap_ = false;
  bool fdsyncUnsupported_ = false;
  std::vector<struct iocb> iocbs_;
  std::vector<struct iocb*> batch_;
  std::vector<struct io_event> events_;
};

}  // namespace

std::unique_ptr<Engine> MakeAioEngine(Napi::Env env, EngineConfig cfg) {
  auto e = std::make_unique<AioEngine>(std::move(cfg));
  e->Init(env);
  return e;
}

std::string ProbeLibaio() {
  aio_context_t ctx = 0;
  if (SysIoSetup(1, &ctx) < 0) return SetupErrorText(errno);
  SysIoDestroy(ctx);
  return "";
}

}  // namespace vblk
