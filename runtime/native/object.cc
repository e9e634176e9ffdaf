// Open, load and close bpf_objects. A load failure names the program that
// failed and carries its verifier log.
#include "object.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace tsbpf {

void ObjectHandle::Close() {
  if (obj) {
    bpf_object__close(obj);
    obj = nullptr;
  }
  image.clear();
  image.shrink_to_fit();
}

static void FinalizeObject(Napi::Env env, ObjectHandle* h) {
  if (h->state) h->state->objects.erase(h);
  h->Close();
  delete h;
}

void CloseAllObjects(AddonState* state) {
  for (ObjectHandle* h : state->objects) {
    h->Close();
    h->state = nullptr;  // the finalizer may run after the state is gone
  }
  state->objects.clear();
}

ObjectHandle* GetObject(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsExternal()) ThrowArg(info.Env(), "expected an object handle");
  auto* h = info[i].As<Napi::External<ObjectHandle>>().Data();
  if (!h || !h->obj) ThrowErrno(info.Env(), "bpf_object", EBADF, "the BPF object is closed");
  return h;
}

// Make `map` use the existing map behind `fd` (which the caller keeps owning),
// after checking that it has the shape the object expects.
static void ReuseMapFd(Napi::Env env, bpf_map* map, int fd, const std::string& what) {
  bpf_map_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
    ThrowErrno(env, "bpf_obj_get_info_by_fd", errno, "cannot inspect " + what);
  std::string mismatch;
  auto cmp = [&](const char* field, unsigned have, unsigned want) {
    if (have != want && mismatch.empty())
      mismatch = std::string(field) + " " + std::to_string(have) + " where the object has " + std::to_string(want);
  };
  cmp("type", info.type, bpf_map__type(map));
  cmp("key size", info.key_size, bpf_map__key_size(map));
  cmp("value size", info.value_size, bpf_map__value_size(map));
  cmp("max entries", info.max_entries, bpf_map__max_entries(map));
  cmp("flags", info.map_flags, bpf_map__map_flags(map));
  if (!mismatch.empty())
    ThrowErrno(env, "bpf_map__reuse_fd", EINVAL, what + " does not match map '" + bpf_map__name(map) + "': " + mismatch);
  int err = bpf_map__reuse_fd(map, fd);  // keeps its own dup
  if (err) ThrowErrno(env, "bpf_map__reuse_fd", err, "cannot reuse " + what);
}

// Reuse maps by name from fds the caller holds (a live filter regenerated
// around its counters and sets).
static void ReuseMapFds(Napi::Env env, ObjectHandle* h, Napi::Object fds) {
  Napi::Array names = fds.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value v = fds.Get(name);
    if (!v.IsNumber()) ThrowArg(env, "reuseFds values must be map fds");
    bpf_map* map = bpf_object__find_map_by_name(h->obj, name.c_str());
    if (!map) ThrowErrno(env, "bpf_object__find_map_by_name", ENOENT, "the object has no map '" + name + "' to reuse");
    ReuseMapFd(env, map, v.As<Napi::Number>().Int32Value(), "the map given for '" + name + "'");
  }
}

// Reuse a map pinned at <pinRoot>/<name> when there is one, after checking
// that it has the shape the object expects.
static void ReusePinnedMaps(Napi::Env env, ObjectHandle* h, const std::string& pinRoot) {
  bpf_map* map;
  bpf_object__for_each_map(map, h->obj) {
    if (bpf_map__is_internal(map) || bpf_map__pin_path(map)) continue;
    std::string path = pinRoot + "/" + bpf_map__name(map);
    if (access(path.c_str(), F_OK) != 0) continue;
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) ThrowErrno(env, "bpf_obj_get", errno, "cannot open the pinned map " + path);
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
      int err = errno;
      close(fd);
      ThrowErrno(env, "bpf_obj_get_info_by_fd", err, "cannot inspect the pinned map " + path);
    }
    std::string mismatch;
    auto cmp = [&](const char* what, unsigned have, unsigned want) {
      if (have != want && mismatch.empty())
        mismatch = std::string(what) + " " + std::to_string(have) + " where the object has " + std::to_string(want);
    };
    cmp("type", info.type, bpf_map__type(map));
    cmp("key size", info.key_size, bpf_map__key_size(map));
    cmp("value size", info.value_size, bpf_map__value_size(map));
    cmp("max entries", info.max_entries, bpf_map__max_entries(map));
    cmp("flags", info.map_flags, bpf_map__map_flags(map));
    if (!mismatch.empty()) {
      close(fd);
      ThrowErrno(env, "bpf_map__reuse_fd", EINVAL,
                 "the map pinned at " + path + " does not match map '" + bpf_map__name(map) + "': " + mismatch);
    }
    int err = bpf_map__reuse_fd(map, fd);
    close(fd);  // reuse_fd keeps its own dup
    if (err) ThrowErrno(env, "bpf_map__reuse_fd", err, "cannot reuse the map pinned at " + path);
  }
}

// objectOpen(src: string | Buffer, options?) -> External
static Napi::Value ObjectOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState* state = StateOf(info);
  Napi::Object opts = ArgOptions(info, 1);
  auto name = OptString(opts, "name");
  auto pinRoot = OptString(opts, "pinRoot");

  auto h = std::make_unique<ObjectHandle>();
  LIBBPF_OPTS(bpf_object_open_opts, oo);
  if (name) oo.object_name = name->c_str();

  LogCapture cap;
  std::string what;
  if (info.Length() > 0 && info[0].IsString()) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    what = path;
    h->obj = bpf_object__open_file(path.c_str(), &oo);
  } else if (info.Length() > 0 && info[0].IsBuffer()) {
    auto buf = info[0].As<Napi::Buffer<uint8_t>>();
    h->image.assign(buf.Data(), buf.Data() + buf.Length());
    if (!name) oo.object_name = "tsbpf";
    what = "the object in memory";
    h->obj = bpf_object__open_mem(h->image.data(), h->image.size(), &oo);
  } else {
    ThrowArg(env, "objectOpen expects a path or a Buffer");
  }
  if (!h->obj) {
    int err = errno ? errno : EINVAL;
    std::string detail = LastLines(cap.text(), 3);
    Napi::Error e = MakeError(env, "bpf_object__open", err,
                              "cannot open BPF object " + what + (detail.empty() ? "" : " (" + detail + ")"));
    e.Value().Set("libbpfLog", Napi::String::New(env, cap.text()));
    throw e;
  }
  bpf_map* map;
  bpf_object__for_each_map(map, h->obj) h->mapNames.push_back(bpf_map__name(map));
  try {
    if (pinRoot) ReusePinnedMaps(env, h.get(), *pinRoot);
    if (opts.Has("reuseFds") && opts.Get("reuseFds").IsObject()) ReuseMapFds(env, h.get(), opts.Get("reuseFds").As<Napi::Object>());
  } catch (...) {
    h->Close();
    throw;
  }
  h->state = state;
  ObjectHandle* raw = h.release();
  state->objects.insert(raw);
  return Napi::External<ObjectHandle>::New(env, raw, FinalizeObject);
}

// Name of the program libbpf reported as failing, from its message
// "prog 'NAME': BPF program load failed: ...".
static std::string FailedProgramFromLog(const std::string& log) {
  const std::string marker = "': BPF program load failed";
  size_t at = log.find(marker);
  if (at == std::string::npos) return "";
  size_t start = log.rfind("prog '", at);
  if (start == std::string::npos) return "";
  start += 6;
  return log.substr(start, at - start);
}

// objectLoad(obj, { logLevel?, logSize? })
static Napi::Value ObjectLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHandle* h = GetObject(info, 0);
  if (h->loaded) ThrowErrno(env, "bpf_object__load", EALREADY, "the BPF object is loaded already");
  Napi::Object opts = ArgOptions(info, 1);
  int64_t logLevel = OptInt(opts, "logLevel").value_or(1);
  int64_t logSize = OptInt(opts, "logSize").value_or(16 << 20);
  if (logLevel < 1 || logLevel > 2) ThrowArg(env, "logLevel must be 1 or 2");
  if (logSize < 4096 || logSize > (1LL << 30)) ThrowArg(env, "logSize must be between 4 KiB and 1 GiB");

  // One log buffer per program. With log level 0 (the default) libbpf
  // requests no log on the first attempt and retries a failing program once
  // with level 1 into its buffer, so successful loads pay nothing. The
  // buffers are untouched (so never committed) unless the kernel writes.
  struct ProgLog {
    bpf_program* prog;
    char* buf;
  };
  std::vector<ProgLog> logs;
  auto freeLogs = [&]() {
    for (auto& l : logs) free(l.buf);
    logs.clear();
  };
  bpf_program* prog;
  bpf_object__for_each_program(prog, h->obj) {
    if (!bpf_program__autoload(prog)) continue;
    char* buf = static_cast<char*>(malloc(logSize));
    if (!buf) {
      freeLogs();
      ThrowErrno(env, "malloc", ENOMEM, "cannot allocate the verifier log buffer");
    }
    buf[0] = '\0';
    bpf_program__set_log_buf(prog, buf, logSize);
    if (logLevel > 1) bpf_program__set_log_level(prog, logLevel);
    logs.push_back({prog, buf});
  }

  LogCapture cap;
  // The verifier gives up with EAGAIN when a signal is pending for the loading
  // thread (a profiler's SIGPROF, SIGCHLD of a child process); a big program
  // verifies for long enough that libbpf's five retries all fail. Blocked, a
  // signal stays pending (not "pending for us") and is delivered afterwards.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = bpf_object__load(h->obj);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  h->loaded = true;  // libbpf refuses a second attempt either way
  if (err == 0) {
    freeLogs();
    return env.Undefined();
  }

  // Which program failed: libbpf names it in its warning; else the one whose
  // log the kernel wrote (with log level 1 only a failing program has one).
  // Its fd says nothing: libbpf closes every program after a failure.
  std::string failed = FailedProgramFromLog(cap.text());
  std::string verifierLog;
  for (auto& l : logs) {
    if (l.buf[0] == '\0') continue;
    if (failed.empty() || failed == bpf_program__name(l.prog)) {
      failed = bpf_program__name(l.prog);
      verifierLog = l.buf;
      break;
    }
  }
  freeLogs();

  std::string msg;
  if (!failed.empty()) {
    msg = "program '" + failed + "' failed to load";
  } else {
    std::string detail = LastLines(cap.text(), 3);
    msg = "cannot load BPF object" + (detail.empty() ? std::string() : " (" + detail + ")");
  }
  Napi::Error e = MakeError(env, "bpf_object__load", -err, msg);
  if (!failed.empty()) e.Value().Set("program", Napi::String::New(env, failed));
  if (!verifierLog.empty()) e.Value().Set("verifierLog", Napi::String::New(env, verifierLog));
  e.Value().Set("libbpfLog", Napi::String::New(env, cap.text()));
  throw e;
}

static Napi::Value ObjectBtf(const Napi::CallbackInfo& info) {
  ObjectHandle* h = GetObject(info, 0);
  btf* b = bpf_object__btf(h->obj);
  if (!b) return info.Env().Null();
  __u32 size = 0;
  const void* raw = btf__raw_data(b, &size);
  if (!raw) ThrowErrno(info.Env(), "btf__raw_data", errno ? errno : ENOMEM, "cannot read the object's BTF");
  return Napi::Buffer<uint8_t>::Copy(info.Env(), static_cast<const uint8_t*>(raw), size);
}

// Finds a map by its ELF name (see ObjectHandle::mapNames).
static bpf_map* FindMap(ObjectHandle* h, const std::string& name) {
  size_t i = 0;
  bpf_map* map;
  bpf_object__for_each_map(map, h->obj) {
    if (i < h->mapNames.size() && h->mapNames[i] == name) return map;
    i++;
  }
  return nullptr;
}

static Napi::Value ObjectSetMapMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHandle* h = GetObject(info, 0);
  std::string name = ArgString(info, 1, "map name");
  uint32_t n = ArgU32(info, 2, "maxEntries");
  bpf_map* map = FindMap(h, name);
  if (!map) ThrowErrno(env, "bpf_object__find_map_by_name", ENOENT, "the object has no map '" + name + "'");
  int err = bpf_map__set_max_entries(map, n);
  if (err) ThrowErrno(env, "bpf_map__set_max_entries", err, "cannot set max_entries of map '" + name + "'");
  return env.Undefined();
}

static Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHandle* h = GetObject(info, 0);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_map* map;
  bpf_object__for_each_map(map, h->obj) {
    Napi::Object m = Napi::Object::New(env);
    std::string name = i < h->mapNames.size() ? h->mapNames[i] : bpf_map__name(map);
    enum bpf_map_type t = bpf_map__type(map);
    const char* tname = libbpf_bpf_map_type_str(t);
    int fd = bpf_map__fd(map);
    uint32_t id = 0;
    if (fd >= 0) {
      bpf_map_info mi{};
      __u32 len = sizeof(mi);
      if (bpf_obj_get_info_by_fd(fd, &mi, &len) == 0) id = mi.id;
    }
    m.Set("name", name);
    m.Set("type", tname ? tname : std::to_string(t));
    m.Set("typeId", static_cast<double>(t));
    m.Set("keySize", static_cast<double>(bpf_map__key_size(map)));
    m.Set("valueSize", static_cast<double>(bpf_map__value_size(map)));
    m.Set("maxEntries", static_cast<double>(bpf_map__max_entries(map)));
    m.Set("flags", static_cast<double>(bpf_map__map_flags(map)));
    m.Set("fd", static_cast<double>(fd));
    m.Set("id", static_cast<double>(id));
    m.Set("btfKeyTypeId", static_cast<double>(bpf_map__btf_key_type_id(map)));
    m.Set("btfValueTypeId", static_cast<double>(bpf_map__btf_value_type_id(map)));
    m.Set("internal", bpf_map__is_internal(map));
    out.Set(i++, m);
  }
  return out;
}

static Napi::Value ObjectClose(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) ThrowArg(info.Env(), "expected an object handle");
  auto* h = info[0].As<Napi::External<ObjectHandle>>().Data();
  // Closing twice is harmless.
  if (h && h->obj) {
    if (h->state) h->state->objects.erase(h);
    h->state = nullptr;
    h->Close();
  }
  return info.Env().Undefined();
}

void RegisterObject(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "objectOpen", ObjectOpen, state);
  SetFn(env, exports, "objectLoad", ObjectLoad, state);
  SetFn(env, exports, "objectBtf", ObjectBtf, state);
  SetFn(env, exports, "objectMaps", ObjectMaps, state);
  SetFn(env, exports, "objectSetMapMaxEntries", ObjectSetMapMaxEntries, state);
  SetFn(env, exports, "objectClose", ObjectClose, state);
}

}  // namespace tsbpf
