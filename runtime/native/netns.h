// Running network operations inside another network namespace without ever
// moving the Node main thread: the work runs on a short-lived thread that
// setns()es, does it, and exits.
#pragma once

#include <functional>
#include <string>

#include "common.h"

namespace tsbpf {

// Path of a netns given as a name (/var/run/netns/NAME) or a path.
std::string NetnsPath(const std::string& netns);

// How a netns is named in messages: "netns 'x'" or "the current netns".
std::string NetnsText(const std::string& netns);

// Runs fn in the netns (on the calling thread when netns is empty) and
// returns its status, or the failure to enter the netns.
Status RunInNetns(const std::string& netns, const std::function<Status()>& fn);

// if_nametoindex in the current namespace of the calling thread, with an
// ENODEV error that names the interface and the netns.
Status ResolveIfindex(const std::string& ifname, const std::string& netns, int* ifindex);

// The netns option of an options object ('' when absent).
std::string NetnsOption(const Napi::Object& opts);

}  // namespace tsbpf
