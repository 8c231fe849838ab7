// The browser test cases by name, run in headless Chromium by run.mjs through
// pages/harness.html (`node tests/web/run.mjs NAME ...` runs some), each in a fresh page. A case
// throws on failure with a message that names the input (seed, shape, config).
import { cases as ops } from './cases/ops.js';
import { cases as loads } from './cases/loads.js';
import { cases as models } from './cases/models.js';
import { cases as families } from './cases/families.js';
import { cases as faults } from './cases/faults.js';
import { cases as pkg } from './cases/package.js';
import { cases as origins } from './cases/origins.js';
import { cases as openai } from './cases/openai.js';
import { cases as types } from './cases/types.js';
import { cases as kvCache } from './cases/kv_cache.js';
import { cases as perplexity } from './cases/perplexity.js';

export const cases = { ...ops, ...loads, ...models, ...families, ...faults, ...pkg, ...origins, ...openai, ...types, ...kvCache, ...perplexity };
