#!/usr/bin/env node
// onnxruntime peer of bench/run_bench.sh: one model, one batch, timed the way
// bench_sim times the simulator (warm-up, then rounds of whole runs; images/s =
// the median round). CPU execution provider, graph optimisation 'all' (which
// fuses the QDQ groups of MODEL_qdq.onnx it recognises into onnxruntime's int8
// kernels), intraOpNumThreads = --threads, one inter-op thread, sequential
// execution, the same input tensor every run.
//
//   node bench/ort_bench.js MODEL.onnx INPUT.npy [--threads 2] [--rounds 5]
//        [--round-seconds 1] [--warmup-seconds 1] [--model NAME] [--save-optimized FILE]
//
// --save-optimized writes the graph onnxruntime runs after its fusions, so the
// report can say which convolutions became int8 kernels (QLinearConv) and
// which stayed float Conv between DequantizeLinear/QuantizeLinear.
//
// stdout: one JSON line. Exit 77 when onnxruntime-node is not installed (the
// message says how to install it), 2 on bad arguments, 1 on other errors.
'use strict';

const fs = require('fs');
const path = require('path');

const REFEREE = path.join(__dirname, '..', 'simulator', 'tests', 'referee');

let ort;
try {
  // Installed for the test referee (scripts/setup.sh); a global install works too.
  ort = require(require.resolve('onnxruntime-node', { paths: [REFEREE, __dirname] }));
} catch (e) {
  console.error('ort_bench: onnxruntime-node is not installed; install it with\n' +
                `  (cd ${path.resolve(REFEREE)} && npm install --ignore-scripts)`);
  process.exit(77);
}

// A float32, C-order .npy (what bench_sim --save-input writes).
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.readUInt32BE(0) !== 0x934e554d || buf.toString('latin1', 4, 6) !== 'PY') {
    throw new Error(`${file}: not an .npy file`);
  }
  const [hlen, off] = buf[6] === 1 ? [buf.readUInt16LE(8), 10] : [buf.readUInt32LE(8), 12];
  const header = buf.toString('latin1', off, off + hlen);
  if (!/'descr':\s*'<f4'/.test(header) || !/'fortran_order':\s*False/.test(header)) {
    throw new Error(`${file}: not a float32 C-order array`);
  }
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim())
    .filter((s) => s.length).map(Number);
  const data = new Float32Array(shape.reduce((x, y) => x * y, 1));
  new Uint8Array(data.buffer).set(buf.subarray(off + hlen, off + hlen + data.byteLength));  // aligned copy
  return { type: 'float32', data, shape };
}

function parseArgs(argv) {
  const o = { threads: 2, rounds: 5, roundSeconds: 1, warmupSeconds: 1, model: '', saveOptimized: '' };
  const pos = [];
  const num = { '--threads': 'threads', '--rounds': 'rounds', '--round-seconds': 'roundSeconds',
                '--warmup-seconds': 'warmupSeconds' };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a in num) {
      o[num[a]] = Number(argv[++i]);
      if (!(o[num[a]] >= 0)) throw new Error(`${a}: not a number`);
    } else if (a === '--model') {
      o.model = argv[++i];
    } else if (a === '--save-optimized') {
      o.saveOptimized = argv[++i];
    } else if (a.startsWith('--')) {
      throw new Error(`unknown option ${a}`);
    } else {
      pos.push(a);
    }
  }
  if (pos.length !== 2) throw new Error('usage: ort_bench.js MODEL.onnx INPUT.npy [options]');
  [o.onnx, o.input] = pos;
  return o;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`ort_bench: ${e.message}`);
    process.exit(2);
  }
  const opts = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: 3,
  };
  if (o.saveOptimized) opts.optimizedModelFilePath = o.saveOptimized;
  const session = await ort.InferenceSession.create(o.onnx, opts);
  const a = readNpy(o.input);
  const feeds = { [session.inputNames[0]]: new ort.Tensor(a.type, a.data, a.shape) };
  const run = () => session.run(feeds);

  const w0 = now();
  do { await run(); } while (now() - w0 < o.warmupSeconds);
  const rounds = [];
  let runs = 0;
  for (let r = 0; r < o.rounds; ++r) {
    let n = 0;
    const t0 = now();
    do { await run(); ++n; } while (now() - t0 < o.roundSeconds);
    rounds.push(n / (now() - t0));
    runs += n;
  }
  const batch = a.shape[0];
  const sorted = [...rounds].sort((x, y) => x - y);
  const m = sorted.length;
  const median = m % 2 ? sorted[(m - 1) / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
  console.log(JSON.stringify({
    bench: 'infer',
    peer: 'onnxruntime-int8',
    model: o.model || path.basename(o.onnx, '.onnx'),
    batch,
    threads: o.threads,
    images_per_s: median * batch,
    round_images_per_s: rounds.map((x) => x * batch),
    runs,
    peak_rss_mib: process.resourceUsage().maxRSS / 1024,
    version: `onnxruntime-node ${require(require.resolve('onnxruntime-node/package.json',
                                                          { paths: [REFEREE, __dirname] })).version}`,
  }));
  if (session.release) await session.release();
}

main().catch((e) => { console.error(`ort_bench: ${e.stack || e}`); process.exit(1); });
