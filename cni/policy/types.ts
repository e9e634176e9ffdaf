/**
 * The compiled form of NetworkPolicy for one endpoint: per direction, is it
 * isolated, and if so which (peer, protocol, port range) tuples are allowed.
 * This is the shape the BPF policy maps take: a peer is a numeric identity
 * (exact lookup) or a CIDR with exceptions (LPM lookup); `ANY` protocol means
 * every protocol and port (ICMP included).
 */
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];
export const PROTO_NUMBER: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };

export type PeerMatch =
  /** Any peer at all. */
  | { kind: 'all' }
  /** A peer whose identity (pod labels + namespace, or a reserved identity) is this one. */
  | { kind: 'identity'; identity: number }
  /** A peer whose address lies in `cidr` and in none of `except`. */
  | { kind: 'cidr'; cidr: string; except: string[] };

export interface PolicyRule {
  peer: PeerMatch;
  protocol: Protocol | 'ANY';
  /** Inclusive destination port range; 0..65535 for all ports (always so for ANY). */
  portFrom: number;
  portTo: number;
}

export interface DirectionPolicy {
  /** False: no policy selects the endpoint for this direction, everything is allowed. */
  isolated: boolean;
  /** The allowed tuples (meaningful only when isolated); empty and isolated = deny all. */
  rules: PolicyRule[];
  /** 'namespace/name' of every policy that selects the endpoint for this direction. */
  policies: string[];
}

export interface EndpointPolicy {
  pod: { namespace: string; name: string };
  identity: number;
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
}

/** Reserved identities (below the first pod identity). */
export const IDENTITY = {
  /** Unknown / not yet resolved. */
  UNKNOWN: 0,
  /** The node itself (its addresses, the pods' gateway). */
  HOST: 1,
  /** Anything outside the cluster. */
  WORLD: 2,
  /** The first identity given to a set of pod labels. */
  FIRST_POD: 256,
} as const;
