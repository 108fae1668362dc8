#!/usr/bin/env node
// `npx holdfast ...` in a checkout. The command is TypeScript, run through
// tsx in this process, as `npm start` runs the server (node --import tsx).
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
