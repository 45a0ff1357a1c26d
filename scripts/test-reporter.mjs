// A node:test reporter for scripts/test.mjs: writes one JSON line per
// skipped test or suite (its file, name and reason), and one per warning Node
// printed on a test file's stderr (also from its workers), so that the run
// can end with one summary of what was skipped and fail on any warning.
const NODE_WARNING = /\(node:\d+\) (\[[A-Z]+\d+\] )?\w*Warning: /;

export default async function* skipReporter(source) {
  for await (const event of source) {
    if (event.type === 'test:stderr' || event.type === 'test:stdout') {
      const text = String(event.data.message ?? '');
      for (const line of text.split('\n')) {
        if (NODE_WARNING.test(line)) yield JSON.stringify({ warning: line.trim(), file: event.data.file ?? null }) + '\n';
      }
      continue;
    }
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { skip, name, file } = event.data;
    if (skip === undefined || skip === false) continue;
    yield JSON.stringify({ file: file ?? null, name, reason: skip === true ? '' : String(skip) }) + '\n';
  }
}
