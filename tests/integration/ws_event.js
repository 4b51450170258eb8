// Minimal WebSocket client over node's `net` (RFC 6455 upgrade, one unmasked
// server text frame): prints the first event message from otalab-server.
// usage: node ws_event.js PORT PATH TOKEN [TIMEOUT_MS]
'use strict';
const net = require('net');
const crypto = require('crypto');
const [port, path, token, tmo] = process.argv.slice(2);
const key = crypto.randomBytes(16).toString('base64');
const want = crypto.createHash('sha1')
  .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
const s = net.connect(Number(port), '127.0.0.1', () => {
  s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    `Authorization: Bearer ${token}\r\n\r\n`);
});
let buf = Buffer.alloc(0), upgraded = false;
const fail = (m) => { console.error('ws: ' + m); process.exit(1); };
setTimeout(() => fail('timeout'), Number(tmo || 10000));
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  if (!upgraded) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = buf.slice(0, end).toString();
    if (!/^HTTP\/1\.1 101/.test(head)) fail('no upgrade: ' + head.split('\r\n')[0]);
    if (!head.includes(want)) fail('bad Sec-WebSocket-Accept');
    upgraded = true;
    console.log('upgraded');
    buf = buf.slice(end + 4);
  }
  while (buf.length >= 2) {
    const op = buf[0] & 0x0f;
    let len = buf[1] & 0x7f, off = 2;
    if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
    else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
    if (buf.length < off + len) return;
    const payload = buf.slice(off, off + len);
    buf = buf.slice(off + len);
    if (op === 1) { console.log(payload.toString()); s.destroy(); process.exit(0); }
    if (op === 8) fail('closed by server');
  }
});
s.on('error', (e) => fail(e.message));
s.on('close', () => { if (!upgraded) fail('closed before upgrade'); });
