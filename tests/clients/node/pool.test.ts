// The generated TypeScript client (gen/, from buf.gen.yaml) against a real pool.
//
// Plain gRPC over HTTP/2 with @connectrpc/connect-node, and no Ray-specific
// metadata: this is what any gRPC client in any language sees.
//
// With EMBEDPOOL_TARGET=host:port set, it uses that pool; otherwise it starts
// `embedpool serve` on a free loopback port (the binary is $EMBEDPOOL_BIN, else
// .venv/bin/embedpool), and stops it with SIGTERM at the end.
//
//   npm run test:node
//   EMBEDPOOL_TARGET=127.0.0.1:50051 npm run test:node

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import {
  EmbeddingService,
  InputType,
  VectorEncoding,
} from "./gen/embedpool/v1/embedding_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const DEFAULT_MODEL = "all-minilm-l6-v2";
const DIMENSIONS = 384;
const START_TIMEOUT_MS = 240_000;
const STOP_TIMEOUT_MS = 90_000;
const CALL_TIMEOUT_MS = 60_000;

const QUERY = "Which planet is known as the Red Planet?";
const DOCUMENTS = [
  "Venus is often called Earth's twin because of its similar size and proximity.",
  "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
  "Jupiter, the largest planet in our solar system, has a prominent red spot.",
  "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
];

// ---- the pool: given, or started here ----------------------------------

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  server.close();
  await once(server, "close");
  return address.port;
}

interface StartedPool {
  child: ChildProcess;
  target: string;
  log: string[];
}

async function startPool(): Promise<StartedPool> {
  const bin = process.env.EMBEDPOOL_BIN ?? resolve(ROOT, ".venv/bin/embedpool");
  const port = await freePort();
  const target = `127.0.0.1:${port}`;
  const child = spawn(bin, ["serve", "--port", String(port), "--host", "127.0.0.1"], {
    cwd: ROOT,
    env: { ...process.env, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE ?? "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log: string[] = [];
  const keep = (line: string) => {
    log.push(line);
    if (log.length > 200) log.shift();
  };
  createInterface({ input: child.stderr! }).on("line", keep);
  const lines = createInterface({ input: child.stdout! });
  const ready = new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`embedpool serve not ready after ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    lines.on("line", (line) => {
      keep(line);
      if (line.includes("embedpool serving")) {
        clearTimeout(timer);
        resolveReady();
      }
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`embedpool serve exited before it was ready (code ${code}, signal ${signal})`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stopPool({ child, target, log });
    throw new Error(`${(err as Error).message}\n--- embedpool serve output (tail) ---\n${log.join("\n")}`);
  }
  return { child, target, log };
}

async function stopPool(pool: StartedPool): Promise<void> {
  const { child } = pool;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM"); // embedpool serve drains, shuts Serve and its own Ray cluster down
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

// ---- the tests ---------------------------------------------------------

function norm(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i];
  return Math.sqrt(sum);
}

describe("embedpool.v1 over gRPC from TypeScript", () => {
  let started: StartedPool | undefined;
  let sessions: Http2SessionManager;
  let pool: Client<typeof EmbeddingService>;
  let health: Client<typeof Health>;

  before(
    async () => {
      let target = process.env.EMBEDPOOL_TARGET;
      if (!target) {
        started = await startPool();
        target = started.target;
      }
      const baseUrl = `http://${target}`;
      // gRPC is HTTP/2 only: connect-node 2.x's gRPC transport always uses it
      // (it has no httpVersion option). Our own session manager lets after()
      // close the connection.
      sessions = new Http2SessionManager(baseUrl);
      const transport = createGrpcTransport({ baseUrl, sessionManager: sessions });
      pool = createClient(EmbeddingService, transport);
      health = createClient(Health, transport);
    },
    { timeout: START_TIMEOUT_MS + STOP_TIMEOUT_MS },
  );

  after(
    async () => {
      sessions?.abort();
      if (started) await stopPool(started);
    },
    { timeout: STOP_TIMEOUT_MS + 10_000 },
  );

  test("health: grpc.health.v1.Health/Check for the server is SERVING", async () => {
    // Right after start-up the overall status follows the default model's
    // replicas; give the pool's health watcher a few rounds.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const res = await health.check({ service: "" }, { timeoutMs: CALL_TIMEOUT_MS });
      if (res.status === HealthCheckResponse_ServingStatus.SERVING || Date.now() > deadline) {
        assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  });

  test("ListModels: the default model is all-minilm-l6-v2, 384 dimensions", async () => {
    const res = await pool.listModels({}, { timeoutMs: CALL_TIMEOUT_MS });
    assert.equal(res.defaultModel, DEFAULT_MODEL);
    const model = res.models.find((m) => m.name === DEFAULT_MODEL);
    assert.ok(model, `ListModels lacks ${DEFAULT_MODEL}: ${res.models.map((m) => m.name).join(", ")}`);
    assert.equal(model.dimensions, DIMENSIONS);
    assert.equal(model.isDefault, true);
    assert.ok(model.variants.length > 0);
    assert.ok((model.limits?.maxInputsPerRequest ?? 0) > 0);
  });

  test("Embed a query: one normalized 384-dimension vector", async () => {
    const res = await pool.embed(
      { inputs: [QUERY], inputType: InputType.QUERY },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    assert.equal(res.model, DEFAULT_MODEL);
    assert.equal(res.dimensions, DIMENSIONS);
    assert.equal(res.embeddings.length, 1);
    const values = res.embeddings[0].values;
    assert.equal(values.length, DIMENSIONS);
    assert.ok(values.every(Number.isFinite));
    assert.ok(Math.abs(norm(values) - 1) < 1e-3, `norm ${norm(values)}`);
    assert.ok((res.usage?.inputTokens ?? 0n) > 0n);
  });

  test("Embed documents: one vector per input, in order", async () => {
    const res = await pool.embed({ inputs: DOCUMENTS }, { timeoutMs: CALL_TIMEOUT_MS });
    assert.equal(res.dimensions, DIMENSIONS);
    assert.equal(res.embeddings.length, DOCUMENTS.length);
    for (const e of res.embeddings) assert.equal(e.values.length, DIMENSIONS);
    // Different texts, different vectors.
    assert.notDeepEqual(res.embeddings[0].values, res.embeddings[1].values);
  });

  test("Embed with VECTOR_ENCODING_BYTES: little-endian float32 in data", async () => {
    const inputs = [DOCUMENTS[1], DOCUMENTS[2]];
    const [numbers, bytes] = await Promise.all([
      pool.embed({ inputs, encoding: VectorEncoding.NUMBERS }, { timeoutMs: CALL_TIMEOUT_MS }),
      pool.embed({ inputs, encoding: VectorEncoding.BYTES }, { timeoutMs: CALL_TIMEOUT_MS }),
    ]);
    assert.equal(bytes.embeddings.length, inputs.length);
    bytes.embeddings.forEach((e, i) => {
      assert.equal(e.values.length, 0, "bytes encoding leaves values empty");
      assert.equal(e.data.byteLength, DIMENSIONS * 4);
      // DataView: explicit little-endian, any platform.
      const view = new DataView(e.data.buffer, e.data.byteOffset, e.data.byteLength);
      const fromView = Array.from({ length: DIMENSIONS }, (_, d) => view.getFloat32(d * 4, true));
      // Float32Array: the platform's byte order (little-endian on x86 and ARM);
      // copy first, since data may sit at an unaligned offset in the message buffer.
      const fromArray = new Float32Array(e.data.slice().buffer);
      assert.deepEqual(Array.from(fromArray), fromView);
      assert.ok(Math.abs(norm(fromView) - 1) < 1e-3, `norm ${norm(fromView)}`);
      const expected = numbers.embeddings[i].values;
      const maxDiff = Math.max(...fromView.map((v, d) => Math.abs(v - expected[d])));
      assert.ok(maxDiff < 1e-4, `bytes and numbers differ by ${maxDiff}`);
    });
  });

  test("Similarity: the Red Planet query ranks Mars first (top_k 1)", async () => {
    const res = await pool.similarity(
      { queries: [QUERY], documents: DOCUMENTS, topK: 1 },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    assert.equal(res.rows.length, 1);
    const ranked = res.rows[0].ranked;
    assert.equal(ranked.length, 1);
    assert.equal(ranked[0].index, 1, `expected Mars (1), got ${ranked[0].index}`);
    assert.ok(ranked[0].score > 0 && ranked[0].score <= 1.0001, `score ${ranked[0].score}`);
  });

  test("errors: an unknown model is NOT_FOUND, naming the model", async () => {
    await assert.rejects(
      pool.embed({ model: { model: "no-such-model" }, inputs: ["hello"] }, { timeoutMs: CALL_TIMEOUT_MS }),
      (err: unknown) => {
        assert.ok(err instanceof ConnectError, `not a ConnectError: ${err}`);
        assert.equal(err.code, Code.NotFound, `code ${Code[err.code]}: ${err.rawMessage}`);
        assert.match(err.rawMessage, /no-such-model/);
        return true;
      },
    );
  });
});
