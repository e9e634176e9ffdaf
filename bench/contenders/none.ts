/** The reference: plain forwarding, nothing on the path. Every ratio is against this run. */
import type { Contender } from './index.js';

export const noFilter: Contender = {
  name: 'none',
  description: 'no filter: plain forwarding (the reference for every ratio)',
  baseline: true,
  async setup() {},
  async addOneRule() {},
  async teardown() {},
};
