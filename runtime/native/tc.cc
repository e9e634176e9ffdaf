// TC clsact attach/detach through libbpf's bpf_tc_* (direct-action cls_bpf
// filters). The clsact qdisc is created when absent and removed on request
// only when no filter is left on it.
#include <bpf/libbpf.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "netns.h"

namespace tsbpf {

static enum bpf_tc_attach_point Direction(const Napi::Object& opts) {
  auto d = OptString(opts, "direction");
  if (d == "ingress") return BPF_TC_INGRESS;
  if (d == "egress") return BPF_TC_EGRESS;
  ThrowArg(opts.Env(), "direction must be 'ingress' or 'egress'");
}

static std::string Where(const std::string& ifname, enum bpf_tc_attach_point dir, const std::string& netns) {
  return std::string(dir == BPF_TC_INGRESS ? "tc ingress" : "tc egress") + " of '" + ifname + "' in " + NetnsText(netns);
}

// Number of filters under a clsact parent (RTM_GETTFILTER dump), or -errno.
static int CountFilters(int ifindex, uint32_t parent) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  struct {
    nlmsghdr nh;
    tcmsg tc;
  } req;
  memset(&req, 0, sizeof(req));
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg));
  req.nh.nlmsg_type = RTM_GETTFILTER;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.tc.tcm_family = AF_UNSPEC;
  req.tc.tcm_ifindex = ifindex;
  req.tc.tcm_parent = parent;
  if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  int count = 0;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return -err;
    }
    if (n == 0) {
      close(fd);
      return count;
    }
    int len = static_cast<int>(n);
    for (nlmsghdr* nh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_type == NLMSG_DONE) {
        close(fd);
        return count;
      }
      if (nh->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(nh));
        close(fd);
        return e->error ? e->error : -EIO;
      }
      if (nh->nlmsg_type == RTM_NEWTFILTER) count++;
    }
  }
}

// tcAttach({ ifname, direction, progFd, priority?, handle?, replace?, netns? })
static Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = ArgOptions(info, 0);
  std::string ifname = OptString(opts, "ifname").value_or("");
  std::string netns = NetnsOption(opts);
  enum bpf_tc_attach_point dir = Direction(opts);
  int64_t progFd = OptInt(opts, "progFd").value_or(-1);
  int64_t priority = OptInt(opts, "priority").value_or(0);
  int64_t handle = OptInt(opts, "handle").value_or(0);
  bool replace = OptBool(opts, "replace", false);
  if (progFd < 0) ThrowArg(env, "progFd is required");
  if (priority < 0 || priority > 0xffff) ThrowArg(env, "priority must be within 0..65535");
  if (handle < 0 || handle > 0xffffffffLL) ThrowArg(env, "handle must be an unsigned 32-bit integer");

  int ifindex = 0;
  bool created = false;
  uint32_t outPriority = 0, outHandle = 0;
  Status st = RunInNetns(netns, [&]() -> Status {
    Status s = ResolveIfindex(ifname, netns, &ifindex);
    if (!s.ok()) return s;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = dir);
    int r = bpf_tc_hook_create(&hook);
    if (r == 0) {
      created = true;
    } else if (r != -EEXIST) {
      return Status::Fail(r, "bpf_tc_hook_create", "cannot create the clsact qdisc on '" + ifname + "' in " + NetnsText(netns));
    }
    LIBBPF_OPTS(bpf_tc_opts, to, .prog_fd = static_cast<int>(progFd), .flags = replace ? static_cast<__u32>(BPF_TC_F_REPLACE) : 0u,
                .handle = static_cast<__u32>(handle), .priority = static_cast<__u32>(priority));
    r = bpf_tc_attach(&hook, &to);
    if (r != 0) {
      if (created) {
        // Leave the interface as it was.
        LIBBPF_OPTS(bpf_tc_hook, all, .ifindex = ifindex, .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
        bpf_tc_hook_destroy(&all);
        created = false;
      }
      std::string msg = "cannot attach to " + Where(ifname, dir, netns);
      if (r == -EEXIST)
        msg += " (a filter with priority " + std::to_string(priority) + " and handle " + std::to_string(handle) +
               " exists; use replace)";
      return Status::Fail(r, "bpf_tc_attach", msg);
    }
    outPriority = to.priority;
    outHandle = to.handle;
    return Status();
  });
  if (!st.ok()) Throw(env, st);
  Napi::Object res = Napi::Object::New(env);
  res.Set("ifindex", static_cast<double>(ifindex));
  res.Set("priority", static_cast<double>(outPriority));
  res.Set("handle", static_cast<double>(outHandle));
  res.Set("createdQdisc", created);
  return res;
}

// tcDetach({ ifname, direction, priority, handle, removeQdiscIfEmpty?, netns? })
static Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = ArgOptions(info, 0);
  std::string ifname = OptString(opts, "ifname").value_or("");
  std::string netns = NetnsOption(opts);
  enum bpf_tc_attach_point dir = Direction(opts);
  int64_t priority = OptInt(opts, "priority").value_or(0);
  int64_t handle = OptInt(opts, "handle").value_or(0);
  bool removeQdisc = OptBool(opts, "removeQdiscIfEmpty", false);
  if (priority <= 0 || priority > 0xffff) ThrowArg(env, "priority must be within 1..65535");
  if (handle <= 0 || handle > 0xffffffffLL) ThrowArg(env, "handle must be a positive 32-bit integer");

  Status st = RunInNetns(netns, [&]() -> Status {
    int ifindex = 0;
    Status s = ResolveIfindex(ifname, netns, &ifindex);
    if (!s.ok()) return s;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = dir);
    LIBBPF_OPTS(bpf_tc_opts, to, .handle = static_cast<__u32>(handle), .priority = static_cast<__u32>(priority));
    int r = bpf_tc_detach(&hook, &to);
    Status result;
    if (r != 0)
      result = Status::Fail(r, "bpf_tc_detach",
                            "cannot detach the filter with priority " + std::to_string(priority) + " and handle " +
                                std::to_string(handle) + " from " + Where(ifname, dir, netns));
    if (removeQdisc) {
      int in = CountFilters(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS));
      int eg = CountFilters(ifindex, TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS));
      // A failed count (say, no qdisc any more) never removes anything.
      if (in == 0 && eg == 0) {
        LIBBPF_OPTS(bpf_tc_hook, all, .ifindex = ifindex, .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
        bpf_tc_hook_destroy(&all);
      }
    }
    return result;
  });
  if (!st.ok()) Throw(env, st);
  return env.Undefined();
}

void RegisterTc(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "tcAttach", TcAttach, state);
  SetFn(env, exports, "tcDetach", TcDetach, state);
}

}  // namespace tsbpf
