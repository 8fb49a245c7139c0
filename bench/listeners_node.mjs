// The Node firebase-admin side of bench/listeners.py: COUNT listeners (one onSnapshot each, the
// Node client's own way) on one document of the Firestore emulator at FIRESTORE_EMULATOR_HOST.
//
//   node bench/listeners_node.mjs PROJECT DOCUMENT_PATH COUNT LAST
//
// Prints one line "ready" once every listener has its first snapshot, then, when every listener
// has seen `percent` reach LAST (or after a minute more), one JSON line: for each listener the
// [percent, CLOCK_MONOTONIC ns] of each state's first arrival (process.hrtime, the clock Python's
// time.monotonic_ns reads), and the process's CPU time while the writes came in.
// firebase-admin is a devDependency of web/ (installed by `make web-deps`).
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Everything stays on this machine: the emulator needs no credentials, so no probe of a cloud
// metadata server for them (gcp-metadata's documented switch).
process.env.METADATA_SERVER_DETECTION = "none";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "web", "package.json"));
const { initializeApp } = require("firebase-admin/app");
const { getFirestore } = require("firebase-admin/firestore");

const [project, documentPath, countText, lastText] = process.argv.slice(2);
const count = Number(countText);
const last = Number(lastText);
if (!process.env.FIRESTORE_EMULATOR_HOST || !documentPath || !(count > 0) || !(last > 0)) {
  console.error("usage: FIRESTORE_EMULATOR_HOST=host:port node listeners_node.mjs PROJECT DOC COUNT LAST");
  process.exit(2);
}

const db = getFirestore(initializeApp({ projectId: project }));
const reference = db.doc(documentPath);
const seen = Array.from({ length: count }, () => new Map());
let attached = 0;
let finished = 0;
let cpuAtReady = null;

function report() {
  const cpu = process.cpuUsage(cpuAtReady);
  const listeners = seen.map((states) => [...states].map(([p, ns]) => [p, ns.toString()]));
  for (const stop of unsubscribers) stop();
  // A pipe is written asynchronously: exit once the line is out.
  const line = JSON.stringify({ listeners, cpu_us: cpu.user + cpu.system }) + "\n";
  process.stdout.write(line, () => process.exit(0));
}

const unsubscribers = seen.map((states) =>
  reference.onSnapshot(
    (snapshot) => {
      const arrived = process.hrtime.bigint();
      const first = states.size === 0;
      const percent = Number(snapshot.get("percent") ?? -1);
      const fresh = !states.has(percent);
      if (fresh) states.set(percent, arrived);
      if (first && ++attached === count) {
        cpuAtReady = process.cpuUsage();
        process.stdout.write("ready\n");
        setTimeout(report, (60 + last) * 1000).unref();
      }
      if (fresh && percent === last && ++finished === count) report();
    },
    (error) => {
      console.error(`listener failed: ${error.message}`);
      process.exit(1);
    },
  ),
);
