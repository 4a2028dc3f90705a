#!/usr/bin/env node
// The relay is written in TypeScript and run through tsx's loader, so the
// package needs no build step before `npm start`.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
