// An engine written from docs/bridge-protocol.md alone, in another language and with no ZeroMQ library: it
// speaks ZMTP 3.0 (the wire protocol of ZeroMQ, RFC 23, NULL mechanism) as a DEALER over a plain TCP socket,
// and the bridge's msgpack messages on top. tests/test_conformance.py runs it against `AgentServer`.
//
//   node bridge_engine.mjs tcp://127.0.0.1:PORT   -> plays 2 episodes of a toy game, prints a JSON summary
import { connect } from "node:net";

// -- msgpack: the subset the protocol uses (maps with string keys, ints, floats, strings, bin, arrays, bools) --
function encode(value, out = []) {
  const push = (...bytes) => out.push(Buffer.from(bytes));
  if (value === null) push(0xc0);
  else if (typeof value === "boolean") push(value ? 0xc3 : 0xc2);
  else if (Number.isInteger(value) && value >= 0 && value < 2 ** 32) {
    if (value < 128) push(value); else { const b = Buffer.alloc(5); b[0] = 0xce; b.writeUInt32BE(value, 1); out.push(b); }
  } else if (typeof value === "number") { const b = Buffer.alloc(9); b[0] = 0xcb; b.writeDoubleBE(value, 1); out.push(b); }
  else if (typeof value === "string") { const s = Buffer.from(value); push(0xd9, s.length); out.push(s); }
  else if (value instanceof Uint8Array) { push(0xc4, value.length); out.push(Buffer.from(value)); }
  else if (Array.isArray(value)) { push(0xdc, value.length >> 8, value.length & 0xff); value.forEach((v) => encode(v, out)); }
  else { const e = Object.entries(value); push(0xde, e.length >> 8, e.length & 0xff); e.forEach(([k, v]) => { encode(k, out); encode(v, out); }); }
  return out;
}
const pack = (v) => Buffer.concat(encode(v));

function decode(buf) {
  let pos = 0;
  const u = (n) => { const v = buf.readUIntBE(pos, n); pos += n; return v; };
  const str = (n) => { const s = buf.subarray(pos, pos + n).toString("utf8"); pos += n; return s; };
  const map = (n) => { const m = {}; for (let i = 0; i < n; i++) { const k = value(); m[k] = value(); } return m; };
  const arr = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(value()); return a; };
  function value() {
    const t = buf[pos++];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 256;
    if ((t & 0xf0) === 0x80) return map(t & 15);
    if ((t & 0xf0) === 0x90) return arr(t & 15);
    if ((t & 0xe0) === 0xa0) return str(t & 31);
    switch (t) {
      case 0xc0: return null; case 0xc2: return false; case 0xc3: return true;
      case 0xc4: { const n = u(1); const b = buf.subarray(pos, pos + n); pos += n; return b; }
      case 0xca: { const v = buf.readFloatBE(pos); pos += 4; return v; }
      case 0xcb: { const v = buf.readDoubleBE(pos); pos += 8; return v; }
      case 0xcc: return u(1); case 0xcd: return u(2); case 0xce: return u(4);
      case 0xcf: { const v = Number(buf.readBigUInt64BE(pos)); pos += 8; return v; }
      case 0xd0: { const v = buf.readInt8(pos); pos += 1; return v; }
      case 0xd1: { const v = buf.readInt16BE(pos); pos += 2; return v; }
      case 0xd2: { const v = buf.readInt32BE(pos); pos += 4; return v; }
      case 0xd3: { const v = Number(buf.readBigInt64BE(pos)); pos += 8; return v; }
      case 0xd9: return str(u(1)); case 0xda: return str(u(2));
      case 0xdc: return arr(u(2)); case 0xde: return map(u(2)); case 0xdf: return map(u(4));
      default: throw new Error(`msgpack type 0x${t.toString(16)}`);
    }
  }
  return value();
}

// -- ZMTP 3.0 over TCP: greeting, NULL handshake (READY with Socket-Type DEALER), then frames ---------------
class Zmtp {
  constructor(socket) {
    this.socket = socket; this.buffer = Buffer.alloc(0); this.waiting = null; this.stage = "greeting"; this.messages = []; this.parts = [];
    socket.on("close", () => { if (this.waiting) this.waiting(null); });
  }
  // Resolves once the handshake is over: the peer's greeting and its READY command have arrived. No message
  // may go out before that (libzmq drops a connection whose first message comes while it is still handshaking).
  static open(host, port) {
    return new Promise((resolve, reject) => {
      const socket = connect(port, host, () => {
        const zmtp = new Zmtp(socket);
        const greeting = Buffer.alloc(64);
        greeting[0] = 0xff; greeting[9] = 0x7f; greeting[10] = 3; greeting[11] = 0;
        greeting.write("NULL", 12, "ascii");
        socket.write(greeting);
        const property = (name, value) => Buffer.concat([Buffer.from([name.length]), Buffer.from(name), Buffer.alloc(4), Buffer.from(value)]);
        const typeProp = property("Socket-Type", "DEALER"); typeProp.writeUInt32BE(6, 1 + "Socket-Type".length);
        const body = Buffer.concat([Buffer.from([5]), Buffer.from("READY"), typeProp]);
        socket.write(Buffer.concat([Buffer.from([0x04, body.length]), body]));
        zmtp.onReady = () => resolve(zmtp);
        socket.on("data", (chunk) => zmtp.feed(chunk));
      });
      socket.on("error", reject);
      socket.on("close", () => reject(new Error("the agent closed the connection during the handshake")));
    });
  }
  feed(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.stage === "greeting") {
        if (this.buffer.length < 64) return;
        if (this.buffer[0] !== 0xff || this.buffer[9] !== 0x7f || this.buffer[10] < 3) throw new Error("not a ZMTP 3 peer");
        this.buffer = this.buffer.subarray(64); this.stage = "frames"; continue;
      }
      if (this.buffer.length < 2) return;
      const flags = this.buffer[0], long = flags & 0x02, head = long ? 9 : 2;
      if (this.buffer.length < head) return;
      const size = long ? Number(this.buffer.readBigUInt64BE(1)) : this.buffer[1];
      if (this.buffer.length < head + size) return;
      const body = this.buffer.subarray(head, head + size);
      this.buffer = this.buffer.subarray(head + size);
      if (flags & 0x04) {  // a command: with NULL, only the peer's READY (the handshake's end) matters
        if (body.subarray(0, 6).equals(Buffer.from("\x05READY", "latin1")) && this.onReady) { this.onReady(); this.onReady = null; }
        continue;
      }
      this.parts.push(body);
      if (!(flags & 0x01)) { this.messages.push(this.parts); this.parts = []; }
      if (this.waiting && this.messages.length) { const w = this.waiting; this.waiting = null; w(this.messages.shift()); }
    }
  }
  send(frame) {
    const head = frame.length < 256 ? Buffer.from([0x00, frame.length]) : Buffer.concat([Buffer.from([0x02]), Buffer.alloc(8)]);
    if (frame.length >= 256) head.writeBigUInt64BE(BigInt(frame.length), 1);
    this.socket.write(Buffer.concat([head, frame]));
  }
  receive(timeoutMs = 30000) {  // generous: a loaded CI machine, not a protocol promise
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within the timeout (request seq ${seq})`)), timeoutMs);
      this.waiting = (message) => {
        clearTimeout(timer);
        if (message === null) reject(new Error(`the agent closed the connection (request seq ${seq})`)); else resolve(message);
      };
    });
  }
}

// -- the engine: hello, 2 episodes of 5 decisions with changing masks, end, bye ----------------------------
const [endpoint] = process.argv.slice(2);
const [, host, port] = /^tcp:\/\/([^:]+):(\d+)$/.exec(endpoint);
const zmtp = await Zmtp.open(host, Number(port));
let seq = 0;
async function request(message) {
  seq += 1;
  zmtp.send(pack({ ...message, seq }));
  const [frame] = await zmtp.receive();
  const reply = decode(frame);
  if (reply.seq !== seq) throw new Error(`reply seq ${reply.seq} for request ${seq}`);
  return reply;
}
const float32s = (values) => { const b = Buffer.alloc(values.length * 4); values.forEach((v, i) => b.writeFloatLE(v, i * 4)); return new Uint8Array(b); };

const welcome = await request({ type: "hello", protocol: "aql-bridge", version: [1, 0], engine: "bridge_engine.mjs",
  env: { id: "toy-js-v0", observation: { dtype: "float32", shape: [4] }, action: { type: "discrete", n: 5 },
    action_mask: true, agents: ["agent"], tick_rate: 10.0 } });
if (welcome.type !== "welcome") throw new Error(`handshake: ${JSON.stringify(welcome)}`);
const summary = { session: welcome.session, policy: welcome.policy, decisions: 0, illegal: 0, mismatched: 0, acks: 0, errors: [] };
for (let episode = 0; episode < 2; episode++) {
  for (let frame = 0; frame < 5; frame++) {
    const mask = [0, 0, 0, 0, 0].map((_, a) => (a === frame % 5 || a === (frame + 2) % 5 ? 1 : 0));
    const reply = await request({ type: "step", session: welcome.session, agent: "agent", episode, frame,
      observation: float32s([episode, frame, 0.5, -1]), action_mask: new Uint8Array(mask), reward: frame === 0 ? 0 : 1.5 });
    if (reply.type !== "action") { summary.errors.push(reply); continue; }
    summary.decisions += 1;
    if (!mask[reply.action]) summary.illegal += 1;
    if (reply.episode !== episode || reply.frame !== frame || reply.agent !== "agent") summary.mismatched += 1;
  }
  const end = await request({ type: "end", session: welcome.session, agent: "agent", episode, frame: 5,
    observation: float32s([episode, 5, 0.5, -1]), action_mask: new Uint8Array([1, 1, 1, 1, 1]), reward: 2.0,
    terminated: true, truncated: false, outcome: episode === 0 ? "win" : "loss" });
  if (end.type === "ack") summary.acks += 1; else summary.errors.push(end);
}
const beat = await request({ type: "heartbeat", session: welcome.session });
summary.heartbeat = beat.type;
const bye = await request({ type: "bye", session: welcome.session });
summary.bye = bye.type;
zmtp.socket.end();
process.stdout.write(JSON.stringify(summary) + "\n");
