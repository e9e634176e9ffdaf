// Shared by every source of the addon: argument helpers, the per-env state
// that tracks live handles (freed at env teardown), and the registration
// functions each concept's file exports.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "errors.h"

namespace tsbpf {

struct ObjectHandle;
struct RingBufHandle;

// Live handles of one napi_env. The env cleanup hook closes whatever JS did
// not close, so a process that exits without close() leaks nothing.
struct AddonState {
  std::set<ObjectHandle*> objects;
  std::set<RingBufHandle*> ringbufs;
};

// --- argument helpers (throw TypeError with errno EINVAL) ---
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* what = "fd");
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* what);
// null/undefined -> empty optional
std::optional<Napi::Buffer<uint8_t>> ArgOptBuffer(const Napi::CallbackInfo& info, size_t i, const char* what);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what);
uint64_t ArgOptU64(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t dflt);
Napi::Object ArgOptions(const Napi::CallbackInfo& info, size_t i);

std::optional<std::string> OptString(const Napi::Object& o, const char* key);
std::optional<int64_t> OptInt(const Napi::Object& o, const char* key);
bool OptBool(const Napi::Object& o, const char* key, bool dflt);
std::optional<Napi::Buffer<uint8_t>> OptBuffer(const Napi::Object& o, const char* key);

// --- libbpf log capture ---
// While a LogCapture lives on a thread, libbpf's messages on that thread are
// appended to it instead of being dropped (library code never prints).
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  const std::string& text() const { return text_; }
  void Append(const std::string& s) { text_ += s; }

 private:
  LogCapture* prev_;
  std::string text_;
};
void InstallLibbpfPrint();
// The last non-empty lines of libbpf output, for error messages.
std::string LastLines(const std::string& text, size_t n);

// --- registration of each concept's functions ---
void RegisterObject(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterPrograms(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterMaps(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterNetns(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterTc(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterXdp(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterTestRun(Napi::Env env, Napi::Object exports, AddonState* state);
void RegisterRingBuf(Napi::Env env, Napi::Object exports, AddonState* state);

// --- teardown, called by the env cleanup hook ---
void CloseAllObjects(AddonState* state);
void CloseAllRingBufs(AddonState* state);

inline void SetFn(Napi::Env env, Napi::Object exports, const char* name, Napi::Function::Callback cb,
                  AddonState* state) {
  exports.Set(name, Napi::Function::New(env, cb, name, state));
}

inline AddonState* StateOf(const Napi::CallbackInfo& info) { return static_cast<AddonState*>(info.Data()); }

}  // namespace tsbpf
