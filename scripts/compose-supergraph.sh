#!/usr/bin/env bash
# Composes the four Federation subgraphs of the subgraphs crate into
# subgraphs/federation/supergraph.graphql with @theguild/federation-composition
# (from npm, installed under target/compose). The supergraph is committed;
# run this again after changing a Federation subgraph's schema.
#
#   scripts/compose-supergraph.sh          # starts the four subgraphs on 4201-4204
set -euo pipefail
cd "$(dirname "$0")/.."
out=subgraphs/federation/supergraph.graphql
tools=target/compose
mkdir -p "$tools"
if [ ! -d "$tools/node_modules/@theguild/federation-composition" ]; then
  npm install --silent --prefix "$tools" @theguild/federation-composition@0.27.0 graphql@16 >/dev/null
fi
cargo build --quiet -p tessera-subgraphs
./target/debug/subgraphs --service federation --base-port 4201 >/dev/null &
services=$!
trap 'kill $services 2>/dev/null || true' EXIT
for port in 4201 4202 4203 4204; do
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
done
NODE_PATH="$tools/node_modules" node - "$out" <<'JS'
const { composeServices } = require("@theguild/federation-composition");
const { parse } = require("graphql");
const out = process.argv[2];
const graphs = [["users", 4201], ["products", 4202], ["inventory", 4203], ["reviews", 4204]];
(async () => {
  const services = [];
  for (const [name, port] of graphs) {
    const url = `http://127.0.0.1:${port}/graphql`;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ _service { sdl } }" }),
    });
    const sdl = (await res.json()).data._service.sdl;
    // async-graphql's SDL restates GraphQL's built-in directives; carried into
    // the supergraph they make Apollo Router refuse it ("@skip has already
    // been pre-inserted").
    const builtIn = new Set(["include", "skip", "deprecated", "specifiedBy", "oneOf"]);
    const typeDefs = parse(sdl);
    typeDefs.definitions = typeDefs.definitions.filter(
      (d) => !(d.kind === "DirectiveDefinition" && builtIn.has(d.name.value)),
    );
    services.push({ name, url, typeDefs });
  }
  const result = composeServices(services);
  if (result.errors && result.errors.length) {
    for (const e of result.errors) console.error(e.message);
    process.exit(1);
  }
  require("fs").writeFileSync(out, result.supergraphSdl);
  console.log(`wrote ${out}`);
})();
JS
