// A node:test reporter for scripts/test.mjs: writes one JSON line per
// skipped test or suite (its file, name and reason), and one per warning Node
// printed on a test file's stderr (also from its workers), so that the run
// can end with one summary of what was skipped and fail on any warning.
const NODE_WARNING = /\(node:\d+\) (\[[A-Z]+\d+\] )?\w*Warning: /;

import { appendFileSync } from 'node:fs';

// Written synchronously to FDPASS_REPORT_LOG (set by scripts/test.mjs), not
// yielded to a destination stream: --test-force-exit may end the runner
// before such a stream is flushed, and the last lines would be lost.
function record(entry) {
  appendFileSync(process.env.FDPASS_REPORT_LOG, JSON.stringify(entry) + '\n');
}

export default async function* skipReporter(source) {
  yield ''; // a reporter is a generator; everything goes through record()
  for await (const event of source) {
    if (event.type === 'test:stderr' || event.type === 'test:stdout') {
      const text = String(event.data.message ?? '');
      for (const line of text.split('\n')) {
        if (NODE_WARNING.test(line)) record({ warning: line.trim(), file: event.data.file ?? null });
      }
      continue;
    }
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { skip, name, file } = event.data;
    if (skip === undefined || skip === false) continue;
    record({ file: file ?? null, name, reason: skip === true ? '' : String(skip) });
  }
}
