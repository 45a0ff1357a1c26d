'use strict';
// require('usocket') for dbus-next and other users of usocket's API, served by
// fdpass/usocket (fdpass is ESM: this needs require(esm), Node >= 20.19).
//
// This package lives inside the fdpass package (packages/usocket-compat), and
// a file: dependency on it is a symlink, so '../..' is the fdpass it came
// with. Copied elsewhere, it falls back to the fdpass that resolves from here.
const { existsSync, readFileSync } = require('node:fs');
const { join } = require('node:path');

function enclosingFdpass() {
  const root = join(__dirname, '..', '..');
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const entry = join(root, 'dist', 'protocols', 'usocket', 'index.js');
    if (pkg.name === 'fdpass' && existsSync(entry)) return entry;
  } catch {
    // not inside fdpass
  }
  return 'fdpass/usocket';
}

const usocket = require(enclosingFdpass());
module.exports = { USocket: usocket.USocket, UServer: usocket.UServer };
