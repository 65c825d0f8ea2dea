/**
 * A minimal Pulumi engine + resource monitor over gRPC, so a test can run the program through
 * Pulumi's own Node.js runner (`@pulumi/pulumi/cmd/run`) exactly as the `pulumi` CLI's language
 * host starts it (`node <nodeargs> .../cmd/run --monitor ... <main>`), without the CLI, which is
 * not installable here. It records registrations and engine log messages; it creates nothing.
 *
 * It speaks Pulumi's real protocol using the SDK's own generated gRPC stubs, so it checks what
 * the mock runtime cannot: that Pulumi.yaml's runtime options load the TypeScript ESM program.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// The SDK's own copies, so the wire format is the one the runner speaks.
const sdkRequire = createRequire(require.resolve("@pulumi/pulumi"));
/* eslint-disable @typescript-eslint/no-explicit-any */
const grpc: any = sdkRequire("@grpc/grpc-js");
const resourceGrpc: any = sdkRequire("./proto/resource_grpc_pb.js");
const resourcePb: any = sdkRequire("./proto/resource_pb.js");
const engineGrpc: any = sdkRequire("./proto/engine_grpc_pb.js");
const enginePb: any = sdkRequire("./proto/engine_pb.js");
const emptyPb: any = sdkRequire("google-protobuf/google/protobuf/empty_pb.js");

export interface Registration {
  type: string;
  name: string;
  urn: string;
  custom: boolean;
  inputs: Record<string, unknown>;
}

export interface EngineLog {
  /** pulumirpc.LogSeverity: 0 debug, 1 info, 2 warning, 3 error. */
  severity: number;
  message: string;
}

export interface FakeEngine {
  /** `127.0.0.1:<port>` for both `--monitor` and `--engine`. */
  address: string;
  registrations: Registration[];
  /** Outputs registered per URN (the stack's are the program's exports). */
  outputs: Map<string, Record<string, unknown>>;
  logs: EngineLog[];
  stop(): Promise<void>;
}

/** Features this engine accepts; everything else is reported unsupported (the SDK falls back). */
const FEATURES = new Set(["secrets", "resourceReferences"]);

export async function startFakeEngine(opts: {
  project: string;
  stack: string;
}): Promise<FakeEngine> {
  const registrations: Registration[] = [];
  const outputs = new Map<string, Record<string, unknown>>();
  const logs: EngineLog[] = [];
  let rootUrn = "";

  const urnOf = (parent: string, type: string, name: string): string => {
    let qualified = type;
    if (parent !== "") {
      const parentType = parent.split("::")[2]!.split("$").pop()!;
      qualified = `${parentType}$${type}`;
    }
    return `urn:pulumi:${opts.stack}::${opts.project}::${qualified}::${name}`;
  };

  const monitor = {
    supportsFeature(call: any, cb: any) {
      const resp = new resourcePb.SupportsFeatureResponse();
      resp.setHassupport(FEATURES.has(call.request.getId()));
      cb(null, resp);
    },
    registerResource(call: any, cb: any) {
      const req = call.request;
      const urn = urnOf(req.getParent(), req.getType(), req.getName());
      const object = req.getObject();
      registrations.push({
        type: req.getType(),
        name: req.getName(),
        urn,
        custom: req.getCustom(),
        inputs: (object?.toJavaScript() ?? {}) as Record<string, unknown>,
      });
      const resp = new resourcePb.RegisterResourceResponse();
      resp.setUrn(urn);
      resp.setId(req.getCustom() ? `${req.getName()}-id` : "");
      if (object !== undefined) resp.setObject(object);
      cb(null, resp);
    },
    registerResourceOutputs(call: any, cb: any) {
      const req = call.request;
      outputs.set(
        req.getUrn(),
        (req.getOutputs()?.toJavaScript() ?? {}) as Record<string, unknown>,
      );
      cb(null, new emptyPb.Empty());
    },
  };
  const engine = {
    log(call: any, cb: any) {
      logs.push({ severity: call.request.getSeverity(), message: call.request.getMessage() });
      cb(null, new emptyPb.Empty());
    },
    getRootResource(_call: any, cb: any) {
      const resp = new enginePb.GetRootResourceResponse();
      resp.setUrn(rootUrn);
      cb(null, resp);
    },
    setRootResource(call: any, cb: any) {
      rootUrn = call.request.getUrn();
      cb(null, new enginePb.SetRootResourceResponse());
    },
  };

  const server = new grpc.Server();
  server.addService(resourceGrpc.ResourceMonitorService, monitor);
  server.addService(engineGrpc.EngineService, engine);
  const port: number = await new Promise((resolve, reject) => {
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err: Error | null, p: number) => (err === null ? resolve(p) : reject(err)),
    );
  });
  return {
    address: `127.0.0.1:${port}`,
    registrations,
    outputs,
    logs,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */
