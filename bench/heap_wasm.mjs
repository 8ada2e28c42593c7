// The 32-bit side of bench/heap.py: the MicroPython WebAssembly port (npm
// @micropython/micropython-webassembly-pyscript, installed by `make bench` under .venv/npm).
// usage: node heap_wasm.mjs PACKAGE_DIR MPY_TREE ITEM...
// One fresh interpreter per item; MPY_TREE/evse goes to its /lib, with a socket module for import
// (the port has none; nothing here opens one). Prints heap_mpy.py's lines.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [packageDir, tree, ...items] = process.argv.slice(2);
const require = createRequire(path.join(packageDir, "package.json"));
const { loadMicroPython } = await import(pathToFileURL(require.resolve("@micropython/micropython-webassembly-pyscript")).href);
const body = fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), "heap_mpy.py"), "utf8");
const SOCKET = "AF_INET = 2\nAF_INET6 = 10\nSOCK_STREAM = 1\n" +
  "def getaddrinfo(*a):\n    raise OSError(-2)\ndef socket(*a):\n    raise OSError(-2)\n";

function copyTree(FS, src, dst) {
  FS.mkdirTree(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, entry.name), to = dst + "/" + entry.name;
    if (entry.isDirectory()) copyTree(FS, from, to);
    else FS.writeFile(to, fs.readFileSync(from));
  }
}

for (const item of items) {
  let out = "";
  const mp = await loadMicroPython({ heapsize: 4 * 1024 * 1024, stdout: (s) => { out += s + "\n"; },
                                     stderr: (s) => { out += s + "\n"; } });
  copyTree(mp.FS, path.join(tree, "evse"), "/lib/evse");
  mp.FS.writeFile("/lib/socket.py", SOCKET);
  try {
    mp.runPython(`ITEM = '${item}'\n` + body);
  } catch (e) {
    out += "ERROR " + e + "\n";
  }
  process.stdout.write(out);
}
