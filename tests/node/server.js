// The WebSocket peer keel's client tests run against: the npm `ws` package
// (pinned in package-lock.json), a server nobody in keel wrote.
//
//   node server.js MODE [--tls CERT KEY]
//
// Listens on 127.0.0.1 on an ephemeral port, prints "PORT <n>" on stdout,
// and exits by itself when stdin closes (the test that started it is gone)
// or after 120 s, whichever comes first.
//
// Modes:
//   echo          echoes every message with its type; answers pings. Text
//                 commands change its behaviour for that connection:
//                   __mute__          stop answering pings (replies "muted")
//                   __latepong__ MS   answer each ping MS ms late (replies "late")
//                   __reset__         TCP reset, no close frame
//                   __close__ CODE    close frame with CODE
//                   __big__ N         send an N-byte binary message
//                   __restart__ MS    drop every client, stop listening, listen
//                                     again on the same port after MS ms
//                   __count__         replies "count <connections so far>"
//                   __flood__ N SIZE  sends N binary messages of SIZE bytes as
//                                     fast as the client reads them (at most
//                                     4 x SIZE buffered here)
//   accept-close  completes the opening handshake, then closes at once (1000)
//   silent        accepts TCP connections and never answers (raw TCP)
'use strict';

const http = require('http');
const https = require('https');
const net = require('net');
const fs = require('fs');
const { WebSocketServer } = require('ws');

const mode = process.argv[2] || 'echo';
let tls = null;
const tlsAt = process.argv.indexOf('--tls');
if (tlsAt > 0) {
  tls = { cert: fs.readFileSync(process.argv[tlsAt + 1]), key: fs.readFileSync(process.argv[tlsAt + 2]) };
}

// Exit when the parent goes away, and in any case after 120 s.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(0), 120000).unref();

let connections = 0;
const sockets = new Set();

function makeServer() {
  if (mode === 'silent') {
    return net.createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => {});
    });
  }
  const server = tls ? https.createServer(tls) : http.createServer();
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  const wss = new WebSocketServer({ server, autoPong: false, maxPayload: 64 * 1024 * 1024 });
  wss.on('connection', (ws) => {
    connections += 1;
    ws.on('error', () => {});
    if (mode === 'accept-close') {
      ws.close(1000, 'go away');
      return;
    }
    let muted = false;
    let pongDelay = 0;
    ws.on('ping', (data) => {
      if (muted) return;
      if (pongDelay > 0) {
        setTimeout(() => {
          if (ws.readyState === ws.OPEN) ws.pong(data);
        }, pongDelay);
      } else {
        ws.pong(data);
      }
    });
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.length < 64) {
        const text = data.toString();
        const [cmd, arg, arg2] = text.split(' ');
        switch (cmd) {
          case '__mute__':
            muted = true;
            ws.send('muted');
            return;
          case '__latepong__':
            pongDelay = Number(arg);
            ws.send('late');
            return;
          case '__reset__':
            ws._socket.resetAndDestroy();
            return;
          case '__close__':
            ws.close(Number(arg), 'asked to');
            return;
          case '__big__':
            ws.send(Buffer.alloc(Number(arg), 0x61), { binary: true });
            return;
          case '__flood__': {
            const n = Number(arg);
            const payload = Buffer.alloc(Number(arg2), 0x62);
            let sent = 0;
            const pump = () => {
              while (sent < n && ws.readyState === ws.OPEN && ws.bufferedAmount < 4 * payload.length) {
                ws.send(payload, { binary: true });
                sent += 1;
              }
              if (sent < n && ws.readyState === ws.OPEN) setTimeout(pump, 2);
            };
            pump();
            return;
          }
          case '__count__':
            ws.send(`count ${connections}`);
            return;
          case '__restart__':
            restart(Number(arg));
            return;
          default:
            break;
        }
      }
      ws.send(data, { binary: isBinary });
    });
  });
  return server;
}

let server = makeServer();
let port = 0;

function restart(ms) {
  server.close();
  for (const s of sockets) s.destroy();
  sockets.clear();
  setTimeout(() => {
    server = makeServer();
    server.listen(port, '127.0.0.1', () => process.stdout.write('RESTARTED\n'));
  }, ms);
}

server.listen(0, '127.0.0.1', () => {
  port = server.address().port;
  process.stdout.write(`PORT ${port}\n`);
});
