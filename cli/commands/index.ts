import type { Command } from '../command.js';
import { setup } from './setup.js';

/** Every subcommand, in the order `tsbpf --help` lists them. */
export const commands: Command[] = [setup];
