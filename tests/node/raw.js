// A hand-written WebSocket server for what the npm `ws` server will not do:
// misbehave. Plain TCP, the opening handshake done here, frames parsed and
// written here. The request path picks the behaviour of each connection:
//
//   /close-keep-open   sends Close (1000 "bye"), then never ends TCP and
//                      ignores everything (a peer that closes without FIN)
//   /bad-utf8          sends a text message that is not UTF-8, then ignores
//                      the client's Close and keeps TCP open
//   /bad-utf8-polite   the same, but answers the client's Close and ends TCP
//   /bad-close-code    sends a Close frame with code 999, then behaves
//   /too-big-fragments sends a text message of 32 fragments of 64 KiB each
//                      (2 MiB: over a 1 MiB limit), then behaves
//   /ping-flood        sends 2000 pings and 2000 unsolicited pongs, then the
//                      text "done <pongs received>" once all pongs are in
//   /frames            reads nothing for 800 ms, then logs each data message
//                      on stdout: "MSG <bytes> <frames> <largest frame>
//                      <control frames inside it>"; answers no ping
//   /http/<status>     answers the upgrade with that HTTP status (302 and
//                      307 carry "Location: /echo")
//   /headers           sends the request head it received as one text message
//   /bad-subprotocol   accepts with subprotocol "nope" whatever was offered
//
// Every upgrade offering subprotocols gets the first one offered.
//   anything else      echoes text and binary messages; answers pings
//
// "Behaves": answers Close with Close and ends TCP, answers pings.
//
//   node raw.js        prints "PORT <n>" (127.0.0.1, ephemeral port), then
//                      "PORT6 <n>" (the same on [::1], 0 when there is no
//                      IPv6 loopback), and exits when stdin closes or after
//                      300 s.
'use strict';

const net = require('net');
const crypto = require('crypto');

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(0), 300000).unref();

function frame(opcode, payload, fin = true) {
  const len = payload.length;
  let head;
  if (len < 126) {
    head = Buffer.from([(fin ? 0x80 : 0) | opcode, len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

function closeFrame(code, reason = '') {
  const p = Buffer.alloc(2 + Buffer.byteLength(reason));
  p.writeUInt16BE(code, 0);
  p.write(reason, 2);
  return frame(0x8, p);
}

// Parses client frames from `buf`; returns [frames, rest, bytes needed for
// the next frame (so a large frame is joined once, not chunk by chunk)].
function parseFrames(buf) {
  const out = [];
  for (;;) {
    if (buf.length < 2) return [out, buf, 2];
    const fin = (buf[0] & 0x80) !== 0;
    const opcode = buf[0] & 0x0f;
    const masked = (buf[1] & 0x80) !== 0;
    let len = buf[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      if (buf.length < 4) return [out, buf, 4];
      len = buf.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (buf.length < 10) return [out, buf, 10];
      len = Number(buf.readBigUInt64BE(2));
      at = 10;
    }
    const maskAt = at;
    if (masked) at += 4;
    if (buf.length < at + len) return [out, buf, at + len];
    const payload = Buffer.from(buf.subarray(at, at + len));
    if (masked) {
      for (let i = 0; i < len; i++) payload[i] ^= buf[maskAt + (i % 4)];
    }
    out.push({ fin, opcode, payload });
    buf = buf.subarray(at + len);
  }
}

function upgrade(sock, head, path) {
  const key = /sec-websocket-key:\s*(\S+)/i.exec(head);
  const offered = /sec-websocket-protocol:\s*([^\r\n]+)/i.exec(head);
  let proto = '';
  if (path === '/bad-subprotocol') proto = 'Sec-WebSocket-Protocol: nope\r\n';
  else if (offered) proto = `Sec-WebSocket-Protocol: ${offered[1].split(',')[0].trim()}\r\n`;
  const accept = crypto
    .createHash('sha1')
    .update(key[1] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  sock.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n${proto}\r\n`,
  );
}

function serve(sock) {
  sock.on('error', () => {});
  let buf = Buffer.alloc(0);
  let path = null;
  let ignore = false;  // read and drop everything (a peer that stopped caring)
  let msg = null;      // /frames: the data message being received
  let pongs = 0;
  let closed = false;

  function behave(f) {
    if (f.opcode === 0x8) {
      if (!closed) sock.write(frame(0x8, f.payload));
      closed = true;
      sock.end();
    } else if (f.opcode === 0x9) {
      sock.write(frame(0xa, f.payload));
    }
  }

  function onFrame(f) {
    if (ignore) return;
    if (path === '/frames') {
      if (f.opcode === 0x8) return behave(f);
      if (f.opcode >= 0x8) {
        if (msg) msg.control += 1;
        return;
      }
      if (!msg) msg = { bytes: 0, frames: 0, largest: 0, control: 0 };
      msg.bytes += f.payload.length;
      msg.frames += 1;
      msg.largest = Math.max(msg.largest, f.payload.length);
      if (f.fin) {
        process.stdout.write(`MSG ${msg.bytes} ${msg.frames} ${msg.largest} ${msg.control}\n`);
        msg = null;
      }
      return;
    }
    if (path === '/ping-flood') {
      if (f.opcode === 0xa) {
        pongs += 1;
        if (pongs === 2000) sock.write(frame(0x1, Buffer.from(`done ${pongs}`)));
        return;
      }
      return behave(f);
    }
    if (f.opcode === 0x1 || f.opcode === 0x2 || f.opcode === 0x0) {
      sock.write(frame(f.opcode, f.payload, f.fin));
      return;
    }
    behave(f);
  }

  function start() {
    switch (path) {
      case '/close-keep-open':
        sock.write(closeFrame(1000, 'bye'));
        ignore = true;
        break;
      case '/bad-utf8':
        sock.write(frame(0x1, Buffer.from([0x68, 0xc3, 0x28, 0x69])));
        ignore = true;
        break;
      case '/bad-utf8-polite':
        sock.write(frame(0x1, Buffer.from([0x68, 0xc3, 0x28, 0x69])));
        break;
      case '/bad-close-code':
        sock.write(closeFrame(999, 'nope'));
        break;
      case '/too-big-fragments': {
        const part = Buffer.alloc(64 * 1024, 0x61);
        for (let i = 0; i < 32; i++) sock.write(frame(i === 0 ? 0x1 : 0x0, part, i === 31));
        break;
      }
      case '/ping-flood': {
        const parts = [];
        for (let i = 0; i < 2000; i++) {
          parts.push(frame(0x9, Buffer.from(`p${i}`)));
          parts.push(frame(0xa, Buffer.from(`u${i}`)));
        }
        sock.write(Buffer.concat(parts));
        break;
      }
      case '/frames':
        sock.pause();
        setTimeout(() => sock.resume(), 800);
        break;
      default:
        break;
    }
  }

  let chunks = [];
  let have = 0;
  let need = 1;
  sock.on('data', (chunk) => {
    chunks.push(chunk);
    have += chunk.length;
    if (have < need) return;
    buf = Buffer.concat([buf, ...chunks]);
    chunks = [];
    have = 0;
    if (path === null) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      buf = buf.subarray(end + 4);
      path = head.split(' ')[1] || '/';
      const http = /^\/http\/(\d+)/.exec(path);
      if (http) {
        const status = Number(http[1]);
        const where = status === 302 || status === 307 ? 'Location: /echo\r\n' : '';
        sock.end(`HTTP/1.1 ${status} Nope\r\n${where}Content-Length: 0\r\nConnection: close\r\n\r\n`);
        return;
      }
      upgrade(sock, head, path);
      if (path === '/headers') sock.write(frame(0x1, Buffer.from(head)));
      start();
    }
    const [frames, rest, next] = parseFrames(buf);
    buf = rest;
    need = next - buf.length;
    for (const f of frames) onFrame(f);
  });
}

const server = net.createServer(serve);
const server6 = net.createServer(serve);

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
  server6.on('error', () => process.stdout.write('PORT6 0\n'));
  server6.listen(0, '::1', () => process.stdout.write(`PORT6 ${server6.address().port}\n`));
});
