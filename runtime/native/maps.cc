// Map operations on fds, pinning, fd helpers and kernel BTF by id.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common.h"

namespace tsbpf {

static std::string FdText(int fd) { return "map fd " + std::to_string(fd); }

// The kernel writes key_size / value_size bytes (per CPU for per-CPU maps)
// into buffers sized by the caller: checking them against the map itself
// costs one cheap syscall and turns a caller's mistake into an error instead
// of heap corruption.
struct MapShape {
  uint32_t keySize;
  size_t valueBytes;
};

static bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

static MapShape Shape(Napi::Env env, int fd) {
  bpf_map_info mi{};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0)
    ThrowErrno(env, "bpf_obj_get_info_by_fd", errno, "fd " + std::to_string(fd) + " is not a BPF map");
  MapShape s{mi.key_size, mi.value_size};
  if (IsPerCpu(mi.type)) {
    int n = libbpf_num_possible_cpus();
    if (n < 0) ThrowErrno(env, "libbpf_num_possible_cpus", -n, "cannot count possible CPUs");
    s.valueBytes = ((static_cast<size_t>(mi.value_size) + 7) / 8 * 8) * n;
  }
  return s;
}

static void CheckKey(Napi::Env env, int fd, const MapShape& s, size_t len, const char* what = "key") {
  if (len != s.keySize)
    ThrowErrno(env, "argument", EINVAL,
               std::string(what) + " of " + std::to_string(len) + " bytes for " + FdText(fd) + " whose keys have " +
                   std::to_string(s.keySize));
}

static void CheckValue(Napi::Env env, int fd, const MapShape& s, size_t len) {
  if (len != s.valueBytes)
    ThrowErrno(env, "argument", EINVAL,
               "value of " + std::to_string(len) + " bytes for " + FdText(fd) + " whose values have " +
                   std::to_string(s.valueBytes));
}

// mapLookup(fd, key, valueSize, flags?) -> Buffer | null
static Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto key = ArgBuffer(info, 1, "key");
  uint32_t valueSize = ArgU32(info, 2, "valueSize");
  uint64_t flags = ArgOptU64(info, 3, "flags", 0);
  MapShape shape = Shape(env, fd);
  CheckKey(env, fd, shape, key.Length());
  CheckValue(env, fd, shape, valueSize);
  std::vector<uint8_t> value(std::max<uint32_t>(valueSize, 1));
  if (bpf_map_lookup_elem_flags(fd, key.Data(), value.data(), flags) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "bpf_map_lookup_elem", errno, "lookup in " + FdText(fd) + " failed");
  }
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), valueSize);
}

// mapUpdate(fd, key, value, flags?)
static Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto key = ArgBuffer(info, 1, "key");
  auto value = ArgBuffer(info, 2, "value");
  uint64_t flags = ArgOptU64(info, 3, "flags", 0);
  MapShape shape = Shape(env, fd);
  CheckKey(env, fd, shape, key.Length());
  CheckValue(env, fd, shape, value.Length());
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags) != 0)
    ThrowErrno(env, "bpf_map_update_elem", errno, "update of " + FdText(fd) + " failed");
  return env.Undefined();
}

// mapDelete(fd, key) -> false when absent
static Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto key = ArgBuffer(info, 1, "key");
  CheckKey(env, fd, Shape(env, fd), key.Length());
  if (bpf_map_delete_elem(fd, key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "bpf_map_delete_elem", errno, "delete from " + FdText(fd) + " failed");
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keySize) -> Buffer | null
static Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto key = ArgOptBuffer(info, 1, "key");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  MapShape shape = Shape(env, fd);
  CheckKey(env, fd, shape, keySize, "keySize");
  if (key) CheckKey(env, fd, shape, key->Length());
  std::vector<uint8_t> next(std::max<uint32_t>(keySize, 1));
  if (bpf_map_get_next_key(fd, key ? key->Data() : nullptr, next.data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "bpf_map_get_next_key", errno, "iteration of " + FdText(fd) + " failed");
  }
  return Napi::Buffer<uint8_t>::Copy(env, next.data(), keySize);
}

// mapLookupBatch(fd, cursor | null, keySize, valueSize, maxCount)
static Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto cursor = ArgOptBuffer(info, 1, "cursor");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  uint32_t valueSize = ArgU32(info, 3, "valueSize");
  uint32_t maxCount = ArgU32(info, 4, "maxCount");
  if (maxCount == 0) ThrowArg(env, "maxCount must be positive");
  MapShape shape = Shape(env, fd);
  CheckKey(env, fd, shape, keySize, "keySize");
  CheckValue(env, fd, shape, valueSize);
  // The batch token is a key for arrays and a bucket index for hashes.
  size_t tokenSize = std::max<size_t>(keySize, 8);
  std::vector<uint8_t> in(tokenSize), out(tokenSize);
  if (cursor) memcpy(in.data(), cursor->Data(), std::min(cursor->Length(), tokenSize));
  std::vector<uint8_t> keys(static_cast<size_t>(keySize) * maxCount);
  std::vector<uint8_t> values(static_cast<size_t>(valueSize) * maxCount);
  __u32 count = maxCount;
  LIBBPF_OPTS(bpf_map_batch_opts, bo);
  int r = bpf_map_lookup_batch(fd, cursor ? in.data() : nullptr, out.data(), keys.data(), values.data(), &count, &bo);
  bool done = false;
  if (r != 0) {
    if (errno == ENOENT) {
      done = true;
    } else {
      ThrowErrno(env, "bpf_map_lookup_batch", errno, "batch lookup in " + FdText(fd) + " failed");
    }
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), static_cast<size_t>(keySize) * count));
  res.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), static_cast<size_t>(valueSize) * count));
  res.Set("count", static_cast<double>(count));
  if (done) {
    res.Set("next", env.Null());
  } else {
    res.Set("next", Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size()));
  }
  return res;
}

// mapUpdateBatch(fd, keys, values, count, flags?) -> count updated
static Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  auto keys = ArgBuffer(info, 1, "keys");
  auto values = ArgBuffer(info, 2, "values");
  uint32_t count = ArgU32(info, 3, "count");
  uint64_t flags = ArgOptU64(info, 4, "flags", 0);
  LIBBPF_OPTS(bpf_map_batch_opts, bo, .elem_flags = flags);
  __u32 n = count;
  if (count == 0) return Napi::Number::New(env, 0);
  MapShape shape = Shape(env, fd);
  if (keys.Length() != static_cast<size_t>(shape.keySize) * count || values.Length() != shape.valueBytes * count)
    ThrowErrno(env, "argument", EINVAL,
               "batch of " + std::to_string(count) + " needs " + std::to_string(shape.keySize * count) +
                   " key bytes and " + std::to_string(shape.valueBytes * count) + " value bytes for " + FdText(fd));
  if (bpf_map_update_batch(fd, keys.Data(), values.Data(), &n, &bo) != 0) {
    Napi::Error e = MakeError(env, "bpf_map_update_batch", errno, "batch update of " + FdText(fd) + " failed");
    e.Value().Set("updated", static_cast<double>(n));
    throw e;
  }
  return Napi::Number::New(env, n);
}

static std::string MapTypeName(unsigned t) {
  const char* n = libbpf_bpf_map_type_str(static_cast<enum bpf_map_type>(t));
  return n ? n : std::to_string(t);
}

static Napi::Value MapFdInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  bpf_map_info mi{};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) != 0)
    ThrowErrno(env, "bpf_obj_get_info_by_fd", errno, "fd " + std::to_string(fd) + " is not a BPF map");
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", mi.name);
  o.Set("type", MapTypeName(mi.type));
  o.Set("typeId", static_cast<double>(mi.type));
  o.Set("keySize", static_cast<double>(mi.key_size));
  o.Set("valueSize", static_cast<double>(mi.value_size));
  o.Set("maxEntries", static_cast<double>(mi.max_entries));
  o.Set("flags", static_cast<double>(mi.map_flags));
  o.Set("id", static_cast<double>(mi.id));
  o.Set("btfId", static_cast<double>(mi.btf_id));
  o.Set("btfKeyTypeId", static_cast<double>(mi.btf_key_type_id));
  o.Set("btfValueTypeId", static_cast<double>(mi.btf_value_type_id));
  return o;
}

static Napi::Value BtfById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = ArgU32(info, 0, "btf id");
  btf* b = btf__load_from_kernel_by_id(id);
  if (!b) ThrowErrno(env, "btf__load_from_kernel_by_id", errno, "cannot read BTF object " + std::to_string(id));
  __u32 size = 0;
  const void* raw = btf__raw_data(b, &size);
  if (!raw) {
    int err = errno ? errno : ENOMEM;
    btf__free(b);
    ThrowErrno(env, "btf__raw_data", err, "cannot read BTF object " + std::to_string(id));
  }
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(raw), size);
  btf__free(b);
  return out;
}

static Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  std::string path = ArgString(info, 1, "path");
  if (bpf_obj_pin(fd, path.c_str()) != 0) ThrowErrno(env, "bpf_obj_pin", errno, "cannot pin at " + path);
  return env.Undefined();
}

static Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(env, "bpf_obj_get", errno, "cannot open the pinned object " + path);
  return Napi::Number::New(env, fd);
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  if (close(fd) != 0 && errno != EINTR) ThrowErrno(info.Env(), "close", errno, "cannot close fd " + std::to_string(fd));
  return info.Env().Undefined();
}

static Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) ThrowErrno(info.Env(), "fcntl", errno, "cannot duplicate fd " + std::to_string(fd));
  return Napi::Number::New(info.Env(), nfd);
}

void RegisterMaps(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "mapLookup", MapLookup, state);
  SetFn(env, exports, "mapUpdate", MapUpdate, state);
  SetFn(env, exports, "mapDelete", MapDelete, state);
  SetFn(env, exports, "mapNextKey", MapNextKey, state);
  SetFn(env, exports, "mapLookupBatch", MapLookupBatch, state);
  SetFn(env, exports, "mapUpdateBatch", MapUpdateBatch, state);
  SetFn(env, exports, "mapFdInfo", MapFdInfo, state);
  SetFn(env, exports, "btfById", BtfById, state);
  SetFn(env, exports, "objPin", ObjPin, state);
  SetFn(env, exports, "objGet", ObjGet, state);
  SetFn(env, exports, "closeFd", CloseFd, state);
  SetFn(env, exports, "dupFd", DupFd, state);
}

}  // namespace tsbpf
