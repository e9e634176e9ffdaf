/**
 * `tsbpf/cni`: the CNI pieces as a library: the agent (embeddable), IPAM,
 * the Kubernetes object sources and store, identities and the NetworkPolicy
 * evaluator and compiler, the plugin protocol, and the Datapath interface a
 * datapath implements to plug into the agent.
 */
export { CNI_ERR, CniError, isCniError, type CniErrorCode, type CniErrorObject } from './errors.js';
export * from './addr.js';
export { JsonStore, type JsonStoreOptions, type SaveStep } from './store.js';
export * from './protocol.js';
export { runPlugin, parseInvocation, parseCniArgs, validIfname, prevAddresses, COMMANDS, type CniCommand, type Invocation, type PluginConfig, type PluginOutput } from './plugin/cni.js';
export { SUPPORTED_VERSIONS, LATEST_VERSION, renderResult, compareVersions, type CniVersion } from './plugin/version.js';
export { ctlMain, CTL_USAGE } from './plugin/ctl.js';
export { Ipam, type Allocation, type Assigned, type IpamOptions, type PoolUsage } from './ipam/ipam.js';
export { Agent, type AgentOptions, type EndpointRecord } from './agent/agent.js';
export { listen, close } from './agent/server.js';
import type { Datapath } from './agent/datapath.js';
export { NoopDatapath, type Datapath, type DatapathStatus, type Endpoint, type IpIdentity, type NodeContext, type ServiceEntry } from './agent/datapath.js';
export { setupNode, teardownNode, gatewayOf, GATEWAY_DEVICE, MASQ_COMMENT, type NodeOptions } from './agent/node.js';
export { endpointSteps, attachmentHash, hostIfname, macFor, GATEWAY6_LINK_LOCAL } from './agent/endpoint.js';
export { netlinkStats, type NetlinkMode } from './agent/netlink.js';
export * from './k8s/objects.js';
export * from './k8s/source.js';
export { ObjectStore } from './k8s/store.js';
export { FileObjectSource, StaticObjectSource, parseObjects, diffObjects } from './k8s/file-source.js';
export { computeServices, DEFAULT_AFFINITY_SECONDS } from './k8s/services.js';
export * from './policy/types.js';
export { matchesSelector, labelsText, NAMESPACE_NAME_LABEL, type Labels } from './policy/labels.js';
export { IdentityAllocator, identityKey, type IdentityEntry } from './policy/identity.js';
export { buildContext, policyProblems, type PodInfo, type PolicyContext, type LocalPod } from './policy/context.js';
export { isAllowed, directionAllows, selectingPolicies, policyTypes, type Direction, type Endpointish, type Probe, type TrafficProtocol } from './policy/evaluate.js';
export { compileEndpointPolicy, allows, normalizeRules, type PeerView } from './policy/compile.js';

/** The placeholder counting datapath; imported on first use, since it brings in codegen and the native runtime. */
export async function createCountingDatapath(): Promise<Datapath> {
  const { CountingDatapath } = await import('./agent/counting-datapath.js');
  return new CountingDatapath();
}
