#include "netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace tsbpf {

std::string NetnsPath(const std::string& netns) {
  if (netns.find('/') != std::string::npos) return netns;
  return "/var/run/netns/" + netns;
}

std::string NetnsText(const std::string& netns) {
  return netns.empty() ? std::string("the current netns") : "netns '" + netns + "'";
}

Status RunInNetns(const std::string& netns, const std::function<Status()>& fn) {
  if (netns.empty()) return fn();
  if (netns == "." || netns == ".." || netns.find('\0') != std::string::npos)
    return Status::Fail(EINVAL, "netns", "invalid netns name '" + netns + "'");
  std::string path = NetnsPath(netns);
  // Open it here so a missing netns fails before any thread exists.
  int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    int err = errno;
    if (err == ENOENT)
      return Status::Fail(ENOENT, "netns", "network namespace '" + netns + "' does not exist (" + path + ")");
    return Status::Fail(err, "netns", "cannot open network namespace '" + netns + "' (" + path + ")");
  }
  Status result;
  std::thread worker([&]() {
    // Only this thread changes namespace; it exits when done, so no
    // other thread ever runs in the target netns.
    if (setns(nsfd, CLONE_NEWNET) != 0) {
      int err = errno;
      result = Status::Fail(err, "setns",
                            err == EINVAL ? path + " is not a network namespace"
                                          : "cannot enter network namespace '" + netns + "'");
      return;
    }
    result = fn();
  });
  worker.join();
  close(nsfd);
  return result;
}

Status ResolveIfindex(const std::string& ifname, const std::string& netns, int* ifindex) {
  if (ifname.empty() || ifname.size() >= IF_NAMESIZE)
    return Status::Fail(EINVAL, "if_nametoindex", "invalid interface name '" + ifname + "'");
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) {
    int err = errno == ENXIO || errno == ENODEV ? ENODEV : errno;
    return Status::Fail(err, "if_nametoindex", "interface '" + ifname + "' not found in " + NetnsText(netns));
  }
  *ifindex = static_cast<int>(idx);
  return Status();
}

std::string NetnsOption(const Napi::Object& opts) { return OptString(opts, "netns").value_or(""); }

// ifIndex(ifname, netns?)
static Napi::Value IfIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ifname = ArgString(info, 0, "ifname");
  std::string netns;
  if (info.Length() > 1 && info[1].IsString()) netns = info[1].As<Napi::String>().Utf8Value();
  int ifindex = 0;
  Status st = RunInNetns(netns, [&]() { return ResolveIfindex(ifname, netns, &ifindex); });
  if (!st.ok()) Throw(env, st);
  return Napi::Number::New(env, ifindex);
}

void RegisterNetns(Napi::Env env, Napi::Object exports, AddonState* state) {
  SetFn(env, exports, "ifIndex", IfIndex, state);
}

}  // namespace tsbpf
