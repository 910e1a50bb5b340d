#!/usr/bin/env node
// Referee runner: execute every model of a make_models.py manifest with
// onnxruntime-node (CPU, default graph optimisation level 'all', 2 intra-op
// threads) and write each output as OUTDIR/<model>/<output name>.npy.
//
//   node run_ort.js MANIFEST OUTDIR
//
// Env: QEVAL_ORT_OPTIMIZED_DIR=DIR  also save each optimised graph as
//      DIR/<model>.optimized.onnx (to inspect which QDQ groups onnxruntime fused).
//      QEVAL_ORT_THREADS=N  intra-op threads (default 2).
'use strict';

const fs = require('fs');
const path = require('path');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.error('run_ort: onnxruntime-node is not installed; run\n' +
                `  (cd ${__dirname} && npm install --ignore-scripts)`);
  process.exit(77);
}

// ------------------------------------------------------------------ .npy I/O

const NPY_TYPES = {
  '<f4': { type: 'float32', Array: Float32Array },
  '|i1': { type: 'int8', Array: Int8Array },
  '<i1': { type: 'int8', Array: Int8Array },
  '|u1': { type: 'uint8', Array: Uint8Array },
  '<u1': { type: 'uint8', Array: Uint8Array },
  '<i4': { type: 'int32', Array: Int32Array },
};
const DESCR = { float32: '<f4', int8: '|i1', uint8: '|u1', int32: '<i4' };

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.readUInt32BE(0) !== 0x934e554d || buf.toString('latin1', 4, 6) !== 'PY') {
    throw new Error(`${file}: not an .npy file`);
  }
  const major = buf[6];
  let hlen, off;
  if (major === 1) { hlen = buf.readUInt16LE(8); off = 10; } else { hlen = buf.readUInt32LE(8); off = 12; }
  const header = buf.toString('latin1', off, off + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)[1];
  const shapeStr = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
  const shape = shapeStr.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  if (fortran !== 'False') throw new Error(`${file}: fortran order unsupported`);
  const t = NPY_TYPES[descr];
  if (!t) throw new Error(`${file}: dtype ${descr} unsupported`);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = off + hlen;
  const bytes = buf.subarray(start, start + count * t.Array.BYTES_PER_ELEMENT);
  const data = new t.Array(count);
  new Uint8Array(data.buffer).set(bytes); // copy: aligned, little-endian host
  return { type: t.type, data, shape };
}

function writeNpy(file, type, data, shape) {
  const descr = DESCR[type];
  if (!descr) throw new Error(`writeNpy: type ${type} unsupported`);
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;  // v1.0, padded to 64
  header = header + ' '.repeat(total - 10 - header.length - 1) + '\n';
  const pre = Buffer.alloc(10);
  pre.writeUInt32BE(0x934e554d, 0);
  pre.write('PY', 4, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

// ------------------------------------------------------------------ main

async function main() {
  const [manifestPath, outDir] = process.argv.slice(2);
  if (!manifestPath || !outDir) {
    console.error('usage: node run_ort.js MANIFEST OUTDIR');
    process.exit(2);
  }
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const base = path.dirname(path.resolve(manifestPath));
  const optDir = process.env.QEVAL_ORT_OPTIMIZED_DIR;
  const threads = Number(process.env.QEVAL_ORT_THREADS || 2);
  if (optDir) fs.mkdirSync(optDir, { recursive: true });
  console.log(`run_ort: onnxruntime-node ${require('onnxruntime-node/package.json').version}, ` +
              `graphOptimizationLevel=all, intraOpNumThreads=${threads}`);

  for (const m of manifest.models) {
    const opts = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
    };
    if (optDir) opts.optimizedModelFilePath = path.join(optDir, `${m.name}.optimized.onnx`);
    const session = await ort.InferenceSession.create(path.join(base, m.file), opts);
    const feeds = {};
    for (const [name, file] of Object.entries(m.inputs)) {
      const a = readNpy(path.join(base, file));
      feeds[name] = new ort.Tensor(a.type, a.data, a.shape);
    }
    const results = await session.run(feeds);
    const dir = path.join(outDir, m.name);
    fs.mkdirSync(dir, { recursive: true });
    const parts = [];
    for (const o of m.outputs) {
      const t = results[o.name];
      if (!t) throw new Error(`${m.name}: output ${o.name} missing`);
      writeNpy(path.join(dir, `${o.name}.npy`), t.type, t.data, t.dims.map(Number));
      parts.push(`${o.name} ${t.type}[${t.dims.join('x')}]`);
    }
    if (session.release) await session.release();
    console.log(`run_ort: ${m.name}: ${parts.join(', ')}`);
  }
}

main().catch((e) => { console.error(`run_ort: ${e.stack || e}`); process.exit(1); });
