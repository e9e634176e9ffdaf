// XDP attach/detach/query through libbpf's netlink-based bpf_xdp_* calls.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include <cerrno>

#include "netns.h"

namespace tsbpf {

static uint32_t ModeFlag(const Napi::Object& opts) {
  auto m = OptString(opts, "mode");
  if (!m) return 0;
  if (*m == "generic") return XDP_FLAGS_SKB_MODE;
  if (*m == "driver") return XDP_FLAGS_DRV_MODE;
  if (*m == "offload") return XDP_FLAGS_HW_MODE;
  ThrowArg(opts.Env(), "mode must be 'generic', 'driver' or 'offload'");
}

static const char* ModeName(uint32_t flag) {
  switch (flag) {
    case XDP_FLAGS_SKB_MODE:
      return "generic";
    case XDP_FLAGS_DRV_MODE:
      return "driver";
    case XDP_FLAGS_HW_MODE:
      return "offload";
    default:
      return "";
  }
}

static std::string Where(const std::string& ifname, const std::string& netns) {
  return "XDP of '" + ifname + "' in " + NetnsText(netns);
}

// xdpAttach({ ifname, progFd, mode?, expectedFd?, noReplace?, netns? }) -> { ifindex, mode }
static Napi::Value XdpAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = ArgOptions(info, 0);
  std::string ifname = OptString(opts, "ifname").value_or("");
  std::string netns = NetnsOption(opts);
  int64_t progFd = OptInt(opts, "progFd").value_or(-1);
  auto expectedFd = OptInt(opts, "expectedFd");
  bool noReplace = OptBool(opts, "noReplace", false);
  uint32_t mode = ModeFlag(opts);
  if (progFd < 0) ThrowArg(env, "progFd is required");
  if (expectedFd && noReplace) ThrowArg(env, "expectedFd and noReplace exclude each other");

  uint32_t progId = 0;
  {
    bpf_prog_info pi{};
    __u32 len = sizeof(pi);
    if (bpf_obj_get_info_by_fd(static_cast<int>(progFd), &pi, &len) != 0)
      ThrowErrno(env, "bpf_obj_get_info_by_fd", errno, "progFd is not a BPF program");
    progId = pi.id;
  }

  int ifindex = 0;
  std::string actual;
  Status st = RunInNetns(netns, [&]() -> Status {
    Status s = ResolveIfindex(ifname, netns, &ifindex);
    if (!s.ok()) return s;
    uint32_t flags = mode;
    LIBBPF_OPTS(bpf_xdp_attach_opts, xo);
    if (noReplace) flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
    if (expectedFd) {
      flags |= XDP_FLAGS_REPLACE;
      xo.old_prog_fd = static_cast<int>(*expectedFd);
    }
    int r = bpf_xdp_attach(ifindex, static_cast<int>(progFd), flags, &xo);
    if (r != 0) {
      std::string msg = "cannot attach to " + Where(ifname, netns);
      if (r == -EBUSY || r == -EEXIST) msg += " (a program is attached already)";
      return Status::Fail(r, "bpf_xdp_attach", msg);
    }
    // Which mode the kernel chose, so that detach can name it.
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(ifindex, 0, &q) == 0) {
      if (q.skb_prog_id == progId) actual = "generic";
      else if (q.drv_prog_id == progId) actual = "driver";
      else if (q.hw_prog_id == progId) actual = "offload";
    }
    if (actual.empty()) actual = ModeName(mode);
    return Status();
  });
  if (!st.ok()) Throw(env, st);
  Napi::Object res = Napi::Object::New(env);
  res.Set("ifindex", static_cast<double>(ifindex));
  res.Set("mode", actual);
  return res;
}

// xdpDetach({ ifname, mode?, expectedFd?, netns? })
static Napi::Value XdpDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = ArgOptions(info, 0);
  std::string ifname = OptString(opts, "ifname").value_or("");
  std::string netns = NetnsOption(opts);
  auto expectedFd = OptInt(opts, "expectedFd");
  uint32_t mode = ModeFlag(opts);
  Status st = RunInNetns(netns, [&]() -> Status {
    int ifindex = 0;
    Status s = ResolveIfindex(ifname, netns, &ifindex);
    if (!s.ok()) return s;
    uint32_t flags = mode;
    LIBBPF_OPTS(bpf_xdp_attach_opts, xo);
    if (expectedFd) {
      flags |= XDP_FLAGS_REPLACE;
      xo.old_prog_fd = static_cast<int>(*expectedFd);
    }
    int r = bpf_xdp_detach(ifindex, flags, &xo);
    if (r != 0) return Status::Fail(r, "bpf_xdp_detach", "cannot detach from " + Where(ifname, netns));
    return Status();
  });
  if (!st.ok()) Throw(env, st);
  return env.Undefined();
}

// xdpQuery({ ifname, mode?, netns? }) -> program id (0: none)
static Napi::Value XdpQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = ArgOptions(info, 0);
  std::string ifname = OptString(opts, "ifname").value_or("");
  std::string netns = NetnsOption(opts);
  uint32_t mode = ModeFlag(opts);
  uint32_t id = 0;
  Status st = RunInNetns(netns, [&]() -> Status {
    int ifindex = 0;
    Status s = ResolveIfindex(ifname, netns, &ifindex);
    if (!s.ok()) return s;
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    int r = bpf_xdp_query(ifindex, 0, &q);
    if (r != 0) return Status::Fail(r, "bpf_xdp_query", "cannot query " + Where(ifname, netns));
    switch (mode) {
      case XDP_FLAGS_SKB_MODE: id = q.skb_prog_id; break;
      case XDP_FLAGS_DRV_MODE: id = q.drv_prog_id; break;
      case XDP_FLAGS_HW_MODE: id = q.hw_prog_id; break;
      default: id = q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id ? q.skb_prog_id : q.hw_prog_id;
    }
    return Status();
  });
  if (!st.ok()) Throw(env, st);
  return Napi::Number::New(env, id);
}

void RegisterXdp(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "xdpAttach", XdpAttach, state);
  SetFn(env, exports, "xdpDetach", XdpDetach, state);
  SetFn(env, exports, "xdpQuery", XdpQuery, state);
}

}  // namespace tsbpf
