// Shared helpers for the vblk native addon: errno-carrying JS errors,
// argument checks, and the small bridge between N-API values and V8 handles
// (needed for SharedArrayBuffers over our own memory, which N-API cannot make).
#pragma once

#include <napi.h>
#include <v8.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

namespace vblk {

// "Operation not permitted"
std::string ErrnoText(int err);
// "EPERM" (or "E<number>" when unknown)
std::string ErrnoName(int err);

// An Error whose message is `message`, with .code = "EPERM"-style name and
// .errno = the number, like Node's system errors.
Napi::Error ErrnoError(Napi::Env env, const std::string& message, int err);
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& what, int err);
[[noreturn]] void ThrowError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);

// Argument helpers: a finite integral Number in [lo, hi], else TypeError/RangeError naming `what`.
int64_t ArgInt(const Napi::Value& v, const char* what, int64_t lo, int64_t hi);
// A finite Number >= 0, integral, <= 2^53.
uint64_t ArgSize(const Napi::Value& v, const char* what);
bool ArgBool(const Napi::Value& v, bool dflt);

// napi_value and v8::Local<v8::Value> are the same pointer in Node (a handle
// slot address); these convert between the two without copying.
v8::Local<v8::Value> ToV8(napi_value v);
napi_value FromV8(v8::Local<v8::Value> v);

// The memory behind an ArrayBufferView, plus a strong reference to its
// backing store: holding `store` keeps the bytes alive even if the JS side
// drops (or detaches) the buffer.
struct ViewMemory {
  uint8_t* data = nullptr;
  size_t length = 0;
  std::shared_ptr<v8::BackingStore> store;
};
ViewMemory GetViewMemory(Napi::Env env, const Napi::Value& view, const char* what);

// A plain (non-shared) ArrayBuffer of `bytes` zeroed bytes, allocated with
// calloc and jointly owned by JS and `*out` (freed when both let go).
Napi::Value NewOwnedArrayBuffer(Napi::Env env, size_t bytes, std::shared_ptr<v8::BackingStore>* out);

// eventfd helpers used by several modules. Return 0 or -errno.
int EventfdDrain(int fd, uint64_t* value);
int EventfdSignal(int fd, uint64_t value);

// Monotonic clock in nanoseconds.
int64_t NowNs();

// Module parts (each file registers its functions on `exports`).
void InitCommon(Napi::Env env, Napi::Object exports);
void InitGuestMemory(Napi::Env env, Napi::Object exports);
void InitFdUtil(Napi::Env env, Napi::Object exports);
void InitThreadAffinity(Napi::Env env, Napi::Object exports);
void InitBlockFile(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);
void InitEngine(Napi::Env env, Napi::Object exports);

// Probes (true, or the reason the engine is unusable).
// Each returns an empty string when usable.
std::string ProbeIoUring();
std::string ProbeLibaio();

}  // namespace vblk
