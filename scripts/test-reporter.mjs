// A node:test reporter for scripts/test.mjs: writes one JSON line per
// skipped test or suite (its file, name and reason), so that the run can end
// with one summary of what was skipped and how to run it.
export default async function* skipReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { skip, name, file } = event.data;
    if (skip === undefined || skip === false) continue;
    yield JSON.stringify({ file: file ?? null, name, reason: skip === true ? '' : String(skip) }) + '\n';
  }
}
