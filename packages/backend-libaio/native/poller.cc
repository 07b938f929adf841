// One epoll instance that an IOThread sleeps on: queue kick eventfds, engine
// completion eventfds, sockets. Ready tokens land in a shared Int32Array so a
// wake-up costs one N-API call.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common.h"

namespace vblk {
namespace {

constexpr uint32_t kReadyCapacity = 256;
constexpr uint64_t kDrainBit = 1ULL << 31;     // read the eventfd counter when ready
constexpr uint64_t kPollFirstBit = 1ULL << 30;  // fd is blocking: poll before reading
constexpr uint64_t kFdMask = (1ULL << 30) - 1;

bool gHavePwait2 = true;  // cleared on ENOSYS

// Only eventfds get drained: reading 8 bytes from a socket or pipe would eat data.
bool IsEventfd(int fd) {
  char link[64];
  char target[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = 0;
  return std::strcmp(target, "anon_inode:[eventfd]") == 0;
}

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {
                           InstanceMethod<&Poller::Add>("add"),
                           InstanceMethod<&Poller::Remove>("remove"),
                           InstanceMethod<&Poller::Wait>("wait"),
                           InstanceMethod<&Poller::Close>("close"),
                           InstanceMethod<&Poller::Fd>("fd"),
                       });
  }

  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) ThrowErrno(env, "Poller: epoll_create1", errno);
    Napi::Value ab = NewOwnedArrayBuffer(env, kReadyCapacity * sizeof(int32_t), &readyStore_);
    ready_ = static_cast<int32_t*>(readyStore_->Data());
    info.This().As<Napi::Object>().Set("readyBuffer", ab);
    info.This().As<Napi::Object>().Set("readyCapacity", Napi::Number::New(env, kReadyCapacity));
  }

  ~Poller() override { CloseFds(); }

 private:
  void CheckOpen(Napi::Env env) {
    if (epfd_ < 0) ThrowError(env, "poller closed");
  }

  void CloseFds() {
    if (epfd_ >= 0) ::close(epfd_);
    epfd_ = -1;
  }

  // add(fd, token, drainEventfd = true)
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    int fd = static_cast<int>(ArgInt(info[0], "fd", 0, static_cast<int64_t>(kFdMask)));
    uint32_t token = static_cast<uint32_t>(ArgInt(info[1], "token", INT32_MIN, UINT32_MAX));
    bool drain = info.Length() > 2 ? ArgBool(info[2], true) : true;
    uint64_t data = (static_cast<uint64_t>(token) << 32) | static_cast<uint64_t>(fd);
    if (drain && IsEventfd(fd)) {
      data |= kDrainBit;
      int fl = ::fcntl(fd, F_GETFL);
      if (fl >= 0 && !(fl & O_NONBLOCK)) data |= kPollFirstBit;
    }
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
      if (errno == EEXIST) {
        if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0) return env.Undefined();
      }
      ThrowErrno(env, "Poller.add(fd " + std::to_string(fd) + ")", errno);
    }
    return env.Undefined();
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
    if (::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) < 0 && errno != ENOENT && errno != EBADF) {
      ThrowErrno(env, "Poller.remove(fd " + std::to_string(fd) + ")", errno);
    }
    return env.Undefined();
  }

  int EpollWait(double timeoutMs) {
    if (timeoutMs < 0) return ::epoll_wait(epfd_, events_, kReadyCapacity, -1);
    if (timeoutMs == 0) return ::epoll_wait(epfd_, events_, kReadyCapacity, 0);
    if (timeoutMs != std::floor(timeoutMs) && timeoutMs < 1e6) {
#ifdef SYS_epoll_pwait2
      if (gHavePwait2) {
        struct timespec ts;
        int64_t ns = static_cast<int64_t>(timeoutMs * 1e6);
        ts.tv_sec = static_cast<time_t>(ns / 1000000000LL);
        ts.tv_nsec = static_cast<long>(ns % 1000000000LL);
        long r = ::syscall(SYS_epoll_pwait2, epfd_, events_, kReadyCapacity, &ts, nullptr, 0);
        if (r >= 0 || errno != ENOSYS) return static_cast<int>(r);
        gHavePwait2 = false;
      }
#endif
      timeoutMs = std::ceil(timeoutMs);
    }
    int ms = timeoutMs >= static_cast<double>(INT_MAX) ? INT_MAX : static_cast<int>(timeoutMs);
    return ::epoll_wait(epfd_, events_, kReadyCapacity, ms);
  }

  // wait(timeoutMs) -> count of tokens written into readyBuffer
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    double timeoutMs = 0;
    if (info.Length() > 0 && info[0].IsNumber()) timeoutMs = info[0].As<Napi::Number>().DoubleValue();
    if (std::isnan(timeoutMs)) timeoutMs = 0;
    // EINTR is routine here: io_uring completion task work interrupts the
    // sleep (TIF_NOTIFY_SIGNAL) and posts the CQE + eventfd signal on the
    // way out, so retry with whatever time is left.
    int64_t deadline = timeoutMs > 0 ? NowNs() + static_cast<int64_t>(timeoutMs * 1e6) : 0;
    int n;
    for (;;) {
      n = EpollWait(timeoutMs);
      if (n >= 0) break;
      if (errno != EINTR) ThrowErrno(env, "Poller.wait", errno);
      if (timeoutMs > 0) {
        timeoutMs = static_cast<double>(deadline - NowNs()) / 1e6;
        if (timeoutMs <= 0) timeoutMs = 0;
      }
    }
    for (int i = 0; i < n; i++) {
      uint64_t d = events_[i].data.u64;
      ready_[i] = static_cast<int32_t>(static_cast<uint32_t>(d >> 32));
      if (d & kDrainBit) {
        int fd = static_cast<int>(d & kFdMask);
        if (d & kPollFirstBit) {
          struct pollfd p = {fd, POLLIN, 0};
          if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) continue;
        }
        EventfdDrain(fd, nullptr);  // not an eventfd / error: nothing to drain
      }
    }
    return Napi::Number::New(env, n);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFds();
    return info.Env().Undefined();
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), epfd_); }

  int epfd_ = -1;
  std::shared_ptr<v8::BackingStore> readyStore_;
  int32_t* ready_ = nullptr;
  struct epoll_event events_[kReadyCapacity];
};

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports) { exports.Set("Poller", Poller::Define(env)); }

}  // namespace vblk
