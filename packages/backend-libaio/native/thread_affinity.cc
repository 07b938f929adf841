// Per-thread CPU affinity (sched_setaffinity with pid 0 acts on the calling
// thread only, so this pins the worker_thread that calls it), gettid, and
// sched_yield for threads that spin (so kernel workers queued on their CPU
// run at once instead of after a scheduler tick).
#include <sched.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

namespace vblk {
namespace {

Napi::Value SetThreadAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowType(env, "setThreadAffinity: cpus must be an array of CPU numbers");
  Napi::Array arr = info[0].As<Napi::Array>();
  if (arr.Length() == 0) ThrowRange(env, "setThreadAffinity: cpus must not be empty");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < arr.Length(); i++) {
    int64_t cpu = ArgInt(arr.Get(i), "setThreadAffinity: cpu", 0, CPU_SETSIZE - 1);
    CPU_SET(static_cast<int>(cpu), &set);
  }
  if (::sched_setaffinity(0, sizeof set, &set) < 0) {
    std::string list;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      if (i) list += ",";
      list += std::to_string(arr.Get(i).As<Napi::Number>().Int64Value());
    }
    ThrowErrno(env, "setThreadAffinity([" + list + "])", errno);
  }
  return env.Undefined();
}

Napi::Value GetThreadAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) < 0) ThrowErrno(env, "getThreadAffinity", errno);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (CPU_ISSET(c, &set)) out.Set(n++, Napi::Number::New(env, c));
  }
  return out;
}

Napi::Value Gettid(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(::syscall(SYS_gettid)));
}

Napi::Value SchedYield(const Napi::CallbackInfo& info) {
  ::sched_yield();
  return info.Env().Undefined();
}

// spinWait16(u16, index, value, ns): spin with PAUSE until u16[index] !=
// value or ns elapse; true when it changed. For a thread that waits for
// another thread's store to shared memory (a driver waiting for used.idx):
// PAUSE keeps the core's pipeline (and a hyperthread sibling, or the host
// through pause-loop exiting) freer than a JS loop of loads does.
Napi::Value SpinWait16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsTypedArray())
    ThrowType(env, "spinWait16(u16: Uint16Array, index, value, ns)");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint16_array) ThrowType(env, "spinWait16: u16 must be a Uint16Array");
  Napi::Uint16Array arr = info[0].As<Napi::Uint16Array>();
  size_t index = static_cast<size_t>(ArgInt(info[1], "spinWait16: index", 0, static_cast<int64_t>(arr.ElementLength()) - 1));
  uint16_t value = static_cast<uint16_t>(ArgInt(info[2], "spinWait16: value", 0, 0xffff));
  double ns = info[3].As<Napi::Number>().DoubleValue();
  const uint16_t* p = arr.Data() + index;
  struct timespec t0;
  ::clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint32_t i = 1;; i++) {
    if (__atomic_load_n(p, __ATOMIC_ACQUIRE) != value) return Napi::Boolean::New(env, true);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    if ((i & 255) == 0) {
      struct timespec t;
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      double el = static_cast<double>(t.tv_sec - t0.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec - t0.tv_nsec);
      if (el >= ns) return Napi::Boolean::New(env, false);
    }
  }
}

}  // namespace

void InitThreadAffinity(Napi::Env env, Napi::Object exports) {
  exports.Set("setThreadAffinity", Napi::Function::New(env, SetThreadAffinity, "setThreadAffinity"));
  exports.Set("getThreadAffinity", Napi::Function::New(env, GetThreadAffinity, "getThreadAffinity"));
  exports.Set("gettid", Napi::Function::New(env, Gettid, "gettid"));
  exports.Set("schedYield", Napi::Function::New(env, SchedYield, "schedYield"));
  exports.Set("spinWait16", Napi::Function::New(env, SpinWait16, "spinWait16"));
}

}  // namespace vblk
