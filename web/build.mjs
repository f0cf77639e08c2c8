// Bundles the two pages into dist/ (embedded in the callwatch binary).
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await build({
  entryPoints: ["src/dashboard.ts", "src/agent.ts"],
  bundle: true,
  format: "esm",
  target: "es2023",
  minify: true,
  sourcemap: false,
  outdir: "dist",
  logLevel: "warning",
});
for (const file of ["index.html", "agent.html", "style.css"]) cpSync(`src/${file}`, `dist/${file}`);
