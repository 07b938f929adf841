#include "common.h"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace vblk {

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r returns a pointer (possibly not into buf).
  const char* s = strerror_r(err, buf, sizeof buf);
  return s ? std::string(s) : std::string("errno ") + std::to_string(err);
}

std::string ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* n = strerrorname_np(err);
  if (n) return n;
#endif
  return "E" + std::to_string(err);
}

Napi::Error ErrnoError(Napi::Env env, const std::string& message, int err) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

void ThrowErrno(Napi::Env env, const std::string& what, int err) {
  throw ErrnoError(env, what + ": " + ErrnoText(err) + " (" + ErrnoName(err) + ")", err);
}

void ThrowError(Napi::Env env, const std::string& message) { throw Napi::Error::New(env, message); }
void ThrowRange(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }
void ThrowType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

int64_t ArgInt(const Napi::Value& v, const char* what, int64_t lo, int64_t hi) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) ThrowType(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) ThrowRange(env, std::string(what) + " must be an integer");
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    ThrowRange(env, std::string(what) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "]: " + std::to_string(static_cast<long long>(d)));
  }
  return static_cast<int64_t>(d);
}

uint64_t ArgSize(const Napi::Value& v, const char* what) {
  return static_cast<uint64_t>(ArgInt(v, what, 0, 9007199254740992LL));
}

bool ArgBool(const Napi::Value& v, bool dflt) {
  if (v.IsUndefined() || v.IsNull()) return dflt;
  return v.ToBoolean().Value();
}

v8::Local<v8::Value> ToV8(napi_value v) {
  v8::Local<v8::Value> local;
  static_assert(sizeof(local) == sizeof(v), "v8::Local and napi_value differ in size");
  std::memcpy(static_cast<void*>(&local), &v, sizeof v);
  return local;
}

napi_value FromV8(v8::Local<v8::Value> local) {
  napi_value v;
  std::memcpy(&v, static_cast<void*>(&local), sizeof v);
  return v;
}

ViewMemory GetViewMemory(Napi::Env env, const Napi::Value& view, const char* what) {
  ViewMemory m;
  if (view.IsTypedArray()) {
    napi_typedarray_type type;
    size_t length;
    void* data;
    napi_value ab;
    size_t byteOffset;
    NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, view, &type, &length, &data, &ab, &byteOffset), m);
    size_t elem = view.As<Napi::TypedArray>().ElementSize();
    m.data = static_cast<uint8_t*>(data);
    m.length = length * elem;
  } else if (view.IsDataView()) {
    size_t length;
    void* data;
    napi_value ab;
    size_t byteOffset;
    NAPI_THROW_IF_FAILED(env, napi_get_dataview_info(env, view, &length, &data, &ab, &byteOffset), m);
    m.data = static_cast<uint8_t*>(data);
    m.length = length;
  } else {
    ThrowType(env, std::string(what) + " must be a TypedArray or DataView");
  }
  v8::Local<v8::Value> lv = ToV8(view);
  v8::Local<v8::ArrayBufferView> abv = lv.As<v8::ArrayBufferView>();
  // Buffer() materialises on-heap typed arrays, so `data` above is stable.
  v8::Local<v8::Value> buf = abv->Buffer();
  if (buf->IsSharedArrayBuffer()) {
    m.store = buf.As<v8::SharedArrayBuffer>()->GetBackingStore();
  } else {
    m.store = buf.As<v8::ArrayBuffer>()->GetBackingStore();
  }
  if (m.length > 0 && m.data == nullptr) ThrowError(env, std::string(what) + " has no memory (detached?)");
  return m;
}

static void FreeDeleter(void* data, size_t, void*) { std::free(data); }

Napi::Value NewOwnedArrayBuffer(Napi::Env env, size_t bytes, std::shared_ptr<v8::BackingStore>* out) {
  void* mem = std::calloc(bytes ? bytes : 1, 1);
  if (!mem) ThrowErrno(env, "allocating a buffer", ENOMEM);
  v8::Isolate* iso = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> bs = v8::ArrayBuffer::NewBackingStore(mem, bytes, FreeDeleter, nullptr);
  std::shared_ptr<v8::BackingStore> shared(std::move(bs));
  *out = shared;
  v8::Local<v8::ArrayBuffer> ab = v8::ArrayBuffer::New(iso, shared);
  return Napi::Value(env, FromV8(ab));
}

int EventfdDrain(int fd, uint64_t* value) {
  uint64_t v = 0;
  for (;;) {
    ssize_t r = ::read(fd, &v, sizeof v);
    if (r == static_cast<ssize_t>(sizeof v)) break;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      v = 0;
      break;
    }
    return r < 0 ? -errno : -EIO;
  }
  if (value) *value = v;
  return 0;
}

int EventfdSignal(int fd, uint64_t value) {
  for (;;) {
    ssize_t r = ::write(fd, &value, sizeof value);
    if (r == static_cast<ssize_t>(sizeof value)) return 0;
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -errno : -EIO;
  }
}

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

void InitCommon(Napi::Env env, Napi::Object exports) {
  exports.Set("probeIoUring", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                std::string r = ProbeIoUring();
                if (r.empty()) return Napi::Boolean::New(info.Env(), true);
                return Napi::String::New(info.Env(), r);
              }));
  exports.Set("probeLibaio", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                std::string r = ProbeLibaio();
                if (r.empty()) return Napi::Boolean::New(info.Env(), true);
                return Napi::String::New(info.Env(), r);
              }));
}

}  // namespace vblk
