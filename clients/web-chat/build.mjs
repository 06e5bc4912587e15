// Builds the page into dist/: the static files as they are, and
// src/main.ts with the client bundled into one ES module (esbuild). The
// client package must be built first (`npm run build` in ../typescript).
import { build } from "esbuild";
import { cpSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
cpSync("static", "dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: "dist/app.js",
  // Node's WebSocket package: never loaded in a browser, which has one.
  external: ["ws"],
  logLevel: "warning",
});
