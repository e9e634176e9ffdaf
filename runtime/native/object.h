// An opened bpf_object and what must live as long as it.
#pragma once

#include <bpf/libbpf.h>

#include <string>
#include <vector>

#include "common.h"

namespace tsbpf {

struct ObjectHandle {
  bpf_object* obj = nullptr;
  AddonState* state = nullptr;  // null once the env is torn down
  bool loaded = false;
  // libbpf may keep pointers into the ELF image it was opened from.
  std::vector<uint8_t> image;
  // Map names as in the ELF: libbpf renames a reused map to the kernel's
  // (truncated) name, so names are taken at open time, in iteration order.
  std::vector<std::string> mapNames;

  void Close();
};

// The open handle behind a JS External; throws if it is closed.
ObjectHandle* GetObject(const Napi::CallbackInfo& info, size_t i);

}  // namespace tsbpf
