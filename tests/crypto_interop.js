// A second AES-256-GCM implementation (Node's built-in crypto) checking
// keel's envelope format: 0x01 | nonce (12) | ciphertext | tag (16).
// Used by tests/crypto_test.cpp. Reads lines from the file named by argv[2]:
//   open KEYHEX AADHEX ENVELOPEHEX   -> prints the plaintext hex, or FAIL
//   seal KEYHEX AADHEX PLAINTEXTHEX  -> prints an envelope hex made by Node
// (a lone "-" stands for empty hex).
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const hex = (s) => Buffer.from(s === '-' ? '' : s, 'hex');
const out = [];
for (const line of fs.readFileSync(process.argv[2], 'utf8').split('\n')) {
  if (line.trim() === '') continue;
  const [op, keyHex, aadHex, dataHex] = line.trim().split(/\s+/);
  const key = hex(keyHex);
  const aad = hex(aadHex);
  const data = hex(dataHex);
  if (op === 'open') {
    try {
      if (data.length < 29 || data[0] !== 1) throw new Error('malformed');
      const nonce = data.subarray(1, 13);
      const ct = data.subarray(13, data.length - 16);
      const tag = data.subarray(data.length - 16);
      const d = crypto.createDecipheriv('aes-256-gcm', key, nonce);
      d.setAAD(aad);
      d.setAuthTag(tag);
      const pt = Buffer.concat([d.update(ct), d.final()]);
      out.push(pt.length ? pt.toString('hex') : '-');
    } catch (e) {
      out.push('FAIL');
    }
  } else if (op === 'seal') {
    const nonce = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(data), c.final()]);
    out.push(Buffer.concat([Buffer.from([1]), nonce, ct, c.getAuthTag()]).toString('hex'));
  } else {
    out.push('BADOP');
  }
}
process.stdout.write(out.join('\n') + '\n');
