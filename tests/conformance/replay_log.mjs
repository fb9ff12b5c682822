// A replay-log reader and writer written from docs/replay-log.md alone, in another language, sharing no code
// with aql_agent: tests/test_conformance.py checks that the two implementations agree byte for byte.
//
//   node replay_log.mjs read LOG        -> JSON summary of what the log holds (stdout)
//   node replay_log.mjs write LOG       -> writes a two-agent log, prints JSON of what it wrote
//
// Node.js >= 18, no packages: the msgpack subset and CRC-32 the spec needs are below. Codec 0 only.
import { readFileSync, writeFileSync } from "node:fs";

const MAGIC = Buffer.from([0x89, 0x41, 0x51, 0x4c, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHUNK_MAGIC = Buffer.from("AQLC", "ascii");

// -- CRC-32 (IEEE 802.3, zlib's) --------------------------------------------------------------------------
const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// -- msgpack: the subset the spec uses --------------------------------------------------------------------
class Decoder {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  u(n) { const v = this.buf.readUIntBE(this.pos, n); this.pos += n; return v; }
  bytes(n) { const v = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return v; }
  int64(signed) {
    const v = signed ? this.buf.readBigInt64BE(this.pos) : this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return Number(v);
  }
  value() {
    const t = this.buf[this.pos++];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return this.map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return this.array(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return this.bytes(t & 0x1f).toString("utf8");
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return { bin: this.bytes(this.u(1)) };
      case 0xc5: return { bin: this.bytes(this.u(2)) };
      case 0xc6: return { bin: this.bytes(this.u(4)) };
      case 0xca: { const v = this.buf.readFloatBE(this.pos); this.pos += 4; return v; }
      case 0xcb: { const v = this.buf.readDoubleBE(this.pos); this.pos += 8; return v; }
      case 0xcc: return this.u(1);
      case 0xcd: return this.u(2);
      case 0xce: return this.u(4);
      case 0xcf: return this.int64(false);
      case 0xd0: { const v = this.buf.readInt8(this.pos); this.pos += 1; return v; }
      case 0xd1: { const v = this.buf.readInt16BE(this.pos); this.pos += 2; return v; }
      case 0xd2: { const v = this.buf.readInt32BE(this.pos); this.pos += 4; return v; }
      case 0xd3: return this.int64(true);
      case 0xd9: return this.bytes(this.u(1)).toString("utf8");
      case 0xda: return this.bytes(this.u(2)).toString("utf8");
      case 0xdb: return this.bytes(this.u(4)).toString("utf8");
      case 0xdc: return this.array(this.u(2));
      case 0xdd: return this.array(this.u(4));
      case 0xde: return this.map(this.u(2));
      case 0xdf: return this.map(this.u(4));
      default: throw new Error(`msgpack type 0x${t.toString(16)} at ${this.pos - 1} is outside the spec's subset`);
    }
  }
  array(n) { const a = []; for (let i = 0; i < n; i++) a.push(this.value()); return a; }
  map(n) { const m = new Map(); for (let i = 0; i < n; i++) { const k = this.value(); m.set(k, this.value()); } return m; }
}

function encode(value, out = []) {
  const head = (bytes) => out.push(Buffer.from(bytes));
  if (value === null || value === undefined) head([0xc0]);
  else if (value === true || value === false) head([value ? 0xc3 : 0xc2]);
  else if (typeof value === "number" && Number.isInteger(value) && !Object.is(value, -0)) {
    if (value >= 0 && value <= 0x7f) head([value]);
    else if (value < 0 && value >= -32) head([value + 0x100]);
    else if (value >= 0 && value <= 0xffffffff) { const b = Buffer.alloc(5); b[0] = 0xce; b.writeUInt32BE(value, 1); out.push(b); }
    else { const b = Buffer.alloc(9); b[0] = 0xd3; b.writeBigInt64BE(BigInt(value), 1); out.push(b); }
  } else if (typeof value === "number" || value instanceof Float) {
    const b = Buffer.alloc(9); b[0] = 0xcb; b.writeDoubleBE(Number(value), 1); out.push(b);
  } else if (typeof value === "string") {
    const s = Buffer.from(value, "utf8");
    if (s.length < 32) head([0xa0 | s.length]); else head([0xd9, s.length]);
    out.push(s);
  } else if (value instanceof Uint8Array) {
    if (value.length < 256) head([0xc4, value.length]);
    else { const b = Buffer.alloc(3); b[0] = 0xc5; b.writeUInt16BE(value.length, 1); out.push(b); }
    out.push(Buffer.from(value));
  } else if (Array.isArray(value)) {
    if (value.length < 16) head([0x90 | value.length]); else { const b = Buffer.alloc(3); b[0] = 0xdc; b.writeUInt16BE(value.length, 1); out.push(b); }
    for (const v of value) encode(v, out);
  } else {  // a map: a Map keeps its key order, an object its insertion order
    const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
    if (entries.length < 16) head([0x80 | entries.length]); else { const b = Buffer.alloc(3); b[0] = 0xde; b.writeUInt16BE(entries.length, 1); out.push(b); }
    for (const [k, v] of entries) { encode(k, out); encode(v, out); }
  }
  return out;
}
class Float { constructor(v) { this.v = v; } valueOf() { return this.v; } }
const pack = (value) => Buffer.concat(encode(value));

// -- values of a space -----------------------------------------------------------------------------------
const DTYPES = { bool: [1, "readUInt8"], int8: [1, "readInt8"], uint8: [1, "readUInt8"], int16: [2, "readInt16LE"],
  uint16: [2, "readUInt16LE"], int32: [4, "readInt32LE"], uint32: [4, "readUInt32LE"], float32: [4, "readFloatLE"],
  float64: [8, "readDoubleLE"], int64: [8, "readBigInt64LE"], uint64: [8, "readBigUInt64LE"] };
const prod = (shape) => shape.reduce((a, b) => a * b, 1);

function leafLayout(spec) {
  const type = spec.get("type");
  if (type === "discrete") return [spec.get("dtype") ?? "int64", []];
  if (type === "multi_binary") return ["int8", spec.get("shape")];
  return [spec.get("dtype") ?? "int64", spec.get("shape")];
}
function decodeValue(spec, wire) {
  if (spec.get("type") === "dict") {
    const keys = spec.get("keys"), out = {};
    if (!Array.isArray(wire) || wire.length !== keys.length) throw new Error("a dict value is an array of its keys' values");
    keys.forEach((k, i) => { out[k] = decodeValue(spec.get("spaces").get(k), wire[i]); });
    return out;
  }
  const [dtype, shape] = leafLayout(spec);
  const [size, read] = DTYPES[dtype];
  if (!wire || !wire.bin || wire.bin.length !== prod(shape) * size) throw new Error(`a ${dtype}${JSON.stringify(shape)} value has the wrong size`);
  const values = [];
  for (let i = 0; i < prod(shape); i++) values.push(Number(wire.bin[read](i * size)));
  return values;
}

// -- reading ---------------------------------------------------------------------------------------------
function readLog(path) {
  const file = readFileSync(path);
  if (!file.subarray(0, 8).equals(MAGIC)) throw new Error("not a replay log (magic)");
  const records = [];
  let pos = 8, chunkIndex = 0;
  const sequences = [];
  while (pos < file.length) {
    const head = file.subarray(pos, pos + 28);
    if (head.length < 28 || !head.subarray(0, 4).equals(CHUNK_MAGIC)) throw new Error(`no chunk header at ${pos}`);
    if (crc32(head.subarray(0, 24)) !== head.readUInt32LE(24)) throw new Error(`chunk header CRC fails at ${pos}`);
    sequences.push(head.readUIntLE(5, 3));
    const codec = head[4], count = head.readUInt32LE(8), stored = head.readUInt32LE(12), raw = head.readUInt32LE(16);
    if (codec !== 0) throw new Error("this reader takes codec 0 only");
    const payload = file.subarray(pos + 28, pos + 28 + stored);
    if (payload.length !== stored || raw !== stored) throw new Error(`chunk at ${pos} is cut or mislabelled`);
    if (crc32(payload) !== head.readUInt32LE(20)) throw new Error(`payload CRC fails at ${pos}`);
    const decoder = new Decoder(payload);
    for (let i = 0; i < count; i++) records.push(decoder.value());
    if (decoder.pos !== stored) throw new Error(`chunk at ${pos}: ${count} records do not fill it exactly`);
    if (chunkIndex === 0 && count !== 1) throw new Error("the first chunk holds exactly one record");
    pos += 28 + stored;
    chunkIndex++;
  }
  const [tag, header] = records[0];
  const [major, minor] = header.get("version");
  if (tag !== 0 || header.get("format") !== "aql-replay" || major !== 1) throw new Error("bad header");
  if (minor >= 1) {  // since 1.1 chunk headers count 0, 1, 2, ... (mod 2^24) in bytes 5-7; 1.0 wrote zeros there
    sequences.forEach((s, i) => { if (s !== i % 0x1000000) throw new Error(`chunk ${i} has sequence number ${s}: chunks lost, duplicated or reordered`); });
  }
  const agents = header.get("agents").map((a) => a.get("id"));
  const specs = header.get("agents").map((a) => [a.get("observation_space"), a.get("action_space")]);
  const summary = { env_id: header.get("env_id"), agents, info_keys: header.get("info_keys") ?? [], episodes: [],
    steps: Object.fromEntries(agents.map((a) => [a, 0])), reward_sums: Object.fromEntries(agents.map((a) => [a, 0])),
    first_step: {}, finalised: false, log_end: null, chunks: chunkIndex };
  let episode = null;
  for (const record of records.slice(1)) {
    switch (record[0]) {
      case 1:
        if (episode) throw new Error("episodes overlap");
        episode = { index: record[1], seed: record[2], lengths: Object.fromEntries(agents.map((a) => [a, 0])) };
        break;
      case 2: {
        if (!episode) throw new Error("a step outside an episode");
        const agent = agents[record[1]];
        const [obsSpec, actSpec] = specs[record[1]];
        const observation = decodeValue(obsSpec, record[2]), action = decodeValue(actSpec, record[3]);
        if (!(agent in summary.first_step)) summary.first_step[agent] = { observation, action, reward: record[4], terminated: record[5], truncated: record[6] };
        episode.lengths[agent]++;
        summary.steps[agent]++;
        summary.reward_sums[agent] += record[4];
        break;
      }
      case 3: {
        if (!episode || episode.index !== record[1]) throw new Error("an end for another episode");
        const ends = record[2];
        episode.outcomes = Object.fromEntries(agents.map((a) => [a, ends.get(a)?.get("outcome") ?? null]));
        episode.said_lengths = Object.fromEntries(agents.map((a) => [a, ends.get(a)?.get("length") ?? null]));
        summary.episodes.push(episode);
        episode = null;
        break;
      }
      case 4:
        summary.finalised = true;
        summary.log_end = { episodes: record[1].get("episodes"), steps: record[1].get("steps") };
        break;
      default:
        throw new Error(`unknown record tag ${record[0]}`);
    }
  }
  return summary;
}

// -- writing ---------------------------------------------------------------------------------------------
function chunk(records, sequence) {
  const payload = Buffer.concat(records.map(pack));
  const head = Buffer.alloc(28);
  CHUNK_MAGIC.copy(head, 0);
  head.writeUIntLE(sequence % 0x1000000, 5, 3);
  head.writeUInt32LE(records.length, 8);
  head.writeUInt32LE(payload.length, 12);
  head.writeUInt32LE(payload.length, 16);
  head.writeUInt32LE(crc32(payload), 20);
  head.writeUInt32LE(crc32(head.subarray(0, 24)), 24);
  return Buffer.concat([head, payload]);
}
function float32s(values) { const b = Buffer.alloc(values.length * 4); values.forEach((v, i) => b.writeFloatLE(v, i * 4)); return new Uint8Array(b); }
function int64(value) { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(value)); return new Uint8Array(b); }

function writeLog(path) {
  // Dict keys deliberately not sorted: values follow the spec's `keys` order.
  const observationSpace = new Map([["type", "dict"], ["keys", ["observation", "action_mask"]], ["spaces", new Map([
    ["observation", new Map([["type", "box"], ["dtype", "float32"], ["shape", [3]], ["low", -10], ["high", 10]])],
    ["action_mask", new Map([["type", "multi_binary"], ["shape", [4]]])]])]]);
  const actionSpace = new Map([["type", "discrete"], ["dtype", "int64"], ["n", 4], ["start", 0]]);
  const agents = ["north", "south"];
  const header = new Map([["format", "aql-replay"], ["version", [1, 1]], ["env_id", "conformance-v0"],
    ["agents", agents.map((id) => new Map([["id", id], ["observation_space", observationSpace], ["action_space", actionSpace], ["player", new Map([["kind", "bot"], ["name", "js"]])]]))],
    ["info_keys", []], ["recorder", new Map([["library", "replay_log.mjs"]])], ["metadata", new Map()]]);
  const chunks = [chunk([[0, header]], 0)];
  const wrote = { agents, episodes: [], steps: { north: 0, south: 0 }, reward_sums: { north: 0, south: 0 }, first_step: {} };
  let total = 0;
  for (let e = 0; e < 2; e++) {
    const records = [[1, e, 100 + e, new Map()]];
    const length = 3 + e, returns = { north: 0, south: 0 };
    for (let t = 0; t < length; t++) {
      agents.forEach((agent, i) => {
        const observation = [e, t, i + 0.5], mask = [1, t % 2, 1, 0], action = (t + i) % 4 === 3 ? 0 : (t + i) % 4;
        const reward = new Float(i === 0 ? 1 : -1);
        const last = t === length - 1;
        records.push([2, i, [float32s(observation), new Uint8Array(mask)], int64(action), reward, last, false, null]);
        if (!(agent in wrote.first_step)) wrote.first_step[agent] = { observation: { observation, action_mask: mask }, action: [action], reward: Number(reward), terminated: last, truncated: false };
        returns[agent] += Number(reward);
        wrote.steps[agent]++;
        wrote.reward_sums[agent] += Number(reward);
        total++;
      });
    }
    const outcomes = { north: "win", south: "loss" };
    records.push([3, e, new Map(agents.map((a) => [a, new Map([["return", new Float(returns[a])], ["length", length],
      ["outcome", outcomes[a]], ["final_observation", [float32s([e, length, 9]), new Uint8Array([1, 1, 1, 1])]]])])), new Map()]);
    chunks.push(chunk(records, chunks.length));
    wrote.episodes.push({ index: e, seed: 100 + e, lengths: { north: length, south: length }, outcomes });
  }
  chunks.push(chunk([[4, new Map([["episodes", 2], ["steps", total], ["finished", "2026-11-29T00:00:00Z"]])]], chunks.length));
  writeFileSync(path, Buffer.concat([MAGIC, ...chunks]));
  return wrote;
}

const [command, path] = process.argv.slice(2);
try {
  const result = command === "read" ? readLog(path) : command === "write" ? writeLog(path) : null;
  if (result === null) throw new Error("usage: node replay_log.mjs read|write LOG");
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (error) {
  process.stderr.write(`replay_log.mjs: ${error.message}\n`);
  process.exit(1);
}
