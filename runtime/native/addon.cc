// Module entry: argument helpers, libbpf log capture, registration of every
// concept's functions, and the env cleanup hook.
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common.h"

namespace tsbpf {

// ---------- arguments ----------

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) ThrowArg(info.Env(), std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d < 0 || d > 0x7fffffff || d != static_cast<int>(d))
    ThrowArg(info.Env(), std::string(what) + " must be a non-negative integer");
  return static_cast<int>(d);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsString()) ThrowArg(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsBuffer()) ThrowArg(info.Env(), std::string(what) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

std::optional<Napi::Buffer<uint8_t>> ArgOptBuffer(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return std::nullopt;
  return ArgBuffer(info, i, what);
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) ThrowArg(info.Env(), std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d < 0 || d > 4294967295.0 || d != static_cast<double>(static_cast<uint32_t>(d)))
    ThrowArg(info.Env(), std::string(what) + " must be an unsigned 32-bit integer");
  return static_cast<uint32_t>(d);
}

uint64_t ArgOptU64(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t dflt) {
  if (i >= info.Length() || info[i].IsUndefined() || info[i].IsNull()) return dflt;
  if (info[i].IsBigInt()) {
    bool lossless = true;
    return info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (!info[i].IsNumber()) ThrowArg(info.Env(), std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d < 0) ThrowArg(info.Env(), std::string(what) + " must be non-negative");
  return static_cast<uint64_t>(d);
}

Napi::Object ArgOptions(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsUndefined() || info[i].IsNull()) return Napi::Object::New(info.Env());
  if (!info[i].IsObject()) ThrowArg(info.Env(), "options must be an object");
  return info[i].As<Napi::Object>();
}

std::optional<std::string> OptString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsString()) ThrowArg(o.Env(), std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::optional<int64_t> OptInt(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsNumber()) ThrowArg(o.Env(), std::string("option '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    ThrowArg(o.Env(), std::string("option '") + key + "' must be an integer");
  return static_cast<int64_t>(d);
}

bool OptBool(const Napi::Object& o, const char* key, bool dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  return v.ToBoolean().Value();
}

std::optional<Napi::Buffer<uint8_t>> OptBuffer(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsBuffer()) ThrowArg(o.Env(), std::string("option '") + key + "' must be a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

// ---------- libbpf log capture ----------

static thread_local LogCapture* t_capture = nullptr;
static bool g_debug = false;

LogCapture::LogCapture() : prev_(t_capture) { t_capture = this; }
LogCapture::~LogCapture() { t_capture = prev_; }

static int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !g_debug) return 0;
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string line;
  if (static_cast<size_t>(n) < sizeof(buf)) {
    line.assign(buf, n);
  } else {
    line.resize(n + 1);
    vsnprintf(&line[0], n + 1, fmt, args);
    line.resize(n);
  }
  if (t_capture) t_capture->Append(line);
  // Opt-in tracing for developers of tsbpf itself; silent otherwise.
  if (g_debug) fputs(line.c_str(), stderr);
  return 0;
}

void InstallLibbpfPrint() {
  const char* d = getenv("TSBPF_LIBBPF_DEBUG");
  g_debug = d && *d && *d != '0';
  libbpf_set_print(LibbpfPrint);
}

std::string LastLines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string l = text.substr(start, end - start);
    if (l.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(l);
    start = end + 1;
  }
  std::string out;
  size_t from = lines.size() > n ? lines.size() - n : 0;
  for (size_t i = from; i < lines.size(); i++) {
    if (!out.empty()) out += "\n";
    out += lines[i];
  }
  return out;
}

// ---------- module ----------

static Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), "libbpf_num_possible_cpus", -n, "cannot count possible CPUs");
  return Napi::Number::New(info.Env(), n);
}

static Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

static void Cleanup(AddonState* state) {
  CloseAllRingBufs(state);
  CloseAllObjects(state);
  delete state;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrint();
  auto* state = new AddonState();
  env.AddCleanupHook(Cleanup, state);
  SetFn(env, exports, "numPossibleCpus", NumPossibleCpus, state);
  SetFn(env, exports, "libbpfVersion", LibbpfVersion, state);
  RegisterObject(env, exports, state);
  RegisterPrograms(env, exports, state);
  RegisterMaps(env, exports, state);
  RegisterNetns(env, exports, state);
  RegisterTc(env, exports, state);
  RegisterXdp(env, exports, state);
  RegisterTestRun(env, exports, state);
  RegisterRingBuf(env, exports, state);
  return exports;
}

}  // namespace tsbpf

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return tsbpf::Init(env, exports); }

NODE_API_MODULE(tsbpf_native, InitModule)
