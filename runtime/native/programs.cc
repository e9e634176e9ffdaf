// Programs of an object, and what the kernel says about any program fd.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdio>

#include "object.h"

namespace tsbpf {

static std::string HexTag(const unsigned char* tag, size_t n) {
  std::string s;
  char b[3];
  for (size_t i = 0; i < n; i++) {
    snprintf(b, sizeof(b), "%02x", tag[i]);
    s += b;
  }
  return s;
}

static std::string ProgTypeName(unsigned t) {
  const char* n = libbpf_bpf_prog_type_str(static_cast<enum bpf_prog_type>(t));
  return n ? n : std::to_string(t);
}

static Napi::Value ObjectPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHandle* h = GetObject(info, 0);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, h->obj) {
    Napi::Object p = Napi::Object::New(env);
    int fd = bpf_program__fd(prog);
    uint32_t id = 0;
    std::string tag;
    if (fd >= 0) {
      bpf_prog_info pi{};
      __u32 len = sizeof(pi);
      if (bpf_obj_get_info_by_fd(fd, &pi, &len) == 0) {
        id = pi.id;
        tag = HexTag(pi.tag, sizeof(pi.tag));
      }
    }
    p.Set("name", bpf_program__name(prog));
    p.Set("type", ProgTypeName(bpf_program__type(prog)));
    p.Set("section", bpf_program__section_name(prog));
    p.Set("fd", static_cast<double>(fd));
    p.Set("id", static_cast<double>(id));
    p.Set("tag", tag);
    out.Set(i++, p);
  }
  return out;
}

static Napi::Value ProgFdInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  bpf_prog_info pi{};
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(fd, &pi, &len) != 0)
    ThrowErrno(env, "bpf_obj_get_info_by_fd", errno, "fd " + std::to_string(fd) + " is not a BPF program");
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", pi.name);
  o.Set("type", ProgTypeName(pi.type));
  o.Set("id", static_cast<double>(pi.id));
  o.Set("tag", HexTag(pi.tag, sizeof(pi.tag)));
  return o;
}

void RegisterPrograms(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "objectPrograms", ObjectPrograms, state);
  SetFn(env, exports, "progFdInfo", ProgFdInfo, state);
}

}  // namespace tsbpf
