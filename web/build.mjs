// Bundle src/main.ts into dist/app.js (esbuild) and copy the page and its styles beside it.
// dist/ is what any static host serves; config.json is added by the host (see README).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: "dist/app.js",
  logLevel: "warning",
});
for (const file of ["index.html", "styles.css"]) copyFileSync(file, `dist/${file}`);
