// io_uring backend, spoken through the raw syscalls (io_uring_setup,
// io_uring_enter, io_uring_register) and the mmapped SQ/CQ rings; no liburing.
//
// Ring discipline (single thread, no SQPOLL):
//  - SQ: we own the tail. SQEs are written at sqes[tail & mask] with the
//    array slot set to the same index (identity, set up once), then the tail
//    is published with a release store before io_uring_enter.
//  - CQ: we own the head. The tail is read with an acquire load; after the
//    entries are consumed the head is published with a release store.
//  - In-flight requests never exceed the slot table (<= sq_entries), and the
//    CQ has 2 * sq_entries entries, so neither ring can overflow.
#include <linux/io_uring.h>
#include <linux/time_types.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "engine.h"

#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif
#ifndef IORING_FEAT_EXT_ARG
#define IORING_FEAT_EXT_ARG (1U << 8)
#endif
#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
#endif

namespace vblk {
namespace {

int SysSetup(unsigned entries, struct io_uring_params* p) {
  return static_cast<int>(::syscall(__NR_io_uring_setup, entries, p));
}

int SysEnter(int fd, unsigned toSubmit, unsigned minComplete, unsigned flags, const void* arg, size_t argsz) {
  return static_cast<int>(::syscall(__NR_io_uring_enter, fd, toSubmit, minComplete, flags, arg, argsz));
}

int SysRegister(int fd, unsigned op, const void* arg, unsigned nrArgs) {
  return static_cast<int>(::syscall(__NR_io_uring_register, fd, op, arg, nrArgs));
}

std::string SetupErrorText(int err) {
  std::string s = "io_uring_setup failed: " + ErrnoText(err);
  if (err == EPERM) s += " (seccomp or kernel.io_uring_disabled?)";
  if (err == ENOSYS) s += " (kernel built without io_uring, or blocked by seccomp?)";
  if (err == ENOMEM) s += " (RLIMIT_MEMLOCK too low?)";
  return s;
}

// Optional setup flags, most wanted first; dropped one by one on EINVAL
// (older kernels reject flags they do not know).
//
// COOP_TASKRUN + TASKRUN_FLAG: completions are not pushed at a thread that
// is running in userspace with an IPI; the kernel sets IORING_SQ_TASKRUN and
// the next reap() enters the kernel once to collect them (BeforeHarvest). A
// thread sleeping in epoll_wait / io_uring_enter is still woken (seen on
// 6.18: the Poller tests cover it). VBLK_IOURING_COOP_TASKRUN=0 turns it off.
constexpr unsigned kCoop = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
const unsigned kFlagSets[] = {
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | kCoop,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | kCoop,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_CLAMP,
};

int SetupRing(unsigned entries, struct io_uring_params* p, unsigned* flagsUsed) {
  const char* coop = std::getenv("VBLK_IOURING_COOP_TASKRUN");
  bool noCoop = coop && coop[0] == '0';
  for (unsigned flags : kFlagSets) {
    if (noCoop && (flags & kCoop)) continue;
    std::memset(p, 0, sizeof *p);
    p->flags = flags;
    int fd = SysSetup(entries, p);
    if (fd >= 0) {
      *flagsUsed = flags;
      return fd;
    }
    if (errno != EINVAL) return -errno;
  }
  return -EINVAL;
}

class IoUringEngine final : public Engine {
 public:
  explicit IoUringEngine(EngineConfig cfg) : Engine(std::move(cfg)) {}
  ~IoUringEngine() override { Close(10000); }

  void Init(Napi::Env env) {
    struct io_uring_params p;
    int fd = SetupRing(depth_, &p, &setupFlags_);
    if (fd < 0) throw ErrnoError(env, "io_uring unavailable: " + SetupErrorText(-fd), -fd);
    ringFd_ = fd;
    features_ = p.features;
    sqEntries_ = p.sq_entries;
    cqEntries_ = p.cq_entries;
    sqRingSz_ = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
    cqRingSz_ = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sqRingSz_ = cqRingSz_ = std::max(sqRingSz_, cqRingSz_);
    sqRing_ = ::mmap(nullptr, sqRingSz_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_,
                     IORING_OFF_SQ_RING);
    if (sqRing_ == MAP_FAILED) {
      sqRing_ = nullptr;
      Fail(env, "mmap of the SQ ring", errno);
    }
    if (single) {
      cqRing_ = sqRing_;
    } else {
      cqRing_ = ::mmap(nullptr, cqRingSz_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_,
                       IORING_OFF_CQ_RING);
      if (cqRing_ == MAP_FAILED) {
        cqRing_ = nullptr;
        Fail(env, "mmap of the CQ ring", errno);
      }
    }
    sqesSz_ = p.sq_entries * sizeof(struct io_uring_sqe);
    void* sqes = ::mmap(nullptr, sqesSz_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_,
                        IORING_OFF_SQES);
    if (sqes == MAP_FAILED) Fail(env, "mmap of the SQE array", errno);
    sqes_ = static_cast<struct io_uring_sqe*>(sqes);

    uint8_t* sq = static_cast<uint8_t*>(sqRing_);
    sqHead_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.head);
    sqTail_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.tail);
    sqMask_ = *reinterpret_cast<uint32_t*>(sq + p.sq_off.ring_mask);
    sqFlags_ = reinterpret_cast<uint32_t*>(sq + p.sq_off.flags);
    uint32_t* array = reinterpret_cast<uint32_t*>(sq + p.sq_off.array);
    for (uint32_t i = 0; i < sqEntries_; i++) array[i] = i;
    uint8_t* cq = static_cast<uint8_t*>(cqRing_);
    cqHead_ = reinterpret_cast<uint32_t*>(cq + p.cq_off.head);
    cqTail_ = reinterpret_cast<uint32_t*>(cq + p.cq_off.tail);
    cqMask_ = *reinterpret_cast<uint32_t*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<struct io_uring_cqe*>(cq + p.cq_off.cqes);
    localTail_ = __atomic_load_n(sqTail_, __ATOMIC_RELAXED);

    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0) Fail(env, "eventfd", errno);
    if (SysRegister(ringFd_, IORING_REGISTER_EVENTFD, &efd_, 1) < 0) Fail(env, "IORING_REGISTER_EVENTFD", errno);
    if (depth_ > sqEntries_) Fail(env, "ring smaller than the requested depth", EINVAL);
  }

  const char* Kind() const override { return "io_uring"; }

  std::string Describe() const override {
    std::string f;
    if (setupFlags_ & IORING_SETUP_SUBMIT_ALL) f += " SUBMIT_ALL";
    if (setupFlags_ & IORING_SETUP_SINGLE_ISSUER) f += " SINGLE_ISSUER";
    if (setupFlags_ & IORING_SETUP_COOP_TASKRUN) f += " COOP_TASKRUN";
    if (setupFlags_ & IORING_SETUP_TASKRUN_FLAG) f += " TASKRUN_FLAG";
    return "io_uring sq=" + std::to_string(sqEntries_) + " cq=" + std::to_string(cqEntries_) +
           " depth=" + std::to_string(depth_) + " flags: CLAMP" + f +
           ((features_ & IORING_FEAT_EXT_ARG) ? " ext_arg" : "");
  }

 protected:
  struct io_uring_sqe* NextSqe() {
    struct io_uring_sqe* sqe = &sqes_[localTail_ & sqMask_];
    std::memset(sqe, 0, sizeof *sqe);
    localTail_++;
    toSubmit_++;
    return sqe;
  }

  void QueueRw(Req* r) override {
    struct io_uring_sqe* sqe = NextSqe();
    bool write = r->op == OP_WRITE;
    sqe->fd = fd_;
    sqe->off = r->ioOffset;
    sqe->user_data = static_cast<uint64_t>(r->slot);
    if (r->bounced) {
      sqe->opcode = write ? IORING_OP_WRITE : IORING_OP_READ;
      sqe->addr = reinterpret_cast<uint64_t>(r->bounce);
      sqe->len = static_cast<uint32_t>(r->ioLength);
    } else if (r->iov.size() == 1) {
      sqe->opcode = write ? IORING_OP_WRITE : IORING_OP_READ;
      sqe->addr = reinterpret_cast<uint64_t>(r->iov[0].iov_base);
      sqe->len = static_cast<uint32_t>(r->iov[0].iov_len);
    } else {
      // The iovec array lives in the request (kept until completion).
      sqe->opcode = write ? IORING_OP_WRITEV : IORING_OP_READV;
      sqe->addr = reinterpret_cast<uint64_t>(r->iov.data());
      sqe->len = static_cast<uint32_t>(r->iov.size());
    }
  }

  void QueueFlush(Req* r) override {
    // No IOSQE_IO_DRAIN: the core holds a flush until earlier writes are
    // done, and DRAIN would also wait for the watched fds' multishot polls,
    // which never complete.
    struct io_uring_sqe* sqe = NextSqe();
    sqe->opcode = IORING_OP_FSYNC;
    sqe->fd = fd_;
    sqe->fsync_flags = IORING_FSYNC_DATASYNC;
    sqe->user_data = static_cast<uint64_t>(r->slot);
  }

  bool CanFallocateAsync() const override { return true; }

  void QueueFallocate(Req* r, int mode) override {
    struct io_uring_sqe* sqe = NextSqe();
    sqe->opcode = IORING_OP_FALLOCATE;
    sqe->fd = fd_;
    sqe->off = r->offset;
    sqe->addr = r->length;
    sqe->len = static_cast<uint32_t>(mode);
    sqe->user_data = static_cast<uint64_t>(r->slot);
  }

  bool BackendWaitsOnDestroy() const override { return false; }

  void Kick() override {
    if (toSubmit_ == 0 || ringFd_ < 0) return;
    __atomic_store_n(sqTail_, localTail_, __ATOMIC_RELEASE);
    int ret;
    do ret = SysEnter(ringFd_, toSubmit_, 0, 0, nullptr, 0);
    while (ret < 0 && errno == EINTR);
    CountSubmitCall();
    if (ret >= 0) {
      toSubmit_ -= std::min<uint32_t>(static_cast<uint32_t>(ret), toSubmit_);
      return;
    }
    int err = errno;
    if (err == EAGAIN || err == EBUSY) return;  // left in the ring, retried on the next call
    // Anything else: the kernel consumed none of them; take them back and
    // fail their requests.
    uint32_t head = __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE);
    for (uint32_t i = head; i != localTail_; i++) {
      CompleteNow(static_cast<uint32_t>(sqes_[i & sqMask_].user_data), -err);
    }
    localTail_ = head;
    __atomic_store_n(sqTail_, localTail_, __ATOMIC_RELEASE);
    toSubmit_ = 0;
  }

  uint32_t Harvest(int32_t* out, uint32_t max) override {
    uint32_t head = __atomic_load_n(cqHead_, __ATOMIC_RELAXED);
    uint32_t tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
    uint32_t n = 0;
    while (head != tail && n < max) {
      const struct io_uring_cqe* cqe = &cqes_[head & cqMask_];
      uint64_t slot = cqe->user_data;
      int32_t res = cqe->res;
      uint32_t flags = cqe->flags;
      head++;
      if (slot & kWatchTag) {
        OnWatchCqe(static_cast<uint32_t>(slot), res, flags);
        continue;
      }
      if (slot & kCancelTag) continue;
      if (slot <= UINT32_MAX && Finish(static_cast<uint32_t>(slot), res, out + 2 * n)) n++;
    }
    __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
    return n;
  }

  // ---- watched fds: one multishot POLL_ADD per fd, user_data = kWatchTag | token
  //
  //   user_data:  [ 63 .. 41 | 40 = cancel | 39 = watch | 31 .. 0 = slot or token ]
  bool CanWatch() const override { return true; }

  void WatchFd(int fd, uint32_t token) override {
    UnwatchFd(token);
    watches_.push_back({token, fd});
    watching_ = static_cast<uint32_t>(watches_.size());
    ArmWatch(fd, token);
    Kick();
  }

  void UnwatchFd(uint32_t token) override {
    for (size_t i = 0; i < watches_.size(); i++) {
      if (watches_[i].first != token) continue;
      watches_.erase(watches_.begin() + static_cast<long>(i));
      watching_ = static_cast<uint32_t>(watches_.size());
      struct io_uring_sqe* sqe = NextSqe();
      sqe->opcode = IORING_OP_POLL_REMOVE;
      sqe->fd = -1;
      sqe->addr = kWatchTag | token;
      sqe->user_data = kCancelTag | token;
      Kick();
      return;
    }
  }

  void ArmWatch(int fd, uint32_t token) {
    struct io_uring_sqe* sqe = NextSqe();
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = POLLIN;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->user_data = kWatchTag | token;
  }

  void OnWatchCqe(uint32_t token, int32_t res, uint32_t flags) {
    int fd = -1;
    for (auto& w : watches_)
      if (w.first == token) fd = w.second;
    if (fd < 0) return;  // unwatched meanwhile (the removal's CQE races with the last poll)
    if (res < 0 && res != -ECANCELED) {
      NoteWatchError();
      NoteReady(token);  // wake the caller so that it notices and falls back
      return;
    }
    // Readable: clear the counter (kick eventfds) so that the next write
    // wakes the poll again, and tell the caller.
    if (res > 0) EventfdDrain(fd, nullptr);
    NoteReady(token);
    // The kernel ends a multishot poll now and then (F_MORE clear): re-arm.
    if (!(flags & IORING_CQE_F_MORE)) ArmWatch(fd, token);
  }

  bool KernelReady() override {
    return __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE) != __atomic_load_n(cqHead_, __ATOMIC_RELAXED);
  }

  void BeforeHarvest() override {
    // With COOP_TASKRUN|TASKRUN_FLAG (or after a CQ overflow) the kernel asks
    // us to enter it so that it can post the completions it is holding.
    uint32_t f = __atomic_load_n(sqFlags_, __ATOMIC_RELAXED);
    if (f & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) {
      SysEnter(ringFd_, 0, 0, IORING_ENTER_GETEVENTS, nullptr, 0);
    }
  }

  void WaitKernel(uint32_t minComplete, double timeoutMs) override {
    if (ringFd_ < 0) return;
    if (minComplete == 0) minComplete = 1;
    if (features_ & IORING_FEAT_EXT_ARG) {
      struct __kernel_timespec ts = {};
      struct io_uring_getevents_arg arg = {};
      arg.sigmask = 0;
      arg.sigmask_sz = _NSIG / 8;
      if (timeoutMs >= 0) {
        int64_t ns = static_cast<int64_t>(timeoutMs * 1e6);
        ts.tv_sec = ns / 1000000000LL;
        ts.tv_nsec = ns % 1000000000LL;
        arg.ts = reinterpret_cast<uint64_t>(&ts);
      }
      if (toSubmit_) __atomic_store_n(sqTail_, localTail_, __ATOMIC_RELEASE);
      int ret = SysEnter(ringFd_, toSubmit_, minComplete, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                         sizeof arg);
      if (ret > 0 && toSubmit_) {
        CountSubmitCall();
        toSubmit_ -= std::min<uint32_t>(static_cast<uint32_t>(ret), toSubmit_);
      }
      return;  // ETIME / EINTR: the caller re-checks
    }
    // Pre-5.11 kernels: sleep on the eventfd (drain, re-check, then poll).
    EventfdDrain(efd_, nullptr);
    if (KernelReady()) return;
    struct pollfd pfd = {efd_, POLLIN, 0};
    int ms = timeoutMs < 0 ? -1 : static_cast<int>(std::ceil(std::min(timeoutMs, 2e9)));
    ::poll(&pfd, 1, ms);
  }

  void DestroyBackend() override {
    if (sqes_) ::munmap(sqes_, sqesSz_);
    sqes_ = nullptr;
    if (cqRing_ && cqRing_ != sqRing_) ::munmap(cqRing_, cqRingSz_);
    cqRing_ = nullptr;
    if (sqRing_) ::munmap(sqRing_, sqRingSz_);
    sqRing_ = nullptr;
    if (ringFd_ >= 0) ::close(ringFd_);
    ringFd_ = -1;
  }

 private:
  [[noreturn]] void Fail(Napi::Env env, const std::string& what, int err) {
    DestroyBackend();
    if (efd_ >= 0) ::close(efd_);
    efd_ = -1;
    closed_ = true;
    ThrowErrno(env, "io_uring unavailable: " + what, err);
  }

  int ringFd_ = -1;
  unsigned setupFlags_ = 0;
  unsigned features_ = 0;
  uint32_t sqEntries_ = 0, cqEntries_ = 0;
  size_t sqRingSz_ = 0, cqRingSz_ = 0, sqesSz_ = 0;
  void* sqRing_ = nullptr;
  void* cqRing_ = nullptr;
  struct io_uring_sqe* sqes_ = nullptr;
  uint32_t* sqHead_ = nullptr;
  uint32_t* sqTail_ = nullptr;
  uint32_t* sqFlags_ = nullptr;
  uint32_t sqMask_ = 0;
  uint32_t* cqHead_ = nullptr;
  uint32_t* cqTail_ = nullptr;
  uint32_t cqMask_ = 0;
  struct io_uring_cqe* cqes_ = nullptr;
  uint32_t localTail_ = 0;
  uint32_t toSubmit_ = 0;
  static constexpr uint64_t kWatchTag = 1ULL << 39;
  static constexpr uint64_t kCancelTag = 1ULL << 40;
  std::vector<std::pair<uint32_t, int>> watches_;  // (token, fd)
};

}  // namespace

std::unique_ptr<Engine> MakeIoUringEngine(Napi::Env env, EngineConfig cfg) {
  auto e = std::make_unique<IoUringEngine>(std::move(cfg));
  e->Init(env);
  return e;
}

std::string ProbeIoUring() {
  struct io_uring_params p;
  unsigned flags = 0;
  int fd = SetupRing(4, &p, &flags);
  if (fd < 0) return SetupErrorText(-fd);
  ::close(fd);
  return "";
}

}  // namespace vblk
