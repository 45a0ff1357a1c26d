'use strict';
// require('usocket') for dbus-next and other users of usocket's API, served by
// fdpass/usocket from fdpass's CommonJS build (dist-cjs).
//
// This package lives inside the fdpass package (packages/usocket-compat), and
// a file: dependency on it is a symlink, so '../..' is the fdpass it came
// with. Copied elsewhere, it falls back to the fdpass that resolves from here.
//
// Core modules by their bare names ('fs', not 'node:fs'): some module loaders
// (Jest 24's, for one) do not resolve the 'node:' prefix.
const { existsSync, readFileSync } = require('fs');
const { join } = require('path');

function enclosingFdpass() {
  const root = join(__dirname, '..', '..');
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const entry = join(root, 'dist-cjs', 'protocols', 'usocket', 'index.js');
    if (pkg.name === 'fdpass' && existsSync(entry)) return entry;
  } catch {
    // not inside fdpass
  }
  return 'fdpass/usocket';
}

const usocket = require(enclosingFdpass());
module.exports = { USocket: usocket.USocket, UServer: usocket.UServer };
