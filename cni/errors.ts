/**
 * CNI error codes (spec 1.1, "Error codes") and the error that carries one.
 * A CniError is a TsbpfError, so library callers branch on it like on any
 * other tsbpf error; the plugin turns it into the spec's error object.
 */
import { TsbpfError, type TsbpfErrorCode, type TsbpfErrorOptions } from '../sdk/errors.js';

export const CNI_ERR = {
  /** Incompatible CNI version. */
  INCOMPATIBLE_VERSION: 1,
  /** Unsupported field in network configuration (the message names key and value). */
  UNSUPPORTED_FIELD: 2,
  /** Container unknown or does not exist. */
  UNKNOWN_CONTAINER: 3,
  /** Invalid necessary environment variables (the message names them). */
  INVALID_ENV: 4,
  /** I/O failure. */
  IO_FAILURE: 5,
  /** Failed to decode content (stdin is not JSON, ...). */
  DECODE_FAILURE: 6,
  /** Invalid network config. */
  INVALID_CONFIG: 7,
  /** Try again later (transient: the agent is not up yet, ...). */
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  NOT_AVAILABLE: 50,
  /** STATUS: not available, and existing containers may have limited connectivity. */
  LIMITED_CONNECTIVITY: 51,
  // 100+ are plugin-specific.
  /** The agent failed while doing the work (netlink, datapath, ...). */
  AGENT_FAILURE: 100,
  /** No address left in the node's pod CIDR. */
  POOL_EXHAUSTED: 101,
  /** CHECK found the container's networking not as expected. */
  CHECK_FAILED: 102,
} as const;

export type CniErrorCode = (typeof CNI_ERR)[keyof typeof CNI_ERR];

const TSBPF_CODE: Partial<Record<number, TsbpfErrorCode>> = {
  [CNI_ERR.IO_FAILURE]: 'INTERNAL',
  [CNI_ERR.TRY_AGAIN_LATER]: 'ENV_MISSING',
  [CNI_ERR.NOT_AVAILABLE]: 'ENV_MISSING',
  [CNI_ERR.LIMITED_CONNECTIVITY]: 'ENV_MISSING',
  [CNI_ERR.AGENT_FAILURE]: 'INTERNAL',
};

/** The spec's error object, as the plugin prints it on stdout. */
export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export class CniError extends TsbpfError {
  /** The CNI error code (1..11, 50, 51, 100+). */
  readonly cniCode: number;
  /** The spec's `details` string (longer explanation, the underlying error). */
  readonly cniDetails: string | undefined;

  constructor(cniCode: number, message: string, options: TsbpfErrorOptions & { cniDetails?: string } = {}) {
    super(TSBPF_CODE[cniCode] ?? 'INVALID_ARGUMENT', message, { ...options, details: { cniCode, ...(options.details ?? {}) } });
    this.name = 'CniError';
    this.cniCode = cniCode;
    this.cniDetails = options.cniDetails;
  }

  toObject(cniVersion: string): CniErrorObject {
    const o: CniErrorObject = { cniVersion, code: this.cniCode, msg: this.message };
    const details = this.cniDetails ?? this.hint;
    if (details) o.details = details;
    return o;
  }
}

export function isCniError(e: unknown): e is CniError {
  return e instanceof CniError;
}
