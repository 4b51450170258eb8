#!/usr/bin/env node
// Cross-check otalab's generated module fixtures with Particle's own parser,
// binary-version-reader's HalModuleParser (PROTOCOL.md 4.5).
// Usage: node check_fixtures.js DIR/manifest.json   (exit 77 = skipped)
'use strict';
const fs = require('fs');
const path = require('path');

const SKIP = 77;
let Parser;
try {
  Parser = require(path.join(__dirname, 'node_modules', 'binary-version-reader')).HalModuleParser;
} catch (e) {
  console.log('SKIP: binary-version-reader is not installed in tests/node/node_modules ' +
              '(run `npm ci` in tests/node): ' + e.message.split('\n')[0]);
  process.exit(SKIP);
}

const manifestPath = process.argv[2];
if (!manifestPath) {
  console.error('usage: check_fixtures.js MANIFEST.json');
  process.exit(2);
}
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
const dir = path.dirname(manifestPath);

async function main() {
  const parser = new Parser();
  let failures = 0;
  const modules = manifest.modules || [];
  for (const m of modules) {
    const problems = [];
    const expect = (what, got, want) => {
      if (got !== want) problems.push(`${what}: got ${got}, want ${want}`);
    };
    let info;
    try {
      info = await parser.parseFile(path.join(dir, m.file));
    } catch (e) {
      problems.push('parse failed: ' + e.message);
    }
    if (info) {
      const p = info.prefixInfo;
      expect('crc.ok', info.crc.ok, true);
      expect('crc stored', info.crc.storedCrc, m.crc32);
      expect('platform', p.platformID, 10);
      expect('function', p.moduleFunction, m.func);
      expect('index', p.moduleIndex, m.index);
      expect('version', p.moduleVersion, m.version);
      expect('start', parseInt(p.moduleStartAddy, 16), m.start);
      expect('end', parseInt(p.moduleEndAddy, 16), m.start + m.size - 4);
      expect('header offset', p.prefixOffset,
             (m.func === 2 || (m.func === 4 && (m.index === 1 || m.index === 2))) ? 0x184 : 0);
      const deps = m.deps || [];
      const got = [
        { func: p.depModuleFunction, index: p.depModuleIndex, version: p.depModuleVersion },
        { func: p.dep2ModuleFunction, index: p.dep2ModuleIndex, version: p.dep2ModuleVersion },
      ];
      for (let i = 0; i < 2; i++) {
        const want = deps[i] || { func: 0, index: 0, version: 0 };
        expect(`dep${i + 1}`, `${got[i].func}/${got[i].index}>=${got[i].version}`,
               `${want.func}/${want.index}>=${want.version}`);
      }
      const s = info.suffixInfo;
      expect('suffix size', s.suffixSize, 40);
      expect('product id', s.productId, m.product_id);
      expect('product version', s.productVersion, m.product_version);
      expect('sha256 (suffix)', s.fwUniqueId, m.suffix_sha256);
    }
    if (problems.length) {
      failures++;
      console.log(`FAIL ${m.file}: ${problems.join('; ')}`);
    }
  }
  console.log(`binary-version-reader: ${modules.length - failures}/${modules.length} ` +
              `fixtures match (platform, function, index, version, addresses, deps, CRC, suffix)`);
  if (modules.length === 0) {
    console.log('FAIL: the manifest lists no modules');
    return 1;
  }
  return failures ? 1 : 0;
}

main().then(rc => process.exit(rc), e => {
  console.error(e);
  process.exit(1);
});
