import type { Command } from '../command.js';
import { attach } from './attach.js';
import { build } from './build.js';
import { ct } from './ct.js';
import { detach } from './detach.js';
import { explain } from './explain.js';
import { loadCommand } from './load.js';
import { maps } from './maps.js';
import { setup } from './setup.js';
import { testCommand } from './test.js';
import { types } from './types.js';

/** Every subcommand, in the order `tsbpf --help` lists them. */
export const commands: Command[] = [build, loadCommand, attach, detach, maps, ct, testCommand, explain, types, setup];
